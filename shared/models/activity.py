"""Activity: raw webhook events and what they become."""

import peewee as pw

from shared.models.base import BaseModel, EnumField, UTCDateTimeField, utcnow
from shared.models.core import Organization, User
from shared.models.enums import (
    DeploymentState,
    EventStatus,
    IncidentKind,
    IssueState,
    PullRequestState,
    ReviewKind,
)
from shared.models.repository import Repository


class Event(BaseModel):
    """A webhook delivery (or backfilled API record), stored as received before processing."""

    source = pw.CharField(max_length=32, default="github")
    # GitHub's X-GitHub-Hook-ID: a redelivery repeats both the hook and the delivery id.
    hook_id = pw.CharField(max_length=32, default="")
    delivery_id = pw.CharField(max_length=128)
    event_type = pw.CharField(max_length=64)
    action = pw.CharField(max_length=64, null=True)
    repository = pw.ForeignKeyField(Repository, null=True, on_delete="CASCADE", index=False)
    organization = pw.ForeignKeyField(Organization, null=True, on_delete="CASCADE", index=False)
    headers = pw.JSONField(default=dict)
    payload = pw.JSONField(default=dict)
    received_at = UTCDateTimeField(default=utcnow)
    status = EnumField(EventStatus, default=EventStatus.PENDING)
    attempts = pw.IntegerField(default=0)
    last_error = pw.TextField(null=True)
    next_attempt_at = UTCDateTimeField(null=True)
    locked_by = pw.CharField(max_length=128, null=True)
    locked_until = UTCDateTimeField(null=True)
    processed_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "events"
        # Not unique: on PostgreSQL events is partitioned by month and a unique index must
        # include received_at; EventDelivery holds the exact redelivery dedupe instead.
        indexes = (
            (("source", "hook_id", "delivery_id"), False),
            (("status", "received_at"), False),
            (("status", "next_attempt_at"), False),
            (("organization", "received_at"), False),
            (("repository", "received_at"), False),
            (("event_type", "received_at"), False),
        )


class EventDelivery(BaseModel):
    """One row per stored webhook delivery, written with its Event: the redelivery dedupe,
    exact across all of the event table's monthly partitions."""

    source = pw.CharField(max_length=32, default="github")
    hook_id = pw.CharField(max_length=32, default="")
    delivery_id = pw.CharField(max_length=128)
    # No foreign key: a key into a partitioned table would have to include received_at.
    event_id = pw.IntegerField()
    # One GitHub App delivery is stored once per organization that verified the
    # repository, so the repository is part of the dedupe key.
    repository_id = pw.IntegerField()
    received_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "event_deliveries"
        indexes = (
            (("source", "hook_id", "delivery_id", "repository_id"), True),
            (("received_at",), False),
        )


class Commit(BaseModel):
    repository = pw.ForeignKeyField(Repository, backref="commits", on_delete="CASCADE", index=False)
    organization = pw.ForeignKeyField(Organization, on_delete="CASCADE", index=False)
    sha = pw.CharField(max_length=64)
    author = pw.ForeignKeyField(
        User, null=True, backref="commits", on_delete="SET NULL", index=False
    )
    author_login = pw.CharField(max_length=100, null=True)
    author_email = pw.CharField(max_length=320, null=True)
    author_name = pw.CharField(max_length=255, null=True)
    author_is_bot = pw.BooleanField(default=False)
    message = pw.TextField(default="")
    additions = pw.IntegerField(default=0)
    deletions = pw.IntegerField(default=0)
    files_changed = pw.IntegerField(default=0)
    authored_at = UTCDateTimeField()
    committed_at = UTCDateTimeField()
    branch = pw.CharField(max_length=255, null=True)
    pushed_at = UTCDateTimeField(null=True)
    created_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "commits"
        indexes = (
            (("repository", "sha"), True),
            (("organization", "authored_at"), False),
            (("repository", "authored_at"), False),
            (("repository", "branch", "pushed_at"), False),
            (("author", "authored_at"), False),
            (("author_login", "authored_at"), False),
            # An e-mail's commits, re-attributed when its owner changes (AuthorEmail).
            (("organization", "author_email"), False),
        )


class AuthorEmail(BaseModel):
    """A commit author e-mail seen in an organization, and whose its commits are (written by
    the activity service only). `github_login`/`paired_user`: the username GitHub showed
    with the e-mail (a push commit's `author.username`, an API commit's `author.login`) the
    first time it did, and that login's user (none for a bot). `user`: the owner its
    commits without a username of their own are attributed to: the paired user unless they
    released the address, else a person who claimed it (UserEmail), else nobody (an
    unlinked contributor)."""

    organization = pw.ForeignKeyField(Organization, on_delete="CASCADE", index=False)
    email = pw.CharField(max_length=320)  # lowercased
    github_login = pw.CharField(max_length=100, null=True)
    paired_user = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="paired_emails")
    user = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", backref="author_emails")
    first_seen_at = UTCDateTimeField(default=utcnow)
    paired_at = UTCDateTimeField(null=True)
    updated_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "author_emails"
        indexes = (
            (("organization", "email"), True),
            (("email",), False),  # an address across organizations (claims, corrections)
        )


