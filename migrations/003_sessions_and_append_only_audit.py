"""Migration 003_sessions_and_append_only_audit (peewee-migrate; the operations it offers are listed in
peewee_migrate/template.py)."""

from contextlib import suppress

import peewee as pw
from peewee_migrate import Migrator


with suppress(ImportError):
    import playhouse.postgres_ext as pw_pext


APPEND_ONLY = """
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

CREATE OR REPLACE FUNCTION audit_logs_no_truncate() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'audit_logs is append-only: TRUNCATE refused';
END $$ LANGUAGE plpgsql;

CREATE TRIGGER audit_logs_append_only BEFORE UPDATE OR DELETE ON audit_logs
  FOR EACH ROW EXECUTE FUNCTION audit_logs_append_only();
CREATE TRIGGER audit_logs_no_truncate BEFORE TRUNCATE ON audit_logs
  FOR EACH STATEMENT EXECUTE FUNCTION audit_logs_no_truncate();
"""

DROP_APPEND_ONLY = """
DROP TRIGGER IF EXISTS audit_logs_no_truncate ON audit_logs;
DROP TRIGGER IF EXISTS audit_logs_append_only ON audit_logs;
DROP FUNCTION IF EXISTS audit_logs_no_truncate();
DROP FUNCTION IF EXISTS audit_logs_append_only();
"""


def _postgres(database) -> bool:
    return isinstance(getattr(database, "obj", None) or database, pw.PostgresqlDatabase)


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Sessions for GitHub sign-in; the audit log made append-only on PostgreSQL."""

    @migrator.create_model
    class Session(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(column_name='user_id', field='id', index=False, model=migrator.orm['users'], on_delete='CASCADE')
        token_digest = pw.CharField(max_length=64, unique=True)
        created_at = pw.DateTimeField()
        expires_at = pw.DateTimeField()
        revoked_at = pw.DateTimeField(null=True)
        last_seen_at = pw.DateTimeField(null=True)
        ip = pw.CharField(max_length=45, null=True)
        user_agent = pw.TextField(null=True)

        class Meta:
            legacy_table_names = False  # index names start with the table name
            table_name = "sessions"
            indexes = [(('user', 'revoked_at'), False), (('expires_at',), False)]

    if _postgres(database):
        migrator.sql(APPEND_ONLY)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop the audit triggers and the sessions (everyone is signed out)."""

    if _postgres(database):
        migrator.sql(DROP_APPEND_ONLY)
    migrator.remove_model('sessions')
