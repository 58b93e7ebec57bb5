"""Turning stored webhook events into commits, pull requests, reviews, issues and
deployments (`devmetrics worker events`).

Every write is keyed on GitHub's own identities, so processing an event twice, or events
out of order, converges on the same rows: for pull requests and issues the newest GitHub
`updated_at` wins, and lifecycle times only move earlier (first ready, first review).
A batch is one transaction (one savepoint per event): a worker killed mid-batch leaves
nothing half-done, and the batch is leased again once its lease expires.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections import defaultdict

import peewee as pw

from shared import jobs, outbox
from shared.database import db
from shared.models import (
    Commit,
    Deployment,
    DeploymentState,
    Event,
    EventStatus,
    Issue,
    IssueClosure,
    IssueState,
    Organization,
    PullRequest,
    PullRequestState,
    Repository,
    Review,
    ReviewKind,
    User,
    utcnow,
)

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
LEASE_SECONDS = 120
TERMINAL_DEPLOYMENT_STATES = {
    DeploymentState.SUCCESS,
    DeploymentState.FAILURE,
    DeploymentState.ERROR,
}
FAILED_DEPLOYMENT_STATES = {DeploymentState.FAILURE, DeploymentState.ERROR}
PUSH_COMMIT_CAP = 2048  # a push payload lists at most this many commits
DEFAULT_PRODUCTION_ENVIRONMENTS = ("production", "prod")
REVERT_BRANCH = re.compile(r"^revert-(\d+)-")
# Pull request actions that put new code up for review (an AI review is asked for).
REVIEWED_ACTIONS = {"opened", "reopened", "synchronize", "ready_for_review"}
# A workflow run's conclusion as a deployment outcome; any other conclusion (cancelled,
# skipped, timed_out...) is no outcome, and the run counts nowhere.
WORKFLOW_CONCLUSIONS = {"success": DeploymentState.SUCCESS, "failure": DeploymentState.FAILURE}


class Changes:
    """What a batch touched, per (organization, repository): the metrics service is told."""

    def __init__(self):
        self.days: dict[tuple[int, int], set[str]] = defaultdict(set)
        self.pull_requests: dict[tuple[int, int], set[int]] = defaultdict(set)
        self.events: dict[str, dict] = {}  # event key -> message for the notifications service
        # (organization, pull request id, head sha) to review for risk (metrics service)
        self.reviews: set[tuple[int, int, str]] = set()

    def notify(self, repo: Repository, event_type: str, key: str, **data):
        """An event the notifications service matches against alert rules."""
        self.events[key] = {
            "type": event_type,
            "organization_id": repo.organization_id,
            "key": key,
            "data": {
                "repository": repo.full_name,
                "repository_id": repo.id,
                "sensitivity": str(repo.sensitivity),
                **data,
            },
        }

    def touch(self, repo: Repository, *moments, pull_request: PullRequest | None = None):
        key = (repo.organization_id, repo.id)
        for moment in moments:
            if moment is not None:
                self.days[key].add(moment.astimezone(dt.UTC).date().isoformat())
        if pull_request is not None:
            self.pull_requests[key].add(pull_request.id)
        self.days.setdefault(key, set())

    def review(self, pr: PullRequest):
        """Ask for an AI review of the pull request at its head commit."""
        if pr.head_sha:
            self.reviews.add((pr.organization_id, pr.id, pr.head_sha))

    def publish(self):
        for (org_id, repo_id), days in self.days.items():
            outbox.publish(
                "metrics",
                "activity.changed",
                {
                    "organization_id": org_id,
                    "repository_id": repo_id,
                    "dates": sorted(days),
                    "pull_request_ids": sorted(self.pull_requests.get((org_id, repo_id), ())),
                },
                organization=org_id,
            )
        for event in self.events.values():
            outbox.publish("notifications", "event", event, organization=event["organization_id"])
        for org_id, pr_id, head_sha in sorted(self.reviews):
            outbox.publish(
                "metrics",
                "ai_review.requested",
                {"organization_id": org_id, "pull_request_id": pr_id, "head_sha": head_sha},
                organization=org_id,
            )


# Parsing helpers ----------------------------------------------------------------------


def ts(value) -> dt.datetime | None:
    """GitHub timestamps: ISO 8601 (with Z or an offset) or epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def is_bot(account: dict | None) -> bool:
    if not account:
        return False
    return account.get("type") == "Bot" or str(account.get("login", "")).endswith("[bot]")