class PullRequest(BaseModel):
    repository = pw.ForeignKeyField(
        Repository, backref="pull_requests", on_delete="CASCADE", index=False
    )
    organization = pw.ForeignKeyField(Organization, on_delete="CASCADE", index=False)
    number = pw.IntegerField()
    # Not unique: organizations that connected the same GitHub repository each keep theirs.
    github_id = pw.BigIntegerField(null=True)
    author = pw.ForeignKeyField(
        User, null=True, backref="pull_requests", on_delete="SET NULL", index=False
    )
    author_login = pw.CharField(max_length=100, null=True)
    author_is_bot = pw.BooleanField(default=False)
    title = pw.TextField(default="")
    body = pw.TextField(null=True)
    state = EnumField(PullRequestState, default=PullRequestState.OPEN)
    draft = pw.BooleanField(default=False)
    base_ref = pw.CharField(max_length=255)
    head_ref = pw.CharField(max_length=255)
    head_sha = pw.CharField(max_length=64, null=True)
    additions = pw.IntegerField(default=0)
    deletions = pw.IntegerField(default=0)
    changed_files = pw.IntegerField(default=0)
    commits_count = pw.IntegerField(default=0)
    review_comments = pw.IntegerField(default=0)
    comments = pw.IntegerField(default=0)
    created_at = UTCDateTimeField()
    ready_at = UTCDateTimeField(null=True)
    first_commit_at = UTCDateTimeField(null=True)
    first_review_at = UTCDateTimeField(null=True)
    approved_at = UTCDateTimeField(null=True)
    merged_at = UTCDateTimeField(null=True)
    closed_at = UTCDateTimeField(null=True)
    merge_commit_sha = pw.CharField(max_length=64, null=True)
    # The number in a `revert-<n>-...` head branch (GitHub's "Revert" button).
    reverts_number = pw.IntegerField(null=True)
    # Label names and the milestone's title; NULL until a payload carrying them is applied.
    labels = pw.JSONField(null=True)
    milestone = pw.TextField(null=True)
    # Derived by the metrics service: first production deployment, and the stages in seconds.
    deployed_at = UTCDateTimeField(null=True)
    coding_s = pw.FloatField(null=True)
    pickup_s = pw.FloatField(null=True)
    review_s = pw.FloatField(null=True)
    deploy_s = pw.FloatField(null=True)
    cycle_s = pw.FloatField(null=True)
    # GitHub's updated_at of the newest payload applied: an older one never overwrites.
    updated_at = UTCDateTimeField(default=utcnow)
    # Fields of GitHub's object older than updated_at: {key: the updated_at of the payload
    # it was last taken from, or null if none carried it yet}. Partial objects (reviews,
    # comments, issue-shaped events) lack keys; see processing.PULL_REQUEST_KEYS.
    fields_updated_at = pw.JSONField(null=True)

    class Meta:
        table_name = "pull_requests"
        indexes = (
            (("repository", "number"), True),
            (("repository", "state"), False),  # open PRs per repository
            (("repository", "head_ref"), False),  # commits pushed to a PR's branch
            (("organization", "state"), False),
            (("organization", "created_at"), False),
            # Open at the end of a day (covering: counted from the index alone).
            (("organization", "closed_at", "author_is_bot", "created_at", "repository"), False),
            (("repository", "created_at"), False),  # a repository's first activity
            # Covering: the metrics reads (stage medians of the PRs merged, lead time of
            # those deployed, in a period) are answered from the index alone.
            (
                (
                    "organization",
                    "merged_at",
                    "author_is_bot",
                    "author",
                    "repository",
                    "coding_s",
                    "pickup_s",
                    "review_s",
                    "deploy_s",
                    "cycle_s",
                ),
                False,
            ),
            (("organization", "deployed_at", "author_is_bot", "repository", "cycle_s"), False),
            (("author", "created_at"), False),
        )


class PullRequestCommit(BaseModel):
    """A commit the GitHub API lists for a pull request (the backfill's view of its commits;
    webhooks give them by branch instead)."""

    pull_request = pw.ForeignKeyField(
        PullRequest, backref="listed_commits", on_delete="CASCADE", index=False
    )
    sha = pw.CharField(max_length=64)

    class Meta:
        table_name = "pull_request_commits"
        indexes = ((("pull_request", "sha"), True),)


