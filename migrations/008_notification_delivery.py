"""Migration 008_notification_delivery (peewee-migrate; the operations it offers are listed in
peewee_migrate/template.py)."""

from contextlib import suppress

import peewee as pw
from peewee_migrate import Migrator


with suppress(ImportError):
    import playhouse.postgres_ext as pw_pext


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Write your migrations here."""
    
    migrator.add_fields(
        'notification_rules',

        params=pw.JSONField(default=dict))

    migrator.add_fields(
        'notification_logs',

        last_attempt_at=pw.DateTimeField(null=True),
        locked_by=pw.CharField(max_length=128, null=True),
        locked_until=pw.DateTimeField(null=True))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Write your rollback migrations here."""
    
    # Deliveries in flight go back to the queue (the old schema has no lease).
    migrator.sql("UPDATE notification_logs SET status = 'PENDING' WHERE status = 'SENDING'")
    migrator.remove_fields('notification_logs', 'last_attempt_at', 'locked_by', 'locked_until')

    migrator.remove_fields('notification_rules', 'params')