def known_developer(
    login: str | None = None,
    email: str | None = None,
    *,
    github_id: int | None = None,
    bot: bool = False,
) -> User | None:
    """The user behind a GitHub account or a commit author: by GitHub id, else login, else
    e-mail. A human login seen for the first time becomes a known developer (a user who
    has not signed in), so the metrics can credit them; bots never do."""
    user = User.get_or_none(User.github_id == github_id) if github_id else None
    if user is None and login:
        user = User.get_or_none(pw.fn.LOWER(User.login) == login.lower())
        if user is not None and github_id and user.github_id is None:
            User.update(github_id=github_id).where(User.id == user.id).execute()
        elif user is not None and github_id and user.github_id != github_id:
            user = None  # a login GitHub has since given to someone else
    if user is None and email:
        user = User.get_or_none(User.email == email.lower())
    if user is None and login and not bot and not login.endswith("[bot]"):
        User.insert(login=login, github_id=github_id).on_conflict_ignore().execute()
        user = (
            User.get_or_none(User.github_id == github_id)
            if github_id
            else User.get_or_none(pw.fn.LOWER(User.login) == login.lower())
        )
    return user


def developer_of(account: dict | None) -> User | None:
    """known_developer for a GitHub user object of a payload."""
    if not account or not account.get("login"):
        return None
    return known_developer(account["login"], github_id=account.get("id"), bot=is_bot(account))


def org_settings(repo: Repository) -> dict:
    return Organization.get_by_id(repo.organization_id).settings or {}


def is_production(repo: Repository, environment: str) -> bool:
    wanted = org_settings(repo).get("production_environments") or DEFAULT_PRODUCTION_ENVIRONMENTS
    return environment.lower() in {e.lower() for e in wanted}


# Handlers -----------------------------------------------------------------------------


def handle_push(event: Event, repo: Repository, payload: dict, changes: Changes):
    ref = payload.get("ref") or ""
    if not ref.startswith("refs/heads/"):
        return  # tags carry no commits of interest
    branch = ref.removeprefix("refs/heads/")
    pushed_at = ts(payload.get("repository", {}).get("pushed_at")) or event.received_at
    rows = []
    for commit in payload.get("commits") or []:
        author = commit.get("author") or {}
        login = author.get("username")
        user = known_developer(login, author.get("email"))
        authored = ts(commit.get("timestamp"))
        files = (
            set(commit.get("added") or [])
            | set(commit.get("removed") or [])
            | set(commit.get("modified") or [])
        )
        rows.append(
            {
                "repository": repo,
                "organization": repo.organization_id,
                "sha": commit["id"],
                "author": user,
                "author_login": login or (user.login if user else None),
                "author_email": (author.get("email") or "").lower() or None,
                "author_name": author.get("name"),
                "author_is_bot": bool(login and login.endswith("[bot]"))
                or bool(user and user.is_bot),
                "message": commit.get("message") or "",
                "files_changed": len(files),
                "authored_at": authored,
                "committed_at": authored,
                "branch": branch,
                "pushed_at": pushed_at,
            }
        )
        changes.touch(repo, authored)
    for batch in pw.chunked(rows, 500):
        # The branch a commit was first pushed to is kept (a later merge does not move it).
        Commit.insert_many(batch).on_conflict_ignore().execute()
    if len(payload.get("commits") or []) >= PUSH_COMMIT_CAP and payload.get("before"):
        # GitHub cut the list short: the rest comes from the compare API, in a job.
        jobs.enqueue(
            "backfill",
            {
                "kind": "push",
                "repository_id": repo.id,
                "branch": branch,
                "before": payload["before"],
                "after": payload["after"],
            },
            dedupe_key=f"push:{repo.id}:{payload['after']}",
            organization=repo.organization_id,
            max_attempts=5,
        )


