"""Migration 001_initial (peewee-migrate; the operations it offers are listed in
peewee_migrate/template.py)."""

from contextlib import suppress

import peewee as pw
from peewee_migrate import Migrator


with suppress(ImportError):
    import playhouse.postgres_ext as pw_pext


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """The 16 tables of the data layer (generated from shared.models, reviewed)."""

    @migrator.create_model
    class Organization(pw.Model):
        id = pw.AutoField()
        name = pw.CharField(max_length=255)
        slug = pw.CharField(max_length=100, unique=True)
        plan = pw.CharField(default='FREE', max_length=16)
        is_personal = pw.BooleanField(default=False)
        github_login = pw.CharField(index=True, max_length=100, null=True)
        settings = pw.JSONField(default=dict)
        created_at = pw.DateTimeField()
        updated_at = pw.DateTimeField()

        class Meta:
            legacy_table_names = False  # index names start with the table name
            table_name = "organizations"
            indexes = [(('plan', 'created_at'), False)]

    @migrator.create_model
    class Repository(pw.Model):
        id = pw.AutoField()
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', index=False, model=migrator.orm['organizations'], on_delete='CASCADE')
        github_id = pw.BigIntegerField(null=True, unique=True)
        full_name = pw.CharField(index=True, max_length=255)
        default_branch = pw.CharField(default='main', max_length=255)
        language = pw.CharField(max_length=64, null=True)
        private = pw.BooleanField(default=False)
        sensitivity = pw.CharField(default='INTERNAL', max_length=16)
        webhook_secret_encrypted = pw.TextField(null=True)
        is_active = pw.BooleanField(default=True)
        connected_at = pw.DateTimeField()
        disconnected_at = pw.DateTimeField(null=True)
        created_at = pw.DateTimeField()
        updated_at = pw.DateTimeField()

        class Meta:
            legacy_table_names = False  # index names start with the table name
            table_name = "repositories"
            indexes = [(('organization', 'full_name'), True), (('organization', 'is_active'), False), (('organization', 'sensitivity'), False)]

    @migrator.create_model
    class User(pw.Model):
        id = pw.AutoField()
        github_id = pw.BigIntegerField(unique=True)
        login = pw.CharField(index=True, max_length=100)
        name = pw.CharField(max_length=255, null=True)
        email = pw.CharField(index=True, max_length=320, null=True)
        avatar_url = pw.TextField(null=True)
        is_bot = pw.BooleanField(default=False)
        oauth_token_encrypted = pw.TextField(null=True)
        last_login_at = pw.DateTimeField(null=True)
        created_at = pw.DateTimeField()
        updated_at = pw.DateTimeField()

        class Meta:
            legacy_table_names = False  # index names start with the table name
            table_name = "users"
            indexes = [(('created_at',), False)]

    @migrator.create_model
    class PullRequest(pw.Model):
        id = pw.AutoField()
        repository = pw.ForeignKeyField(column_name='repository_id', field='id', index=False, model=migrator.orm['repositories'], on_delete='CASCADE')
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', index=False, model=migrator.orm['organizations'], on_delete='CASCADE')
        number = pw.IntegerField()
        github_id = pw.BigIntegerField(null=True, unique=True)
        author = pw.ForeignKeyField(column_name='author_id', field='id', index=False, model=migrator.orm['users'], null=True, on_delete='SET NULL')
        author_login = pw.CharField(max_length=100, null=True)
        title = pw.TextField(default='')
        body = pw.TextField(null=True)
        state = pw.CharField(default='OPEN', max_length=16)
        draft = pw.BooleanField(default=False)
        base_ref = pw.CharField(max_length=255)
        head_ref = pw.CharField(max_length=255)
        head_sha = pw.CharField(max_length=64, null=True)
        additions = pw.IntegerField(default=0)
        deletions = pw.IntegerField(default=0)
        changed_files = pw.IntegerField(default=0)
        commits_count = pw.IntegerField(default=0)
        review_comments = pw.IntegerField(default=0)
        created_at = pw.DateTimeField()
        ready_at = pw.DateTimeField(null=True)
        first_commit_at = pw.DateTimeField(null=True)
        first_review_at = pw.DateTimeField(null=True)
        approved_at = pw.DateTimeField(null=True)
        merged_at = pw.DateTimeField(null=True)
        closed_at = pw.DateTimeField(null=True)
        merge_commit_sha = pw.CharField(max_length=64, null=True)
        updated_at = pw.DateTimeField()

        class Meta:
            legacy_table_names = False  # index names start with the table name
            table_name = "pull_requests"
            indexes = [(('repository', 'number'), True), (('repository', 'state'), False), (('repository', 'head_ref'), False), (('organization', 'state'), False), (('organization', 'created_at'), False), (('organization', 'merged_at'), False), (('author', 'created_at'), False)]

    @migrator.create_model
    class AIReview(pw.Model):
        id = pw.AutoField()
        pull_request = pw.ForeignKeyField(column_name='pull_request_id', field='id', index=False, model=migrator.orm['pull_requests'], on_delete='CASCADE')
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', index=False, model=migrator.orm['organizations'], on_delete='CASCADE')
        head_sha = pw.CharField(max_length=64)
        provider = pw.CharField(max_length=64)
        model = pw.CharField(max_length=128, null=True)
        risk_score = pw.SmallIntegerField(constraints=[pw.SQL('CHECK (risk_score BETWEEN 0 AND 100)')])
        risk_level = pw.CharField(max_length=16)
        findings = pw.JSONField(default=list)
        summary = pw.TextField(default='')
        created_at = pw.DateTimeField()

        class Meta:
            legacy_table_names = False  # index names start with the table name
            table_name = "ai_reviews"
            indexes = [(('pull_request', 'head_sha', 'provider'), True), (('organization', 'created_at'), False), (('organization', 'risk_level', 'created_at'), False)]

    @migrator.create_model
    class ApiKey(pw.Model):
        id = pw.AutoField()
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', index=False, model=migrator.orm['organizations'], on_delete='CASCADE')
        created_by = pw.ForeignKeyField(column_name='created_by_id', field='id', model=migrator.orm['users'], null=True, on_delete='SET NULL')
        name = pw.CharField(max_length=255)
        prefix = pw.CharField(max_length=32, unique=True)
        key_hash = pw.CharField(max_length=255)
        scopes = pw.JSONField(default=list)
        expires_at = pw.DateTimeField(null=True)
        last_used_at = pw.DateTimeField(null=True)
        revoked_at = pw.DateTimeField(null=True)
        created_at = pw.DateTimeField()

        class Meta:
            legacy_table_names = False  # index names start with the table name
            table_name = "api_keys"
            indexes = [(('organization', 'revoked_at'), False)]

    @migrator.create_model
    class AuditLog(pw.Model):
        id = pw.AutoField()
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', index=False, model=migrator.orm['organizations'], null=True, on_delete='CASCADE')
        actor_user = pw.ForeignKeyField(column_name='actor_user_id', field='id', index=False, model=migrator.orm['users'], null=True, on_delete='SET NULL')
        actor_api_key = pw.ForeignKeyField(column_name='actor_api_key_id', field='id', model=migrator.orm['api_keys'], null=True, on_delete='SET NULL')
        action = pw.CharField(max_length=100)
        target_type = pw.CharField(max_length=64, null=True)
        target_id = pw.CharField(max_length=64, null=True)
        ip = pw.CharField(max_length=45, null=True)
        user_agent = pw.TextField(null=True)
        metadata = pw.JSONField(default=dict)
        created_at = pw.DateTimeField()

        class Meta:
            legacy_table_names = False  # index names start with the table name
            table_name = "audit_logs"
            indexes = [(('organization', 'created_at'), False), (('organization', 'action', 'created_at'), False), (('actor_user', 'created_at'), False), (('target_type', 'target_id'), False), (('created_at',), False)]

    @migrator.create_model
    class Commit(pw.Model):
        id = pw.AutoField()
        repository = pw.ForeignKeyField(column_name='repository_id', field='id', index=False, model=migrator.orm['repositories'], on_delete='CASCADE')
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', index=False, model=migrator.orm['organizations'], on_delete='CASCADE')
        sha = pw.CharField(max_length=64)
        author = pw.ForeignKeyField(column_name='author_id', field='id', index=False, model=migrator.orm['users'], null=True, on_delete='SET NULL')
        author_login = pw.CharField(max_length=100, null=True)
        author_email = pw.CharField(max_length=320, null=True)
        author_name = pw.CharField(max_length=255, null=True)
        message = pw.TextField(default='')
        additions = pw.IntegerField(default=0)
        deletions = pw.IntegerField(default=0)
        files_changed = pw.IntegerField(default=0)
        authored_at = pw.DateTimeField()
        committed_at = pw.DateTimeField()
        branch = pw.CharField(max_length=255, null=True)
        pushed_at = pw.DateTimeField(null=True)
        created_at = pw.DateTimeField()

        class Meta:
            legacy_table_names = False  # index names start with the table name
            table_name = "commits"
            indexes = [(('repository', 'sha'), True), (('organization', 'authored_at'), False), (('repository', 'authored_at'), False), (('repository', 'branch', 'pushed_at'), False), (('author', 'authored_at'), False), (('author_login', 'authored_at'), False)]

    @migrator.create_model
    class DeveloperMetric(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(column_name='user_id', field='id', index=False, model=migrator.orm['users'], on_delete='CASCADE')
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', index=False, model=migrator.orm['organizations'], on_delete='CASCADE')
        date = pw.DateField()
        commits = pw.IntegerField(default=0)
        additions = pw.IntegerField(default=0)
        deletions = pw.IntegerField(default=0)
        prs_opened = pw.IntegerField(default=0)
        prs_merged = pw.IntegerField(default=0)
        prs_reviewed = pw.IntegerField(default=0)
        reviews_given = pw.IntegerField(default=0)
        review_comments = pw.IntegerField(default=0)
        issues_opened = pw.IntegerField(default=0)
        issues_closed = pw.IntegerField(default=0)
        cycle_time_median_s = pw.FloatField(null=True)
        coding_time_median_s = pw.FloatField(null=True)
        pickup_time_median_s = pw.FloatField(null=True)
        review_time_median_s = pw.FloatField(null=True)
        computed_at = pw.DateTimeField()

        class Meta:
            legacy_table_names = False  # index names start with the table name
            table_name = "developer_metrics"
            indexes = [(('user', 'organization', 'date'), True), (('organization', 'date'), False), (('user', 'date'), False)]

    @migrator.create_model
    class Event(pw.Model):
        id = pw.AutoField()
        source = pw.CharField(default='github', max_length=32)
        delivery_id = pw.CharField(max_length=128)
        event_type = pw.CharField(max_length=64)
        action = pw.CharField(max_length=64, null=True)
        repository = pw.ForeignKeyField(column_name='repository_id', field='id', index=False, model=migrator.orm['repositories'], null=True, on_delete='CASCADE')
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', index=False, model=migrator.orm['organizations'], null=True, on_delete='CASCADE')
        payload = pw.JSONField(default=dict)
        received_at = pw.DateTimeField()
        status = pw.CharField(default='PENDING', max_length=16)
        attempts = pw.IntegerField(default=0)
        last_error = pw.TextField(null=True)
        next_attempt_at = pw.DateTimeField(null=True)
        processed_at = pw.DateTimeField(null=True)

        class Meta:
            legacy_table_names = False  # index names start with the table name
            table_name = "events"
            indexes = [(('source', 'delivery_id'), True), (('status', 'received_at'), False), (('status', 'next_attempt_at'), False), (('organization', 'received_at'), False), (('repository', 'received_at'), False), (('event_type', 'received_at'), False)]

    @migrator.create_model
    class Issue(pw.Model):
        id = pw.AutoField()
        repository = pw.ForeignKeyField(column_name='repository_id', field='id', index=False, model=migrator.orm['repositories'], on_delete='CASCADE')
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', index=False, model=migrator.orm['organizations'], on_delete='CASCADE')
        number = pw.IntegerField()
        github_id = pw.BigIntegerField(null=True, unique=True)
        author = pw.ForeignKeyField(column_name='author_id', field='id', index=False, model=migrator.orm['users'], null=True, on_delete='SET NULL')
        author_login = pw.CharField(max_length=100, null=True)
        title = pw.TextField(default='')
        state = pw.CharField(default='OPEN', max_length=16)
        labels = pw.JSONField(default=list)
        created_at = pw.DateTimeField()
        closed_at = pw.DateTimeField(null=True)
        updated_at = pw.DateTimeField()

        class Meta:
            legacy_table_names = False  # index names start with the table name
            table_name = "issues"
            indexes = [(('repository', 'number'), True), (('repository', 'state'), False), (('organization', 'created_at'), False), (('organization', 'closed_at'), False), (('author', 'created_at'), False)]

    @migrator.create_model
    class NotificationRule(pw.Model):
        id = pw.AutoField()
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', index=False, model=migrator.orm['organizations'], on_delete='CASCADE')
        name = pw.CharField(max_length=255)
        trigger = pw.CharField(max_length=64)
        conditions = pw.JSONField(default=dict)
        channel = pw.CharField(max_length=16)
        target = pw.TextField()
        secret_encrypted = pw.TextField(null=True)
        enabled = pw.BooleanField(default=True)
        cooldown_seconds = pw.IntegerField(default=0)
        created_by = pw.ForeignKeyField(column_name='created_by_id', field='id', model=migrator.orm['users'], null=True, on_delete='SET NULL')
        created_at = pw.DateTimeField()
        updated_at = pw.DateTimeField()

        class Meta:
            legacy_table_names = False  # index names start with the table name
            table_name = "notification_rules"
            indexes = [(('organization', 'name'), True), (('organization', 'trigger', 'enabled'), False)]

    @migrator.create_model
    class NotificationLog(pw.Model):
        id = pw.AutoField()
        rule = pw.ForeignKeyField(column_name='rule_id', field='id', index=False, model=migrator.orm['notification_rules'], on_delete='CASCADE')
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', index=False, model=migrator.orm['organizations'], on_delete='CASCADE')
        event_key = pw.CharField(max_length=255)
        status = pw.CharField(default='PENDING', max_length=16)
        payload = pw.JSONField(default=dict)
        attempts = pw.IntegerField(default=0)
        last_error = pw.TextField(null=True)
        response_code = pw.IntegerField(null=True)
        next_attempt_at = pw.DateTimeField(null=True)
        sent_at = pw.DateTimeField(null=True)
        created_at = pw.DateTimeField()

        class Meta:
            legacy_table_names = False  # index names start with the table name
            table_name = "notification_logs"
            indexes = [(('rule', 'event_key'), True), (('rule', 'created_at'), False), (('status', 'next_attempt_at'), False), (('organization', 'created_at'), False)]

    @migrator.create_model
    class RepositoryStats(pw.Model):
        id = pw.AutoField()
        repository = pw.ForeignKeyField(column_name='repository_id', field='id', index=False, model=migrator.orm['repositories'], on_delete='CASCADE')
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', index=False, model=migrator.orm['organizations'], on_delete='CASCADE')
        date = pw.DateField()
        commits = pw.IntegerField(default=0)
        additions = pw.IntegerField(default=0)
        deletions = pw.IntegerField(default=0)
        contributors = pw.IntegerField(default=0)
        prs_opened = pw.IntegerField(default=0)
        prs_merged = pw.IntegerField(default=0)
        prs_closed = pw.IntegerField(default=0)
        reviews = pw.IntegerField(default=0)
        review_comments = pw.IntegerField(default=0)
        issues_opened = pw.IntegerField(default=0)
        issues_closed = pw.IntegerField(default=0)
        deployments = pw.IntegerField(default=0)
        failed_deployments = pw.IntegerField(default=0)
        cycle_time_median_s = pw.FloatField(null=True)
        computed_at = pw.DateTimeField()

        class Meta:
            legacy_table_names = False  # index names start with the table name
            table_name = "repository_stats"
            indexes = [(('repository', 'date'), True), (('organization', 'date'), False), (('date',), False)]

    @migrator.create_model
    class TeamMetric(pw.Model):
        id = pw.AutoField()
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', index=False, model=migrator.orm['organizations'], on_delete='CASCADE')
        date = pw.DateField()
        active_developers = pw.IntegerField(default=0)
        commits = pw.IntegerField(default=0)
        additions = pw.IntegerField(default=0)
        deletions = pw.IntegerField(default=0)
        prs_opened = pw.IntegerField(default=0)
        prs_merged = pw.IntegerField(default=0)
        reviews = pw.IntegerField(default=0)
        review_comments = pw.IntegerField(default=0)
        issues_opened = pw.IntegerField(default=0)
        issues_closed = pw.IntegerField(default=0)
        deployments = pw.IntegerField(default=0)
        failed_deployments = pw.IntegerField(default=0)
        cycle_time_median_s = pw.FloatField(null=True)
        cycle_time_p90_s = pw.FloatField(null=True)
        coding_time_median_s = pw.FloatField(null=True)
        pickup_time_median_s = pw.FloatField(null=True)
        review_time_median_s = pw.FloatField(null=True)
        deploy_time_median_s = pw.FloatField(null=True)
        lead_time_median_s = pw.FloatField(null=True)
        change_failure_rate = pw.FloatField(null=True)
        time_to_restore_median_s = pw.FloatField(null=True)
        computed_at = pw.DateTimeField()

        class Meta:
            legacy_table_names = False  # index names start with the table name
            table_name = "team_metrics"
            indexes = [(('organization', 'date'), True), (('date',), False)]

    @migrator.create_model
    class UserOrganization(pw.Model):
        id = pw.AutoField()
        user = pw.ForeignKeyField(column_name='user_id', field='id', index=False, model=migrator.orm['users'], on_delete='CASCADE')
        organization = pw.ForeignKeyField(column_name='organization_id', field='id', index=False, model=migrator.orm['organizations'], on_delete='CASCADE')
        role = pw.CharField(default='MEMBER', max_length=16)
        created_at = pw.DateTimeField()
        updated_at = pw.DateTimeField()

        class Meta:
            legacy_table_names = False  # index names start with the table name
            table_name = "user_organizations"
            indexes = [(('user', 'organization'), True), (('organization', 'role'), False)]


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop the 16 tables, children before parents."""

    migrator.remove_model('user_organizations')

    migrator.remove_model('team_metrics')

    migrator.remove_model('repository_stats')

    migrator.remove_model('notification_logs')

    migrator.remove_model('notification_rules')

    migrator.remove_model('issues')

    migrator.remove_model('events')

    migrator.remove_model('developer_metrics')

    migrator.remove_model('commits')

    migrator.remove_model('audit_logs')

    migrator.remove_model('api_keys')

    migrator.remove_model('ai_reviews')

    migrator.remove_model('pull_requests')

    migrator.remove_model('users')

    migrator.remove_model('repositories')

    migrator.remove_model('organizations')
