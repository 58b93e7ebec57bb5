"""Migration 006_repository_backfill_state (peewee-migrate; the operations it offers are listed in
peewee_migrate/template.py)."""

from contextlib import suppress

import peewee as pw
from peewee_migrate import Migrator


with suppress(ImportError):
    import playhouse.postgres_ext as pw_pext


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Where each repository's backfill stands."""
    migrator.add_fields(
        'repositories',

        backfill_state=pw.JSONField(default=dict))


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop the backfill state (the next backfill starts from scratch)."""
    migrator.remove_fields('repositories', 'backfill_state')