def _pull_request_fields(repo: Repository, pr: dict) -> dict:
    author = pr.get("user") or {}
    user = developer_of(author)
    revert_of = REVERT_BRANCH.match((pr.get("head") or {}).get("ref") or "")
    if pr.get("merged_at"):
        state = PullRequestState.MERGED
    elif pr.get("state") == "closed":
        state = PullRequestState.CLOSED
    else:
        state = PullRequestState.OPEN  # a reopened PR's payload may keep its old closed_at
    return {
        "repository": repo.id,
        "organization": repo.organization_id,
        "number": pr["number"],
        "github_id": pr.get("id"),
        "author": user.id if user else None,
        "author_login": author.get("login"),
        "author_is_bot": is_bot(author),
        "title": pr.get("title") or "",
        "body": pr.get("body"),
        "state": state,
        "draft": bool(pr.get("draft")),
        "base_ref": (pr.get("base") or {}).get("ref") or "",
        "head_ref": (pr.get("head") or {}).get("ref") or "",
        "head_sha": (pr.get("head") or {}).get("sha"),
        "additions": pr.get("additions") or 0,
        "deletions": pr.get("deletions") or 0,
        "changed_files": pr.get("changed_files") or 0,
        "commits_count": pr.get("commits") or 0,
        "created_at": ts(pr.get("created_at")),
        "merged_at": ts(pr.get("merged_at")),
        "closed_at": ts(pr.get("closed_at")) if state != PullRequestState.OPEN else None,
        "merge_commit_sha": pr.get("merge_commit_sha"),
        "reverts_number": int(revert_of.group(1)) if revert_of else None,
        "updated_at": ts(pr.get("updated_at")) or ts(pr.get("created_at")),
    }


def upsert_pull_request(
    repo: Repository, pr: dict, changes: Changes, *, ready_at=None
) -> PullRequest:
    """Create or update from a payload's pull_request; an older payload never overwrites a
    newer one, and `ready_at` only ever moves earlier. The days the stored row counted on
    are touched too: a moved or cleared time changes them."""
    fields = _pull_request_fields(repo, pr)
    existing = PullRequest.get_or_none(
        (PullRequest.repository == repo) & (PullRequest.number == fields["number"])
    )
    if existing is None:
        fields["ready_at"] = ready_at
        PullRequest.insert(**fields).on_conflict_ignore().execute()
        existing = PullRequest.get(
            (PullRequest.repository == repo) & (PullRequest.number == fields["number"])
        )
        if existing.ready_at == ready_at:
            return existing
    updates = {}
    if fields["updated_at"] and (
        existing.updated_at is None or fields["updated_at"] >= existing.updated_at
    ):
        updates = {
            k: v for k, v in fields.items() if k not in ("repository", "organization", "number")
        }
    if ready_at is not None and (existing.ready_at is None or ready_at < existing.ready_at):
        updates["ready_at"] = ready_at
    if updates:
        changes.touch(repo, existing.created_at, existing.merged_at, existing.closed_at)
        PullRequest.update(updates).where(PullRequest.id == existing.id).execute()
        existing = PullRequest.get_by_id(existing.id)
    return existing


