"""Migration 004_activity_reviews_deployments (peewee-migrate; the operations it offers are listed in
peewee_migrate/template.py)."""

from contextlib import suppress

import peewee as pw
from peewee_migrate import Migrator


with suppress(ImportError):
    import playhouse.postgres_ext as pw_pext


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Reviews and deployments; events keyed by (source, hook, delivery) and leasable;
    bot flags and conversation-comment counts on activity."""

    migrator.add_fields(
        'pull_requests',

        author_is_bot=pw.BooleanField(default=False),
        comments=pw.IntegerField(default=0))

    migrator.add_fields(
        'commits',

        author_is_bot=pw.BooleanField(default=False))

    migrator.add_fields(
        'events',

        hook_id=pw.CharField(default='', max_length=32),
        headers=pw.JSONField(default=dict),
        locked_by=pw.CharField(max_length=128, null=True),
        locked_until=pw.DateTimeField(null=True))

    migrator.drop_index('events', 'source', 'delivery_id')

    migrator.add_index('events', 'source', 'hook_id', 'delivery_id', unique=True)

    @migrator.create_model
    class Deployment(pw.Model):
        id = pw.AutoField()
        repository = pw.ForeignKeyField(column_name='repository_id', field='id', index=False, model=migrator.orm['repositories'], on_delete='CASCADE')
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', index=False, model=migrator.orm['organizations'], on_delete='CASCADE')
        github_id = pw.BigIntegerField(unique=True)
        environment = pw.CharField(max_length=255)
        sha = pw.CharField(max_length=64)
        ref = pw.CharField(max_length=255, null=True)
        creator_login = pw.CharField(max_length=100, null=True)
        state = pw.CharField(default='PENDING', max_length=16)
        created_at = pw.DateTimeField()
        status_at = pw.DateTimeField(null=True)
        finished_at = pw.DateTimeField(null=True)

        class Meta:
            legacy_table_names = False  # index names start with the table name
            table_name = "deployments"
            indexes = [(('repository', 'environment', 'created_at'), False), (('organization', 'created_at'), False), (('organization', 'state', 'finished_at'), False)]

    @migrator.create_model
    class Review(pw.Model):
        id = pw.AutoField()
        pull_request = pw.ForeignKeyField(column_name='pull_request_id', field='id', index=False, model=migrator.orm['pull_requests'], on_delete='CASCADE')
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', index=False, model=migrator.orm['organizations'], on_delete='CASCADE')
        kind = pw.CharField(max_length=16)
        github_id = pw.BigIntegerField()
        reviewer = pw.ForeignKeyField(column_name='reviewer_id', field='id', index=False, model=migrator.orm['users'], null=True, on_delete='SET NULL')
        reviewer_login = pw.CharField(max_length=100, null=True)
        reviewer_is_bot = pw.BooleanField(default=False)
        state = pw.CharField(max_length=32, null=True)
        commit_sha = pw.CharField(max_length=64, null=True)
        submitted_at = pw.DateTimeField()

        class Meta:
            legacy_table_names = False  # index names start with the table name
            table_name = "reviews"
            indexes = [(('kind', 'github_id'), True), (('pull_request', 'submitted_at'), False), (('organization', 'submitted_at'), False), (('reviewer', 'submitted_at'), False)]


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Back to the previous schema (the index must go before its column does)."""

    migrator.drop_index('events', 'source', 'hook_id', 'delivery_id')

    migrator.remove_fields('events', 'hook_id', 'headers', 'locked_by', 'locked_until')

    migrator.add_index('events', 'source', 'delivery_id', unique=True)

    migrator.remove_fields('commits', 'author_is_bot')

    migrator.remove_fields('pull_requests', 'author_is_bot', 'comments')

    migrator.remove_model('reviews')

    migrator.remove_model('deployments')
