"""Migration 011_tenant_security (peewee-migrate; the operations it offers are listed in
peewee_migrate/template.py)."""

from contextlib import suppress

import peewee as pw
from peewee_migrate import Migrator


with suppress(ImportError):
    import playhouse.postgres_ext as pw_pext


# Each delivery row names its event's repository (a GitHub App delivery is stored once per
# organization that verified the repository). A delivery whose event retention already
# removed gets 0: it only has to keep deduplicating the same (hook, delivery) pair.
BACKFILL_DELIVERY_REPOSITORY = """
UPDATE event_deliveries SET repository_id = COALESCE(
    (SELECT events.repository_id FROM events WHERE events.id = event_deliveries.event_id), 0)
"""

# Repositories connected before this migration: their GitHub id came from GitHub's API or
# from a first webhook, which cannot be told apart now. They stay accepted (verified as of
# their connection) and have no token owner until an ADMIN verifies them with their own
# GitHub token; a repository without an id stays unverified.
GRANDFATHER_REPOSITORIES = """
UPDATE repositories SET verified_at = connected_at WHERE github_id IS NOT NULL
"""


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Invitations (membership by consent); a repository's verified GitHub identity and its
    token owner; the same GitHub repository connectable by several organizations (its id,
    and those of its pull requests, issues, reviews and deployments, unique per
    organization, not globally), and the webhook dedupe per repository. Updates every row
    of event_deliveries and rebuilds four indexes: seconds per million rows."""

    migrator.add_fields(
        'repositories',

        verified_at=pw.DateTimeField(null=True),
        connected_by=pw.ForeignKeyField(column_name='connected_by_id', field='id', model=migrator.orm['users'], null=True, on_delete='SET NULL'),
        github_problem=pw.TextField(null=True))

    migrator.sql(GRANDFATHER_REPOSITORIES)

    # Only github_id's index changes (unique -> plain): the column stays as it is. (On SQLite
    # change_fields would rebuild the table, and dropping the old one would cascade-delete
    # every row that references a repository.)
    migrator.drop_index('repositories', 'github_id')

    with migrator.fake():
        migrator.change_fields('repositories', github_id=pw.BigIntegerField(index=True, null=True))

    migrator.add_index('repositories', 'github_id', unique=False)

    migrator.add_index('repositories', 'organization', 'github_id', unique=True)

    migrator.add_fields(
        'event_deliveries',

        repository_id=pw.IntegerField(null=True))

    migrator.sql(BACKFILL_DELIVERY_REPOSITORY)

    if not fake:
        migrator()  # the column exists and is filled before it becomes NOT NULL

    migrator.add_not_null('event_deliveries', 'repository_id')

    migrator.drop_index('event_deliveries', 'source', 'hook_id', 'delivery_id')

    migrator.add_index('event_deliveries', 'source', 'hook_id', 'delivery_id', 'repository_id', unique=True)

    # Activity keyed by GitHub's ids holds them once per organization, not once globally:
    # organizations that connected the same GitHub repository each keep their rows. Only
    # indexes change (no table rebuild on SQLite, see above).
    for table in ('pull_requests', 'issues'):
        migrator.drop_index(table, 'github_id')
        with migrator.fake():
            migrator.change_fields(table, github_id=pw.BigIntegerField(null=True))

    for table in ('reviews', 'deployments'):
        migrator.drop_index(table, 'kind', 'github_id')
        migrator.add_index(table, 'organization', 'kind', 'github_id', unique=True)

    @migrator.create_model
    class Invitation(pw.Model):
        id = pw.AutoField()
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', index=False, model=migrator.orm['organizations'], on_delete='CASCADE')
        login = pw.CharField(index=True, max_length=100, null=True)
        email = pw.CharField(index=True, max_length=320, null=True)
        github_id = pw.BigIntegerField(null=True)
        role = pw.CharField(default='MEMBER', max_length=16)
        status = pw.CharField(default='PENDING', max_length=16)
        invited_by = pw.ForeignKeyField(column_name='invited_by_id', field='id', index=False, model=migrator.orm['users'], null=True, on_delete='SET NULL')
        invited_by_key_id = pw.IntegerField(null=True)
        accepted_by = pw.ForeignKeyField(column_name='accepted_by_id', field='id', index=False, model=migrator.orm['users'], null=True, on_delete='SET NULL')
        created_at = pw.DateTimeField()
        expires_at = pw.DateTimeField()
        responded_at = pw.DateTimeField(null=True)
        updated_at = pw.DateTimeField()

        class Meta:
            legacy_table_names = False
            table_name = "invitations"
            indexes = [(('organization', 'status'), False)]


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Back to 010. Refused while one GitHub repository is connected by two organizations
    (its ids, and its pull requests', issues', reviews' and deployments', could not be
    unique again): delete one of them first. A GitHub App delivery stored for several
    organizations keeps one dedupe row."""

    migrator.remove_model('invitations')

    for table in ('reviews', 'deployments'):
        migrator.drop_index(table, 'organization', 'kind', 'github_id')
        migrator.add_index(table, 'kind', 'github_id', unique=True)

    for table in ('pull_requests', 'issues'):
        with migrator.fake():
            migrator.change_fields(table, github_id=pw.BigIntegerField(null=True, unique=True))
        migrator.add_index(table, 'github_id', unique=True)

    migrator.sql(
        "DELETE FROM event_deliveries WHERE id NOT IN ("
        "SELECT MIN(id) FROM event_deliveries GROUP BY source, hook_id, delivery_id)"
    )

    migrator.drop_index('event_deliveries', 'source', 'hook_id', 'delivery_id', 'repository_id')

    migrator.remove_fields('event_deliveries', 'repository_id')

    migrator.add_index('event_deliveries', 'source', 'hook_id', 'delivery_id', unique=True)

    migrator.drop_index('repositories', 'organization', 'github_id')

    migrator.drop_index('repositories', 'github_id')

    with migrator.fake():  # the index below, not a table rebuild (see migrate)
        migrator.change_fields('repositories', github_id=pw.BigIntegerField(null=True, unique=True))

    migrator.add_index('repositories', 'github_id', unique=True)

    migrator.drop_index('repositories', 'connected_by')  # SQLite drops no index with its column

    migrator.remove_fields('repositories', 'verified_at', 'connected_by', 'github_problem')