def refresh_review_times(pr: PullRequest) -> None:
    """first_review_at / approved_at from the stored reviews by humans other than the author,
    and the comment counts from the stored comments."""
    live = (Review.pull_request == pr.id) & Review.deleted_at.is_null()
    by_others = live & (Review.reviewer_is_bot == False)  # noqa: E712
    if pr.author_login:
        by_others &= Review.reviewer_login.is_null() | (
            pw.fn.LOWER(Review.reviewer_login) != pr.author_login.lower()
        )
    first = (
        Review.select(pw.fn.MIN(Review.submitted_at))
        .where(by_others & (Review.kind != ReviewKind.ISSUE_COMMENT))
        .scalar()
    )
    approved = (
        Review.select(pw.fn.MIN(Review.submitted_at))
        .where(by_others & (Review.kind == ReviewKind.REVIEW) & (Review.state == "APPROVED"))
        .scalar()
    )
    counts = dict(
        Review.select(Review.kind, pw.fn.COUNT(Review.id))
        .where(live)
        .group_by(Review.kind)
        .tuples()
    )
    PullRequest.update(
        first_review_at=Review.submitted_at.python_value(first) if first else None,
        approved_at=Review.submitted_at.python_value(approved) if approved else None,
        review_comments=counts.get(ReviewKind.REVIEW_COMMENT, 0),
        comments=counts.get(ReviewKind.ISSUE_COMMENT, 0),
    ).where(PullRequest.id == pr.id).execute()


def handle_pull_request(event: Event, repo: Repository, payload: dict, changes: Changes):
    pr = payload["pull_request"]
    ready_at = None
    if event.action == "opened" and not pr.get("draft"):
        ready_at = ts(pr.get("created_at"))
    elif event.action == "ready_for_review":
        ready_at = ts(pr.get("updated_at"))
    row = upsert_pull_request(repo, pr, changes, ready_at=ready_at)
    about = {
        "number": row.number,
        "title": row.title,
        "author": row.author_login,
        "url": pr.get("html_url"),
        "pull_request_id": row.id,
    }
    if event.action in REVIEWED_ACTIONS:
        changes.review(row)
    if event.action == "opened":
        changes.notify(repo, "pull_request.opened", f"pull_request.opened:{row.id}", **about)
    elif event.action == "closed" and pr.get("merged_at"):
        changes.notify(repo, "pull_request.merged", f"pull_request.merged:{row.id}", **about)
    elif event.action == "review_requested":
        reviewer = payload.get("requested_reviewer") or payload.get("requested_team") or {}
        who = reviewer.get("login") or reviewer.get("slug") or ""
        changes.notify(
            repo,
            "pull_request.review_requested",
            f"pull_request.review_requested:{row.id}:{who}:{pr.get('updated_at')}",
            reviewer=who,
            **about,
        )
    changes.touch(repo, row.created_at, row.merged_at, row.closed_at, ready_at, pull_request=row)


def _upsert_review(repo, pr_row, kind, github_id, account, submitted_at, state=None, sha=None):
    user = developer_of(account)
    row = {
        "pull_request": pr_row.id,
        "organization": repo.organization_id,
        "kind": kind,
        "github_id": github_id,
        "reviewer": user.id if user else None,
        "reviewer_login": (account or {}).get("login"),
        "reviewer_is_bot": is_bot(account),
        "state": state,
        "commit_sha": sha,
        "submitted_at": submitted_at,
    }
    (
        Review.insert(**row)
        .on_conflict(
            conflict_target=[Review.kind, Review.github_id],
            update={Review.state: row["state"], Review.commit_sha: row["commit_sha"]},
        )
        .execute()
    )


def handle_review(event: Event, repo: Repository, payload: dict, changes: Changes):
    review = payload["review"]
    pr_row = upsert_pull_request(repo, payload["pull_request"], changes)
    submitted = ts(review.get("submitted_at"))
    if submitted is None:
        return  # a pending (unsubmitted) review
    state = "DISMISSED" if event.action == "dismissed" else str(review.get("state", "")).upper()
    _upsert_review(
        repo,
        pr_row,
        ReviewKind.REVIEW,
        review["id"],
        review.get("user"),
        submitted,
        state,
        review.get("commit_id"),
    )
    refresh_review_times(pr_row)
    changes.touch(repo, submitted, pull_request=pr_row)


