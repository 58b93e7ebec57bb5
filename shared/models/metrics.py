"""Metrics: daily per-developer and per-organization figures, and AI reviews of pull requests.

Durations are seconds (`*_s`); medians and p90s are percentile_cont over the day's rows.
"""

import peewee as pw

from shared.models.activity import PullRequest
from shared.models.base import BaseModel, EnumField, UTCDateTimeField, utcnow
from shared.models.core import Organization, User
from shared.models.enums import RiskLevel
from shared.models.repository import Repository


class DeveloperMetric(BaseModel):
    user = pw.ForeignKeyField(User, backref="daily_metrics", on_delete="CASCADE", index=False)
    organization = pw.ForeignKeyField(Organization, on_delete="CASCADE", index=False)
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
    computed_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "developer_metrics"
        indexes = (
            (("user", "organization", "date"), True),
            (("organization", "date"), False),
            (("user", "date"), False),
        )


class TeamMetric(BaseModel):
    """The organization's figures for one UTC day, DORA keys included."""

    organization = pw.ForeignKeyField(
        Organization, backref="team_metrics", on_delete="CASCADE", index=False
    )
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
    open_prs = pw.IntegerField(default=0)
    deployments = pw.IntegerField(default=0)
    failed_deployments = pw.IntegerField(default=0)
    incidents_opened = pw.IntegerField(default=0)
    incidents_resolved = pw.IntegerField(default=0)
    cycle_time_median_s = pw.FloatField(null=True)
    cycle_time_p90_s = pw.FloatField(null=True)
    coding_time_median_s = pw.FloatField(null=True)
    coding_time_p90_s = pw.FloatField(null=True)
    pickup_time_median_s = pw.FloatField(null=True)
    pickup_time_p90_s = pw.FloatField(null=True)
    review_time_median_s = pw.FloatField(null=True)
    review_time_p90_s = pw.FloatField(null=True)
    deploy_time_median_s = pw.FloatField(null=True)
    deploy_time_p90_s = pw.FloatField(null=True)
    lead_time_median_s = pw.FloatField(null=True)
    change_failure_rate = pw.FloatField(null=True)
    time_to_restore_median_s = pw.FloatField(null=True)
    computed_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "team_metrics"
        indexes = (
            (("organization", "date"), True),
            (("date",), False),
        )


class AIReview(BaseModel):
    """A risk review of one pull request at one head commit by one provider."""

    pull_request = pw.ForeignKeyField(
        PullRequest, backref="ai_reviews", on_delete="CASCADE", index=False
    )
    organization = pw.ForeignKeyField(Organization, on_delete="CASCADE", index=False)
    head_sha = pw.CharField(max_length=64)
    provider = pw.CharField(max_length=64)
    model = pw.CharField(max_length=128, null=True)
    risk_score = pw.SmallIntegerField(constraints=[pw.Check("risk_score BETWEEN 0 AND 100")])
    risk_level = EnumField(RiskLevel)
    findings = pw.JSONField(default=list)
    # The change features the score was computed from (size, diffusion, history...).
    features = pw.JSONField(default=dict)
    summary = pw.TextField(default="")
    created_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "ai_reviews"
        indexes = (
            (("pull_request", "head_sha", "provider"), True),
            (("organization", "created_at"), False),
            (("organization", "risk_level", "created_at"), False),
        )


class ProductionDeployment(BaseModel):
    """A deployment to production with an outcome, whatever the repository's source:
    a GitHub deployment, a completed run of the deploying workflow, or a merge into the
    default branch. Derived from the activity tables by the metrics service.
    `failed` is the DORA verdict: a failed outcome, or a success later found to have
    shipped a reverted change or to have been followed by an incident."""

    organization = pw.ForeignKeyField(Organization, on_delete="CASCADE", index=False)
    repository = pw.ForeignKeyField(Repository, on_delete="CASCADE", index=False)
    source = pw.CharField(max_length=16)  # deployment, workflow, merge
    source_id = pw.BigIntegerField()  # the deployment's or the merged pull request's id
    created_at = UTCDateTimeField()
    finished_at = UTCDateTimeField()
    succeeded = pw.BooleanField()
    failed = pw.BooleanField(default=False)

    class Meta:
        table_name = "production_deployments"
        indexes = (
            (("source", "source_id"), True),
            (("repository", "finished_at"), False),
            (("organization", "finished_at"), False),
        )
