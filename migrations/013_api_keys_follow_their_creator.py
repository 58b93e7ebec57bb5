"""Migration 013_api_keys_follow_their_creator (peewee-migrate; the operations it offers are
listed in peewee_migrate/template.py)."""

from contextlib import suppress

import peewee as pw
from peewee_migrate import Migrator


with suppress(ImportError):
    import playhouse.postgres_ext as pw_pext


# The audit entry written when each key was made: its actor is the creating key (if a key
# made it) and that key's creator; its IP is NULL outside a request (the CLI).
CREATION_ENTRIES = """
SELECT k.id, a.actor_api_key_id, a.actor_user_id, a.ip
FROM api_keys k
LEFT JOIN audit_logs a ON a.id = (
    SELECT MIN(e.id) FROM audit_logs e
    WHERE e.action = 'api_key.created' AND e.target_type = 'api_key'
      AND e.target_id = CAST(k.id AS VARCHAR) AND e.organization_id = k.organization_id)
WHERE k.created_by_id IS NULL
ORDER BY k.id
"""


def _target(database):
    return getattr(database, "obj", None) or database


def _sqlite(database) -> bool:
    return isinstance(_target(database), pw.SqliteDatabase)


# SQLite adds a NOT NULL column by rebuilding the table, and dropping the old api_keys fires
# ON DELETE SET NULL on every audit entry's actor_api_key_id: keep those links and put them
# back (PostgreSQL alters in place).
KEEP_KEY_ACTORS = """
CREATE TEMPORARY TABLE audit_key_actors_013 AS
SELECT id, actor_api_key_id FROM audit_logs WHERE actor_api_key_id IS NOT NULL
"""
RESTORE_KEY_ACTORS = (
    """
UPDATE audit_logs SET actor_api_key_id = (
    SELECT k.actor_api_key_id FROM audit_key_actors_013 k WHERE k.id = audit_logs.id)
WHERE id IN (SELECT id FROM audit_key_actors_013)
""",
    "DROP TABLE audit_key_actors_013",
)


def backfill_creators(database) -> None:
    """Keys without a creating person, oldest first (a creating key is older than the keys
    it made): a key made through the API by a key gets that key and its creator, as new
    ones do; a key made outside any request (the CLI), or whose record is gone, becomes an
    organization key, and so does one made by an organization key. What is left (made in
    a request by a person since deleted) has no standing and stops working."""
    organization_keys: set[int] = set()
    param = database.param
    for key_id, by_key, by_user, ip in database.execute_sql(CREATION_ENTRIES).fetchall():
        if by_key is not None:
            database.execute_sql(
                f"UPDATE api_keys SET created_by_key_id = {param}, created_by_id = {param} "
                f"WHERE id = {param}",
                (by_key, by_user, key_id),
            )
            if by_user is not None or by_key not in organization_keys:
                continue
        elif ip is not None:
            continue
        organization_keys.add(key_id)
        database.execute_sql(
            f"UPDATE api_keys SET organization_key = {param} WHERE id = {param}", (True, key_id)
        )


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """API keys follow their creator: the key that made a key, and which keys belong to
    the organization rather than to a person (see `ApiKey`); existing keys are filled in
    from their `api_key.created` audit entries."""

    if _sqlite(database):
        migrator.sql(KEEP_KEY_ACTORS)

    migrator.add_fields(
        'api_keys',

        created_by_key=pw.ForeignKeyField(column_name='created_by_key_id', field='id', model='self', null=True, on_delete='SET NULL'),
        organization_key=pw.BooleanField(default=False))

    if _sqlite(database):
        for statement in RESTORE_KEY_ACTORS:
            migrator.sql(statement)

    migrator.run(backfill_creators, _target(database))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop both columns (creators filled in from the audit log stay in created_by; keys
    without one are trusted on their scopes alone again, as before 013)."""

    if _sqlite(database):
        migrator.sql(KEEP_KEY_ACTORS)

    migrator.drop_index('api_keys', 'created_by_key')  # SQLite drops no indexed column

    migrator.remove_fields('api_keys', 'created_by_key', 'organization_key')

    if _sqlite(database):
        for statement in RESTORE_KEY_ACTORS:
            migrator.sql(statement)