def _record_comment(event, repo, pr_row, kind: ReviewKind, comment: dict, changes: Changes):
    """A review-thread or conversation comment added, edited or deleted."""
    _upsert_review(
        repo,
        pr_row,
        kind,
        comment["id"],
        comment.get("user"),
        ts(comment.get("created_at")),
        sha=comment.get("commit_id"),
    )
    if event.action == "deleted":
        # A tombstone: an `edited` delivered after the deletion does not bring it back.
        Review.update(deleted_at=ts(comment.get("updated_at")) or event.received_at).where(
            (Review.kind == kind) & (Review.github_id == comment["id"])
        ).execute()
    refresh_review_times(pr_row)
    changes.touch(repo, ts(comment.get("created_at")), pull_request=pr_row)


def handle_review_comment(event: Event, repo: Repository, payload: dict, changes: Changes):
    pr_row = upsert_pull_request(repo, payload["pull_request"], changes)
    _record_comment(event, repo, pr_row, ReviewKind.REVIEW_COMMENT, payload["comment"], changes)


def handle_issue_comment(event: Event, repo: Repository, payload: dict, changes: Changes):
    issue = payload["issue"]
    if not issue.get("pull_request"):
        return  # a comment on a plain issue: nothing the metrics use
    pr_row = PullRequest.get_or_none(
        (PullRequest.repository == repo) & (PullRequest.number == issue["number"])
    )
    if pr_row is None:
        return  # the pull request itself arrives with its own events (or the backfill)
    _record_comment(event, repo, pr_row, ReviewKind.ISSUE_COMMENT, payload["comment"], changes)


def handle_issues(event: Event, repo: Repository, payload: dict, changes: Changes):
    issue = payload["issue"]
    author = issue.get("user") or {}
    user = developer_of(author)
    fields = {
        "repository": repo.id,
        "organization": repo.organization_id,
        "number": issue["number"],
        "github_id": issue.get("id"),
        "author": user.id if user else None,
        "author_login": author.get("login"),
        "title": issue.get("title") or "",
        "state": IssueState.CLOSED if issue.get("state") == "closed" else IssueState.OPEN,
        "labels": sorted(
            {
                label["name"]
                for label in issue.get("labels") or []
                if isinstance(label, dict) and "name" in label
            }
        ),
        "created_at": ts(issue.get("created_at")),
        # A reopened issue's payload keeps its earlier closed_at: open means not closed.
        "closed_at": ts(issue.get("closed_at")) if issue.get("state") == "closed" else None,
        "updated_at": ts(issue.get("updated_at")) or ts(issue.get("created_at")),
    }
    existing = Issue.get_or_none((Issue.repository == repo) & (Issue.number == issue["number"]))
    if existing is None:
        Issue.insert(**fields).on_conflict_ignore().execute()
    elif fields["updated_at"] >= existing.updated_at:
        changes.touch(repo, existing.created_at, existing.closed_at)  # the days it counted on
        Issue.update({k: v for k, v in fields.items() if k not in ("repository", "number")}).where(
            Issue.id == existing.id
        ).execute()
    if fields["closed_at"] is not None:
        # Each closing, credited to the sender of the `closed` event (the backfill knows the
        # closer only when the API says `closed_by`).
        closer = payload.get("sender") if event.action == "closed" else issue.get("closed_by")
        record_closure(repo, issue["number"], fields["closed_at"], closer)
    changes.touch(repo, fields["created_at"], fields["closed_at"])


def record_closure(repo: Repository, number: int, closed_at, closer: dict | None) -> None:
    issue_id = Issue.get((Issue.repository == repo) & (Issue.number == number)).id
    user = developer_of(closer)
    query = IssueClosure.insert(
        issue=issue_id,
        organization=repo.organization_id,
        repository=repo.id,
        closed_at=closed_at,
        closer=user.id if user else None,
        closer_login=(closer or {}).get("login"),
        closer_is_bot=is_bot(closer),
    )
    if closer:  # a known closer replaces an unknown one (the backfill's)
        query = query.on_conflict(
            conflict_target=[IssueClosure.issue, IssueClosure.closed_at],
            preserve=[IssueClosure.closer, IssueClosure.closer_login, IssueClosure.closer_is_bot],
        )
    else:
        query = query.on_conflict_ignore()
    query.execute()


