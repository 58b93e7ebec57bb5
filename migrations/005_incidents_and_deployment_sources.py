"""Migration 005_incidents_and_deployment_sources (peewee-migrate; the operations it offers are listed in
peewee_migrate/template.py)."""

from contextlib import suppress

import peewee as pw
from peewee_migrate import Migrator


with suppress(ImportError):
    import playhouse.postgres_ext as pw_pext


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Incidents; repository settings; deployments from GitHub Deployments or from
    deploying workflow runs (github_id unique per kind)."""

    migrator.add_fields(
        'repositories',

        settings=pw.JSONField(default=dict))

    migrator.add_fields(
        'deployments',

        kind=pw.CharField(default='DEPLOYMENT', max_length=16))

    migrator.drop_index('deployments', 'github_id')

    migrator.add_index('deployments', 'kind', 'github_id', unique=True)

    @migrator.create_model
    class Incident(pw.Model):
        id = pw.AutoField()
        repository = pw.ForeignKeyField(column_name='repository_id', field='id', index=False, model=migrator.orm['repositories'], on_delete='CASCADE')
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', index=False, model=migrator.orm['organizations'], on_delete='CASCADE')
        kind = pw.CharField(max_length=24)
        source_id = pw.BigIntegerField()
        title = pw.TextField(default='')
        opened_at = pw.DateTimeField()
        resolved_at = pw.DateTimeField(null=True)

        class Meta:
            legacy_table_names = False
            table_name = "incidents"
            indexes = [(('kind', 'source_id'), True), (('organization', 'opened_at'), False), (('repository', 'opened_at'), False)]


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Back to the previous schema (indexes go before their columns do)."""

    migrator.remove_model('incidents')

    migrator.drop_index('deployments', 'kind', 'github_id')

    migrator.remove_fields('deployments', 'kind')

    migrator.add_index('deployments', 'github_id', unique=True)

    migrator.remove_fields('repositories', 'settings')