class Issue(BaseModel):
    repository = pw.ForeignKeyField(Repository, backref="issues", on_delete="CASCADE", index=False)
    organization = pw.ForeignKeyField(Organization, on_delete="CASCADE", index=False)
    number = pw.IntegerField()
    github_id = pw.BigIntegerField(null=True)  # per organization, like a pull request's
    author = pw.ForeignKeyField(
        User, null=True, backref="issues", on_delete="SET NULL", index=False
    )
    author_login = pw.CharField(max_length=100, null=True)
    title = pw.TextField(default="")
    state = EnumField(IssueState, default=IssueState.OPEN)
    labels = pw.JSONField(default=list)
    created_at = UTCDateTimeField()
    closed_at = UTCDateTimeField(null=True)
    updated_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "issues"
        indexes = (
            (("repository", "number"), True),
            (("repository", "state"), False),
            (("organization", "created_at"), False),
            (("organization", "closed_at"), False),
            (("author", "created_at"), False),
        )


class IssueClosure(BaseModel):
    """Each time an issue was closed, and by whom (the `closed` event's sender)."""

    issue = pw.ForeignKeyField(Issue, backref="closures", on_delete="CASCADE", index=False)
    organization = pw.ForeignKeyField(Organization, on_delete="CASCADE", index=False)
    repository = pw.ForeignKeyField(Repository, on_delete="CASCADE", index=False)
    closed_at = UTCDateTimeField()
    closer = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", index=False)
    closer_login = pw.CharField(max_length=100, null=True)
    closer_is_bot = pw.BooleanField(default=False)

    class Meta:
        table_name = "issue_closures"
        indexes = (
            (("issue", "closed_at"), True),
            (("organization", "closed_at"), False),
            (("closer", "closed_at"), False),
        )


class Review(BaseModel):
    """A review, review-thread comment or conversation comment on a pull request."""

    pull_request = pw.ForeignKeyField(
        PullRequest, backref="reviews", on_delete="CASCADE", index=False
    )
    organization = pw.ForeignKeyField(Organization, on_delete="CASCADE", index=False)
    kind = EnumField(ReviewKind, max_length=16)
    github_id = pw.BigIntegerField()
    reviewer = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", index=False)
    reviewer_login = pw.CharField(max_length=100, null=True)
    reviewer_is_bot = pw.BooleanField(default=False)
    state = pw.CharField(max_length=32, null=True)  # APPROVED, CHANGES_REQUESTED, COMMENTED...
    commit_sha = pw.CharField(max_length=64, null=True)
    submitted_at = UTCDateTimeField()
    # A deleted comment is kept as a tombstone, so a late `edited` delivery cannot revive it.
    deleted_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "reviews"
        indexes = (
            # GitHub's ids, once per organization (two may connect one GitHub repository).
            (("organization", "kind", "github_id"), True),
            (("pull_request", "submitted_at"), False),
            (("organization", "submitted_at"), False),
            (("reviewer", "submitted_at"), False),
        )


def by_another_human(review=Review, pull_request=PullRequest) -> pw.Expression:
    """A review or comment (`review`, Review or an alias) by a human other than the author of
    `pull_request` (PullRequest or an alias, joined to it): logins compared case-insensitively,
    an unknown login on either side counting as someone else. The one rule for first-review
    times (activity), reviews given and active reviewers (metrics)."""
    return (review.reviewer_is_bot == False) & (  # noqa: E712
        pull_request.author_login.is_null()
        | (pull_request.author_login == "")
        | review.reviewer_login.is_null()
        | (pw.fn.LOWER(review.reviewer_login) != pw.fn.LOWER(pull_request.author_login))
    )


class Deployment(BaseModel):
    repository = pw.ForeignKeyField(
        Repository, backref="deployments", on_delete="CASCADE", index=False
    )
    organization = pw.ForeignKeyField(Organization, on_delete="CASCADE", index=False)
    # GitHub Deployments, or completed runs of a workflow the repository names as deploying.
    kind = pw.CharField(max_length=16, default="DEPLOYMENT")
    github_id = pw.BigIntegerField()
    environment = pw.CharField(max_length=255)
    sha = pw.CharField(max_length=64)
    ref = pw.CharField(max_length=255, null=True)
    creator_login = pw.CharField(max_length=100, null=True)
    state = EnumField(DeploymentState, default=DeploymentState.PENDING)
    created_at = UTCDateTimeField()
    # Time of the newest status applied (an older status never overwrites a newer one).
    status_at = UTCDateTimeField(null=True)
    finished_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "deployments"
        indexes = (
            (("organization", "kind", "github_id"), True),  # once per organization
            (("repository", "environment", "created_at"), False),
            (("organization", "created_at"), False),
            (("organization", "state", "finished_at"), False),
        )


class Incident(BaseModel):
    """A production incident for DORA's failure rate and time to restore."""

    repository = pw.ForeignKeyField(Repository, on_delete="CASCADE", index=False)
    organization = pw.ForeignKeyField(Organization, on_delete="CASCADE", index=False)
    kind = EnumField(IncidentKind, max_length=24)
    source_id = pw.BigIntegerField()  # the issue, deployment or pull request it comes from
    title = pw.TextField(default="")
    opened_at = UTCDateTimeField()
    resolved_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "incidents"
        indexes = (
            (("kind", "source_id"), True),
            (("organization", "opened_at"), False),
            (("repository", "opened_at"), False),
        )