def _upsert_deployment(repo: Repository, deployment: dict) -> Deployment:
    row = {
        "repository": repo.id,
        "organization": repo.organization_id,
        "kind": "DEPLOYMENT",
        "github_id": deployment["id"],
        "environment": deployment.get("environment") or "",
        "sha": deployment.get("sha") or "",
        "ref": deployment.get("ref"),
        "creator_login": (deployment.get("creator") or {}).get("login"),
        "created_at": ts(deployment.get("created_at")),
    }
    Deployment.insert(**row).on_conflict_ignore().execute()
    return Deployment.get(
        (Deployment.kind == "DEPLOYMENT") & (Deployment.github_id == deployment["id"])
    )


def apply_deployment_state(
    repo: Repository, row: Deployment, state: DeploymentState, at, changes: Changes
) -> None:
    """Record a status. A deployment's outcome is its first terminal status (success,
    failure, error) and finishes at that status's time: later statuses (e.g. inactive)
    change nothing, an earlier terminal status arriving late replaces a later one, and
    before any terminal status the newest status wins. Announce a failure (incidents and
    production verdicts are derived by the metrics service)."""
    terminal = state in TERMINAL_DEPLOYMENT_STATES
    if row.finished_at is not None:  # already has an outcome
        if not terminal or at >= row.finished_at:
            return
    elif not terminal and row.status_at is not None and at < row.status_at:
        return
    Deployment.update(state=state, status_at=at, finished_at=at if terminal else None).where(
        Deployment.id == row.id
    ).execute()
    if not terminal:
        return
    production = is_production(repo, row.environment)
    if state in FAILED_DEPLOYMENT_STATES:
        changes.notify(
            repo,
            "deployment.failed",
            f"deployment.failed:{row.id}",
            deployment_id=row.id,
            environment=row.environment,
            sha=row.sha,
            production=production,
            state=str(state),
        )


def handle_deployment(event: Event, repo: Repository, payload: dict, changes: Changes):
    row = _upsert_deployment(repo, payload["deployment"])
    changes.touch(repo, row.created_at)


def handle_deployment_status(event: Event, repo: Repository, payload: dict, changes: Changes):
    row = _upsert_deployment(repo, payload["deployment"])
    status = payload["deployment_status"]
    at = ts(status.get("created_at")) or event.received_at
    state = DeploymentState(str(status.get("state", "pending")).upper())
    apply_deployment_state(repo, row, state, at, changes)
    changes.touch(repo, row.created_at, at)


def handle_workflow_run(event: Event, repo: Repository, payload: dict, changes: Changes):
    """Completed runs of the workflow a repository names as its deployment source
    (`workflow:<name or file>`) are deployments; the metrics keep those on the default
    branch."""
    run = payload["workflow_run"]
    source = (repo.settings or {}).get("deployment_source") or ""
    wanted = source.removeprefix("workflow:") if source.startswith("workflow:") else None
    path = (payload.get("workflow") or {}).get("path") or run.get("path") or ""
    names = {run.get("name"), path, path.rsplit("/", 1)[-1]} - {None, ""}
    if event.action != "completed" or wanted not in names:
        return
    environment = "production"
    started = ts(run.get("run_started_at")) or ts(run.get("created_at"))
    row = {
        "repository": repo.id,
        "organization": repo.organization_id,
        "kind": "WORKFLOW_RUN",
        "github_id": run["id"],
        "environment": environment,
        "sha": run.get("head_sha") or "",
        "ref": run.get("head_branch"),
        "creator_login": (run.get("triggering_actor") or run.get("actor") or {}).get("login"),
        "created_at": started,
    }
    Deployment.insert(**row).on_conflict_ignore().execute()
    deployment = Deployment.get(
        (Deployment.kind == "WORKFLOW_RUN") & (Deployment.github_id == run["id"])
    )
    state = WORKFLOW_CONCLUSIONS.get(run.get("conclusion") or "", DeploymentState.INACTIVE)
    apply_deployment_state(repo, deployment, state, ts(run.get("updated_at")) or started, changes)
    changes.touch(repo, started)


