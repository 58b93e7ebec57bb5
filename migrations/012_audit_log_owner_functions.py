"""Migration 012_audit_log_owner_functions (peewee-migrate; the operations it offers are listed in
peewee_migrate/template.py)."""

import peewee as pw
from peewee_migrate import Migrator

# The audit log's trigger (migration 003) let any session delete rows after
# `SET LOCAL devmetrics.audit_retention = 'on'`, so the application's database user could
# switch it off. From here on the application role (`devmetrics db grant-app-role`) has no
# UPDATE, DELETE or TRUNCATE on audit_logs at all, and what it may still do to the log and
# to the partitions it cannot own goes through these SECURITY DEFINER functions, which run
# as the owner of the tables (the role that runs the migrations):
#   devmetrics_delete_expired_audit_logs  the retention pass's audit deletes, never of an
#                                         entry younger than AUDIT_FLOOR (RETENTION_BOUNDS'
#                                         least audit retention), whatever the caller asks;
#   devmetrics_create_partition           a month's partition (needs the parent's owner),
#                                         for months from 1970 to a year ahead;
#   devmetrics_drop_partition             expired partitions, an audit_logs one only when
#                                         its month ended more than AUDIT_FLOOR ago.
# The trigger now lets a DELETE through only for the owner of audit_logs (what those
# functions run as) while one of them deletes: they set devmetrics.audit_retention around
# their DELETE only, and the setting opens nothing for another role.
# Referential actions (a deleted organization, user or key) run as the owner of audit_logs
# too, and are still let through by the trigger's other branches. Nothing on SQLite.
AUDIT_FLOOR = "365 days"

APPEND_ONLY = """
CREATE OR REPLACE FUNCTION audit_logs_append_only() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    -- the retention functions of migration 012, running as the owner of audit_logs
    IF current_setting('devmetrics.audit_retention', true) = 'on'
       AND pg_has_role(current_user,
                       (SELECT relowner FROM pg_class
                         WHERE oid = coalesce(pg_partition_root(TG_RELID), TG_RELID)),
                       'USAGE') THEN
      RETURN OLD;
    END IF;
    -- ON DELETE CASCADE from an organization that is being deleted
    IF OLD.organization_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM organizations WHERE id = OLD.organization_id) THEN
      RETURN OLD;
    END IF;
  ELSIF TG_OP = 'UPDATE' THEN
    -- ON DELETE SET NULL from a deleted user or API key, and nothing else changed
    IF (NEW.actor_user_id IS NOT DISTINCT FROM OLD.actor_user_id
          OR (NEW.actor_user_id IS NULL
              AND NOT EXISTS (SELECT 1 FROM users WHERE id = OLD.actor_user_id)))
       AND (NEW.actor_api_key_id IS NOT DISTINCT FROM OLD.actor_api_key_id
          OR (NEW.actor_api_key_id IS NULL
              AND NOT EXISTS (SELECT 1 FROM api_keys WHERE id = OLD.actor_api_key_id)))
       AND (NEW.id, NEW.organization_id, NEW.action, NEW.target_type, NEW.target_id,
            NEW.ip, NEW.user_agent, NEW.metadata::text, NEW.created_at)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.organization_id, OLD.action, OLD.target_type, OLD.target_id,
            OLD.ip, OLD.user_agent, OLD.metadata::text, OLD.created_at) THEN
      RETURN NEW;
    END IF;
  END IF;
  RAISE EXCEPTION 'audit_logs is append-only: %% refused', TG_OP;
END $$ LANGUAGE plpgsql;
"""

