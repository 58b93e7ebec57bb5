"""Migration 009_partition_event_tables (peewee-migrate; the operations it offers are listed in
peewee_migrate/template.py)."""

import peewee as pw
from peewee_migrate import Migrator

from shared import partitions

# Every stored delivery, so the redelivery dedupe moves off events before it is partitioned.
BACKFILL_DELIVERIES = """
INSERT INTO event_deliveries (source, hook_id, delivery_id, event_id, received_at)
SELECT source, hook_id, delivery_id, id, received_at FROM events
"""


def _postgres(database) -> bool:
    return isinstance(getattr(database, "obj", None) or database, pw.PostgresqlDatabase)


def _target(database):
    return getattr(database, "obj", None) or database


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Redelivery dedupe in event_deliveries; events and audit_logs partitioned by month on
    PostgreSQL (SQLite keeps plain tables)."""

    @migrator.create_model
    class EventDelivery(pw.Model):
        id = pw.AutoField()
        source = pw.CharField(default="github", max_length=32)
        hook_id = pw.CharField(default="", max_length=32)
        delivery_id = pw.CharField(max_length=128)
        event_id = pw.IntegerField()
        received_at = pw.DateTimeField()

        class Meta:
            legacy_table_names = False
            table_name = "event_deliveries"
            indexes = [(("source", "hook_id", "delivery_id"), True), (("received_at",), False)]

    migrator.sql(BACKFILL_DELIVERIES)

    migrator.drop_index("events", "source", "hook_id", "delivery_id")

    migrator.add_index("events", "source", "hook_id", "delivery_id", unique=False)

    if _postgres(database):
        for table in partitions.PARTITIONED:
            migrator.run(partitions.partition_table, table, _target(database))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Plain tables again (every row kept); the dedupe back on events."""

    if _postgres(database):
        for table in partitions.PARTITIONED:
            migrator.run(partitions.unpartition_table, table, _target(database))

    migrator.drop_index("events", "source", "hook_id", "delivery_id")

    migrator.add_index("events", "source", "hook_id", "delivery_id", unique=True)

    migrator.remove_model("event_deliveries")
