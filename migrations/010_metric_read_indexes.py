"""Migration 010_metric_read_indexes (peewee-migrate; the operations it offers are listed in
peewee_migrate/template.py)."""

from contextlib import suppress

import peewee as pw
from peewee_migrate import Migrator


with suppress(ImportError):
    import playhouse.postgres_ext as pw_pext


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Indexes for the metrics reads and the incremental recompute (issue 9's benchmarks):
    the merged_at and deployed_at indexes widen to cover the stage columns, so medians over
    a period are index-only; a covering closed_at index counts open PRs at the end of a
    day; (repository, created_at) finds each repository's first activity. CREATE INDEX
    blocks writes to pull_requests while it builds: seconds per million rows."""

    migrator.drop_index('pull_requests', 'organization', 'deployed_at')

    migrator.drop_index('pull_requests', 'organization', 'merged_at')

    migrator.add_index('pull_requests', 'organization', 'closed_at', 'author_is_bot', 'created_at', 'repository', unique=False)

    migrator.add_index('pull_requests', 'organization', 'deployed_at', 'author_is_bot', 'repository', 'cycle_s', unique=False)

    migrator.add_index('pull_requests', 'organization', 'merged_at', 'author_is_bot', 'author', 'repository', 'coding_s', 'pickup_s', 'review_s', 'deploy_s', 'cycle_s', unique=False)

    migrator.add_index('pull_requests', 'repository', 'created_at', unique=False)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Back to migration 009's two narrow indexes."""

    migrator.drop_index('pull_requests', 'organization', 'closed_at', 'author_is_bot', 'created_at', 'repository')

    migrator.drop_index('pull_requests', 'organization', 'deployed_at', 'author_is_bot', 'repository', 'cycle_s')

    migrator.drop_index('pull_requests', 'organization', 'merged_at', 'author_is_bot', 'author', 'repository', 'coding_s', 'pickup_s', 'review_s', 'deploy_s', 'cycle_s')

    migrator.drop_index('pull_requests', 'repository', 'created_at')

    migrator.add_index('pull_requests', 'organization', 'deployed_at', unique=False)

    migrator.add_index('pull_requests', 'organization', 'merged_at', unique=False)
