"""Repositories an organization connected, and their daily counters."""

import peewee as pw

from shared.models.base import BaseModel, EnumField, UTCDateTimeField, utcnow
from shared.models.core import Organization, User
from shared.models.enums import Sensitivity


class Repository(BaseModel):
    organization = pw.ForeignKeyField(
        Organization, backref="repositories", on_delete="CASCADE", index=False
    )
    # The repository's GitHub identity (id, and full_name's owner/name) comes only from
    # GitHub's API answered with the token owner's token, never from a webhook body:
    # `verified_at` says when. Unverified repositories accept no webhooks. Two organizations
    # may connect the same GitHub repository when each connector can read it on GitHub.
    github_id = pw.BigIntegerField(null=True, index=True)
    verified_at = UTCDateTimeField(null=True)
    # Whose GitHub token the repository's GitHub calls use: the person who connected it
    # (or later verified it with their own token). Never anyone else's: when they leave
    # the organization or GitHub refuses their token, the calls stop (`github_problem`).
    connected_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL")
    github_problem = pw.TextField(null=True)
    full_name = pw.CharField(max_length=255, index=True)
    default_branch = pw.CharField(max_length=255, default="main")
    language = pw.CharField(max_length=64, null=True)
    private = pw.BooleanField(default=False)
    sensitivity = EnumField(Sensitivity, default=Sensitivity.INTERNAL)
    # Fernet ciphertext of the webhook HMAC secret (shared.crypto).
    webhook_secret_encrypted = pw.TextField(null=True)
    is_active = pw.BooleanField(default=True)
    # e.g. {"deployment_source": "deployments" | "merges" | "workflow:deploy.yml"}
    settings = pw.JSONField(default=dict)
    # Backfill progress and the incremental marks and ETags of the last run.
    backfill_state = pw.JSONField(default=dict)
    connected_at = UTCDateTimeField(default=utcnow)
    disconnected_at = UTCDateTimeField(null=True)
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "repositories"
        indexes = (
            (("organization", "full_name"), True),
            (("organization", "github_id"), True),
            (("organization", "is_active"), False),
            (("organization", "sensitivity"), False),
        )


class RepositoryStats(BaseModel):
    """One repository's activity on one UTC day (written by the metrics service)."""

    repository = pw.ForeignKeyField(
        Repository, backref="daily_stats", on_delete="CASCADE", index=False
    )
    organization = pw.ForeignKeyField(Organization, on_delete="CASCADE", index=False)
    date = pw.DateField()
    commits = pw.IntegerField(default=0)
    additions = pw.IntegerField(default=0)
    deletions = pw.IntegerField(default=0)
    contributors = pw.IntegerField(default=0)
    prs_opened = pw.IntegerField(default=0)
    prs_merged = pw.IntegerField(default=0)
    prs_closed = pw.IntegerField(default=0)
    open_prs = pw.IntegerField(default=0)
    open_issues = pw.IntegerField(default=0)
    reviews = pw.IntegerField(default=0)
    review_comments = pw.IntegerField(default=0)
    issues_opened = pw.IntegerField(default=0)
    issues_closed = pw.IntegerField(default=0)
    deployments = pw.IntegerField(default=0)
    failed_deployments = pw.IntegerField(default=0)
    cycle_time_median_s = pw.FloatField(null=True)
    computed_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "repository_stats"
        indexes = (
            (("repository", "date"), True),
            (("organization", "date"), False),
            (("date",), False),
        )