# Migration 003's trigger function, for the rollback.
APPEND_ONLY_003 = """
CREATE OR REPLACE FUNCTION audit_logs_append_only() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    -- the retention job (SET LOCAL devmetrics.audit_retention = 'on')
    IF current_setting('devmetrics.audit_retention', true) = 'on' THEN
      RETURN OLD;
    END IF;
    -- ON DELETE CASCADE from an organization that is being deleted
    IF OLD.organization_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM organizations WHERE id = OLD.organization_id) THEN
      RETURN OLD;
    END IF;
  ELSIF TG_OP = 'UPDATE' THEN
    -- ON DELETE SET NULL from a deleted user or API key, and nothing else changed
    IF (NEW.actor_user_id IS NOT DISTINCT FROM OLD.actor_user_id
          OR (NEW.actor_user_id IS NULL
              AND NOT EXISTS (SELECT 1 FROM users WHERE id = OLD.actor_user_id)))
       AND (NEW.actor_api_key_id IS NOT DISTINCT FROM OLD.actor_api_key_id
          OR (NEW.actor_api_key_id IS NULL
              AND NOT EXISTS (SELECT 1 FROM api_keys WHERE id = OLD.actor_api_key_id)))
       AND (NEW.id, NEW.organization_id, NEW.action, NEW.target_type, NEW.target_id,
            NEW.ip, NEW.user_agent, NEW.metadata::text, NEW.created_at)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.organization_id, OLD.action, OLD.target_type, OLD.target_id,
            OLD.ip, OLD.user_agent, OLD.metadata::text, OLD.created_at) THEN
      RETURN NEW;
    END IF;
  END IF;
  RAISE EXCEPTION 'audit_logs is append-only: %% refused', TG_OP;
END $$ LANGUAGE plpgsql;
"""