def handle_repository(event: Event, repo: Repository, payload: dict, changes: Changes):
    data = payload["repository"]
    updates = {}
    if event.action in ("renamed", "transferred", "edited") and data.get("full_name"):
        updates[Repository.full_name] = data["full_name"]
    if event.action in ("privatized", "publicized", "edited") and "private" in data:
        updates[Repository.private] = bool(data["private"])
    if data.get("default_branch"):
        updates[Repository.default_branch] = data["default_branch"]
    if updates:
        Repository.update(updates).where(Repository.id == repo.id).execute()


HANDLERS = {
    "push": handle_push,
    "pull_request": handle_pull_request,
    "pull_request_review": handle_review,
    "pull_request_review_comment": handle_review_comment,
    "issue_comment": handle_issue_comment,
    "issues": handle_issues,
    "deployment": handle_deployment,
    "deployment_status": handle_deployment_status,
    "repository": handle_repository,
    "workflow_run": handle_workflow_run,
}


# The worker ---------------------------------------------------------------------------


def process_batch(worker_id: str, limit: int = 50) -> int:
    """Lease due events, normalize each in a savepoint, publish what changed, commit."""
    now = utcnow()
    due = (
        (Event.status == EventStatus.PENDING)
        | ((Event.status == EventStatus.FAILED) & (Event.next_attempt_at <= now))
        | ((Event.status == EventStatus.PROCESSING) & (Event.locked_until < now))
    )
    leased = jobs.lease(
        Event,
        due,
        worker_id,
        limit=limit,
        lease_seconds=LEASE_SECONDS,
        running_status=EventStatus.PROCESSING,
        order_by=(Event.received_at, Event.id),
    )
    if not leased:
        return 0
    changes = Changes()
    with db.atomic():
        for event in leased:
            process_one(event, changes)
        changes.publish()
    return len(leased)


def process_one(event: Event, changes: Changes) -> EventStatus:
    handler = HANDLERS.get(event.event_type)
    repo = Repository.get_or_none(Repository.id == event.repository_id)
    if handler is None or repo is None:
        status, error = EventStatus.SKIPPED, None  # kept raw, not modelled
    else:
        try:
            with db.atomic():
                handler(event, repo, event.payload, changes)
            status, error = EventStatus.PROCESSED, None
        except Exception as exc:  # recorded on the event, retried with backoff
            log.warning("event failed", extra={"event_id": event.id, "error": repr(exc)})
            dead = event.attempts >= MAX_ATTEMPTS
            status, error = (EventStatus.DEAD if dead else EventStatus.FAILED), repr(exc)[:4000]
    Event.update(
        status=status,
        last_error=error,
        locked_by=None,
        locked_until=None,
        processed_at=utcnow() if status in (EventStatus.PROCESSED, EventStatus.SKIPPED) else None,
        next_attempt_at=utcnow() + dt.timedelta(seconds=jobs.backoff_seconds(event.attempts))
        if status == EventStatus.FAILED
        else None,
    ).where(Event.id == event.id).execute()
    return status


def replay(
    *,
    since: dt.datetime | None = None,
    status: str | None = None,
    repository: Repository | None = None,
) -> int:
    """Queue stored events for processing again (processing is idempotent)."""
    query = Event.update(
        status=EventStatus.PENDING,
        attempts=0,
        last_error=None,
        next_attempt_at=None,
        locked_by=None,
        locked_until=None,
    )
    conditions = []
    if since is not None:
        conditions.append(Event.received_at >= since)
    if status is not None:
        conditions.append(Event.status == status)
    if repository is not None:
        conditions.append(Event.repository == repository)
    if conditions:
        query = query.where(*conditions)
    with db.atomic():
        return query.execute()
