"""Peewee migrations -- 005_incidents_and_deployment_sources.py.

Some examples (model - class or model name)::

    > Model = migrator.orm['table_name']            # Return model in current state by name
    > Model = migrator.ModelClass                   # Return model in current state by name

    > migrator.sql(sql)                             # Run custom SQL
    > migrator.run(func, *args, **kwargs)           # Run python function with the given args
    > migrator.create_model(Model)                  # Create a model (could be used as decorator)
    > migrator.remove_model(model, cascade=True)    # Remove a model
    > migrator.add_fields(model, **fields)          # Add fields (allow_not_null=True skips default)
    > migrator.change_fields(model, **fields)       # Change fields
    > migrator.remove_fields(model, *field_names, cascade=True)
    > migrator.rename_field(model, old_field_name, new_field_name)
    > migrator.rename_table(model, new_table_name)
    > migrator.add_index(model, *col_names, unique=False)
    > migrator.add_not_null(model, *field_names)
    > migrator.add_default(model, field_name, default)
    > migrator.add_constraint(model, name, sql)
    > migrator.drop_index(model, *col_names)
    > migrator.drop_not_null(model, *field_names)
    > migrator.drop_constraints(model, *constraints)

"""

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