# {schema} is the schema the tables live in: the functions' search path is fixed to it (after
# pg_catalog, with pg_temp last), so no object a caller creates can stand in for ours.
FUNCTIONS = r"""
CREATE OR REPLACE FUNCTION devmetrics_delete_expired_audit_logs(org integer, cutoff timestamp,
                                                     batch integer)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, {schema}, pg_temp
AS $$
DECLARE
  floor_ts timestamp := (now() AT TIME ZONE 'UTC') - interval '{floor}';
  deleted integer;
  previous text := current_setting('devmetrics.audit_retention', true);
BEGIN
  IF cutoff IS NULL OR batch IS NULL OR batch < 1 OR batch > 100000 THEN
    RAISE EXCEPTION 'devmetrics_delete_expired_audit_logs: a cutoff and a batch of 1..100000 are needed';
  END IF;
  -- Never an entry younger than the floor, whatever the caller asks.
  cutoff := least(cutoff, floor_ts);
  PERFORM set_config('devmetrics.audit_retention', 'on', true);
  IF org IS NULL THEN
    DELETE FROM audit_logs
     WHERE id = ANY (ARRAY(SELECT id FROM audit_logs
                            WHERE organization_id IS NULL AND created_at < cutoff
                            ORDER BY id LIMIT batch))
       AND organization_id IS NULL AND created_at < cutoff;
  ELSE
    DELETE FROM audit_logs
     WHERE id = ANY (ARRAY(SELECT id FROM audit_logs
                            WHERE organization_id = org AND created_at < cutoff
                            ORDER BY id LIMIT batch))
       AND organization_id = org AND created_at < cutoff;
  END IF;
  GET DIAGNOSTICS deleted = ROW_COUNT;
  PERFORM set_config('devmetrics.audit_retention', coalesce(previous, ''), true);
  RETURN deleted;
END $$;

CREATE OR REPLACE FUNCTION devmetrics_create_partition(parent_table text, month_start date)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, {schema}, pg_temp
AS $$
DECLARE
  nsp text := {schema_literal};
  parent_oid oid;
  part_oid oid;
  part_key text;
  lower_bound date := date_trunc('month', month_start)::date;
  upper_bound date := (date_trunc('month', month_start) + interval '1 month')::date;
  part_name text;
  default_name text;
  t record;
  g record;
  previous text := current_setting('devmetrics.audit_retention', true);
BEGIN
  IF parent_table IS NULL OR parent_table NOT IN ('events', 'audit_logs') OR month_start IS NULL THEN
    RAISE EXCEPTION 'devmetrics_create_partition: %% is not a partitioned table', parent_table;
  END IF;
  -- A month no row should have (an odd timestamp) stays in the default partition, rather
  -- than let a caller fill the catalog with partitions.
  IF lower_bound < date '1970-01-01' OR lower_bound > now() + interval '1 year' THEN
    RETURN NULL;
  END IF;
  parent_oid := format('%%I.%%I', nsp, parent_table)::regclass;
  -- One creation at a time (ATTACH takes this lock anyway); then: does it exist already?
  EXECUTE format('LOCK TABLE %%I.%%I IN SHARE UPDATE EXCLUSIVE MODE', nsp, parent_table);
  part_name := parent_table || '_' || to_char(lower_bound, 'YYYY_MM');
  IF EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
              WHERE i.inhparent = parent_oid AND c.relname = part_name) THEN
    RETURN NULL;
  END IF;
  SELECT a.attname INTO part_key FROM pg_partitioned_table p
    JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
   WHERE p.partrelid = parent_oid;
  EXECUTE format('CREATE TABLE %%I.%%I (LIKE %%I.%%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                 nsp, part_name, nsp, parent_table);
  SELECT c.relname INTO default_name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
   WHERE i.inhparent = parent_oid AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT';
  IF default_name IS NOT NULL THEN
    -- The month's rows waiting in the default partition move into the new one (a move,
    -- not a deletion of the audit log: this function is one the trigger lets through).
    PERFORM set_config('devmetrics.audit_retention', 'on', true);
    EXECUTE format('WITH moved AS (DELETE FROM %%I.%%I WHERE %%I >= $1 AND %%I < $2 RETURNING *) '
                   'INSERT INTO %%I.%%I SELECT * FROM moved',
                   nsp, default_name, part_key, part_key, nsp, part_name)
      USING lower_bound::timestamp, upper_bound::timestamp;
    PERFORM set_config('devmetrics.audit_retention', coalesce(previous, ''), true);
  END IF;
  EXECUTE format('ALTER TABLE %%I.%%I ATTACH PARTITION %%I.%%I FOR VALUES FROM (%%L) TO (%%L)',
                 nsp, parent_table, nsp, part_name, lower_bound, upper_bound);
  part_oid := format('%%I.%%I', nsp, part_name)::regclass;
  -- Row triggers are cloned by PostgreSQL; statement ones (TRUNCATE refusal) are not.
  FOR t IN SELECT pg_get_triggerdef(oid) AS def FROM pg_trigger
            WHERE tgrelid = parent_oid AND NOT tgisinternal AND (tgtype & 1) = 0 LOOP
    EXECUTE regexp_replace(t.def, ' ON \S+ FOR EACH ',
                           format(' ON %%I.%%I FOR EACH ', nsp, part_name));
  END LOOP;
  -- The partition's privileges are exactly its parent's (not the default privileges).
  FOR g IN SELECT a.grantee, a.privilege_type
             FROM pg_class c, aclexplode(c.relacl) a
            WHERE c.oid = part_oid AND a.grantee <> c.relowner LOOP
    EXECUTE format('REVOKE %%s ON %%I.%%I FROM %%s', g.privilege_type, nsp, part_name,
                   CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                        ELSE quote_ident(pg_get_userbyid(g.grantee)) END);
  END LOOP;
  FOR g IN SELECT a.grantee, a.privilege_type
             FROM pg_class c, aclexplode(c.relacl) a
            WHERE c.oid = parent_oid AND a.grantee <> c.relowner LOOP
    EXECUTE format('GRANT %%s ON %%I.%%I TO %%s', g.privilege_type, nsp, part_name,
                   CASE WHEN g.grantee = 0 THEN 'PUBLIC'
                        ELSE quote_ident(pg_get_userbyid(g.grantee)) END);
  END LOOP;
  RETURN part_name;
END $$;

CREATE OR REPLACE FUNCTION devmetrics_drop_partition(partition_name text)
RETURNS TABLE (org_id integer, row_count bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, {schema}, pg_temp
AS $$
DECLARE
  nsp text := {schema_literal};
  parent text;
  floor_ts timestamp := (now() AT TIME ZONE 'UTC') - interval '{floor}';
  upper_bound timestamp;
BEGIN
  SELECT p.relname INTO parent
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_inherits i ON i.inhrelid = c.oid
    JOIN pg_class p ON p.oid = i.inhparent
   WHERE n.nspname = nsp AND c.relname = partition_name
     AND p.relname IN ('events', 'audit_logs') AND p.relnamespace = n.oid;
  IF parent IS NULL OR partition_name !~ ('^' || parent || '_[0-9]{{4}}_[0-9]{{2}}$') THEN
    RAISE EXCEPTION 'devmetrics_drop_partition: %% is not a monthly partition', partition_name;
  END IF;
  -- No write may slip in between the checks and the drop (readers are not blocked).
  EXECUTE format('LOCK TABLE %%I.%%I IN SHARE ROW EXCLUSIVE MODE', nsp, partition_name);
  IF parent = 'audit_logs' THEN
    -- Only a month that ended before the floor (the partition's own bound, which every row
    -- in it is below): never an audit entry younger than {floor}, nor an empty month to come.
    SELECT substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''(.*)''\)')::timestamp
      INTO upper_bound
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = nsp AND c.relname = partition_name;
    IF upper_bound IS NULL OR upper_bound > floor_ts THEN
      RAISE EXCEPTION 'devmetrics_drop_partition: %% is not older than {floor}', partition_name;
    END IF;
  END IF;
  RETURN QUERY EXECUTE format(
    'SELECT organization_id, count(*) FROM %%I.%%I GROUP BY organization_id', nsp, partition_name);
  EXECUTE format('ALTER TABLE %%I.%%I DETACH PARTITION %%I.%%I', nsp, parent, nsp, partition_name);
  EXECUTE format('DROP TABLE %%I.%%I', nsp, partition_name);
END $$;

REVOKE ALL ON FUNCTION devmetrics_delete_expired_audit_logs(integer, timestamp, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION devmetrics_create_partition(text, date) FROM PUBLIC;
REVOKE ALL ON FUNCTION devmetrics_drop_partition(text) FROM PUBLIC;
"""

