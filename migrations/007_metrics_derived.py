"""Migration 007_metrics_derived (peewee-migrate; the operations it offers are listed in
peewee_migrate/template.py)."""

from contextlib import suppress

import peewee as pw
from peewee_migrate import Migrator


with suppress(ImportError):
    import playhouse.postgres_ext as pw_pext


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Write your migrations here."""
    
    migrator.drop_not_null('users', 'github_id')

    migrator.add_fields(
        'pull_requests',

        reverts_number=pw.IntegerField(null=True),
        deployed_at=pw.DateTimeField(null=True),
        coding_s=pw.FloatField(null=True),
        pickup_s=pw.FloatField(null=True),
        review_s=pw.FloatField(null=True),
        deploy_s=pw.FloatField(null=True),
        cycle_s=pw.FloatField(null=True))

    migrator.add_index('pull_requests', 'organization', 'deployed_at', unique=False)

    migrator.add_fields(
        'ai_reviews',

        features=pw.JSONField(default=dict))

    migrator.add_fields(
        'reviews',

        deleted_at=pw.DateTimeField(null=True))

    migrator.add_fields(
        'repository_stats',

        open_prs=pw.IntegerField(default=0),
        open_issues=pw.IntegerField(default=0))

    migrator.add_fields(
        'team_metrics',

        open_prs=pw.IntegerField(default=0),
        incidents_opened=pw.IntegerField(default=0),
        incidents_resolved=pw.IntegerField(default=0),
        coding_time_p90_s=pw.FloatField(null=True),
        pickup_time_p90_s=pw.FloatField(null=True),
        review_time_p90_s=pw.FloatField(null=True),
        deploy_time_p90_s=pw.FloatField(null=True))

    @migrator.create_model
    class IssueClosure(pw.Model):
        id = pw.AutoField()
        issue = pw.ForeignKeyField(column_name='issue_id', field='id', index=False, model=migrator.orm['issues'], on_delete='CASCADE')
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', index=False, model=migrator.orm['organizations'], on_delete='CASCADE')
        repository = pw.ForeignKeyField(column_name='repository_id', field='id', index=False, model=migrator.orm['repositories'], on_delete='CASCADE')
        closed_at = pw.DateTimeField()
        closer = pw.ForeignKeyField(column_name='closer_id', field='id', index=False, model=migrator.orm['users'], null=True, on_delete='SET NULL')
        closer_login = pw.CharField(max_length=100, null=True)
        closer_is_bot = pw.BooleanField(default=False)

        class Meta:
            legacy_table_names = False
            table_name = "issue_closures"
            indexes = [(('issue', 'closed_at'), True), (('organization', 'closed_at'), False), (('closer', 'closed_at'), False)]

    @migrator.create_model
    class LoginLink(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(column_name='user_id', field='id', index=False, model=migrator.orm['users'], on_delete='CASCADE')
        token_digest = pw.CharField(max_length=64, unique=True)
        created_at = pw.DateTimeField()
        expires_at = pw.DateTimeField()
        used_at = pw.DateTimeField(null=True)

        class Meta:
            legacy_table_names = False
            table_name = "login_links"

    @migrator.create_model
    class ProductionDeployment(pw.Model):
        id = pw.AutoField()
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', index=False, model=migrator.orm['organizations'], on_delete='CASCADE')
        repository = pw.ForeignKeyField(column_name='repository_id', field='id', index=False, model=migrator.orm['repositories'], on_delete='CASCADE')
        source = pw.CharField(max_length=16)
        source_id = pw.BigIntegerField()
        created_at = pw.DateTimeField()
        finished_at = pw.DateTimeField()
        succeeded = pw.BooleanField()
        failed = pw.BooleanField(default=False)

        class Meta:
            legacy_table_names = False
            table_name = "production_deployments"
            indexes = [(('source', 'source_id'), True), (('repository', 'finished_at'), False), (('organization', 'finished_at'), False)]

    @migrator.create_model
    class PullRequestCommit(pw.Model):
        id = pw.AutoField()
        pull_request = pw.ForeignKeyField(column_name='pull_request_id', field='id', index=False, model=migrator.orm['pull_requests'], on_delete='CASCADE')
        sha = pw.CharField(max_length=64)

        class Meta:
            legacy_table_names = False
            table_name = "pull_request_commits"
            indexes = [(('pull_request', 'sha'), True)]


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Write your rollback migrations here."""
    
    migrator.remove_fields('team_metrics', 'open_prs', 'incidents_opened', 'incidents_resolved', 'coding_time_p90_s', 'pickup_time_p90_s', 'review_time_p90_s', 'deploy_time_p90_s')

    migrator.remove_fields('repository_stats', 'open_prs', 'open_issues')

    migrator.remove_fields('reviews', 'deleted_at')

    migrator.remove_fields('ai_reviews', 'features')

    migrator.drop_index('pull_requests', 'organization', 'deployed_at')

    migrator.remove_fields('pull_requests', 'reverts_number', 'deployed_at', 'coding_s', 'pickup_s', 'review_s', 'deploy_s', 'cycle_s')

    # Developers only seen in activity have no GitHub id: the old schema cannot hold them.
    migrator.sql("DELETE FROM users WHERE github_id IS NULL")
    migrator.add_not_null('users', 'github_id')

    migrator.remove_model('pull_request_commits')

    migrator.remove_model('production_deployments')

    migrator.remove_model('login_links')

    migrator.remove_model('issue_closures')
