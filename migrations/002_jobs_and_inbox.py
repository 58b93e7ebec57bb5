"""Migration 002_jobs_and_inbox (peewee-migrate; the operations it offers are listed in
peewee_migrate/template.py)."""

from contextlib import suppress

import peewee as pw
from peewee_migrate import Migrator


with suppress(ImportError):
    import playhouse.postgres_ext as pw_pext


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Job queues (the outbox among them) and the inbox of processed message ids."""

    @migrator.create_model
    class InboxMessage(pw.Model):
        id = pw.AutoField()
        consumer = pw.CharField(max_length=32)
        message_id = pw.CharField(max_length=64)
        topic = pw.CharField(max_length=64)
        received_at = pw.DateTimeField()

        class Meta:
            legacy_table_names = False  # index names start with the table name
            table_name = "inbox_messages"
            indexes = [(('consumer', 'message_id'), True), (('received_at',), False)]

    @migrator.create_model
    class Job(pw.Model):
        id = pw.AutoField()
        queue = pw.CharField(max_length=32)
        dedupe_key = pw.CharField(max_length=255, null=True)
        payload = pw.JSONField(default=dict)
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', model=migrator.orm['organizations'], null=True, on_delete='CASCADE')
        status = pw.CharField(default='PENDING', max_length=16)
        attempts = pw.IntegerField(default=0)
        max_attempts = pw.IntegerField(default=10)
        run_at = pw.DateTimeField()
        locked_by = pw.CharField(max_length=128, null=True)
        locked_until = pw.DateTimeField(null=True)
        last_error = pw.TextField(null=True)
        created_at = pw.DateTimeField()
        finished_at = pw.DateTimeField(null=True)

        class Meta:
            legacy_table_names = False  # index names start with the table name
            table_name = "jobs"
            indexes = [(('queue', 'dedupe_key'), True), (('queue', 'status', 'run_at'), False), (('queue', 'status', 'locked_until'), False)]


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop both tables (pending jobs and outbox messages are lost)."""

    migrator.remove_model('jobs')

    migrator.remove_model('inbox_messages')