DROP_FUNCTIONS = """
DROP FUNCTION IF EXISTS devmetrics_drop_partition(text);
DROP FUNCTION IF EXISTS devmetrics_create_partition(text, date);
DROP FUNCTION IF EXISTS devmetrics_delete_expired_audit_logs(integer, timestamp, integer);
"""


def _postgres(database) -> bool:
    return isinstance(getattr(database, "obj", None) or database, pw.PostgresqlDatabase)


def _target(database):
    return getattr(database, "obj", None) or database


def _create_functions(database) -> None:
    schema = database.execute_sql("SELECT current_schema()").fetchone()[0]
    identifier = '"' + schema.replace('"', '""') + '"'
    literal = "'" + schema.replace("'", "''") + "'"
    database.execute_sql(
        FUNCTIONS.format(schema=identifier, schema_literal=literal, floor=AUDIT_FLOOR)
    )


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """PostgreSQL: the audit log's retention exception only through SECURITY DEFINER
    functions owned by the tables' owner; partitions created and dropped through them too."""

    if _postgres(database):
        migrator.sql(APPEND_ONLY)
        migrator.run(_create_functions, _target(database))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Migration 003's trigger again (the GUC switch), and no functions."""

    if _postgres(database):
        migrator.sql(DROP_FUNCTIONS)
        migrator.sql(APPEND_ONLY_003)
