"""Turning stored webhook events into commits, pull requests, reviews, issues and
deployments (`devmetrics worker events`).

Every write is keyed on GitHub's own identities, so processing an event twice, or events
out of order, converges on the same rows: for pull requests and issues the newest GitHub
`updated_at` wins, and lifecycle times only move earlier (first ready, first review).
A batch is one transaction (one savepoint per event): a worker killed mid-batch leaves
nothing half-done, and the batch is leased again once its lease expires.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import re
from collections import defaultdict
from contextlib import contextmanager

import peewee as pw
import psycopg2.errors
import psycopg2.extras

from services.activity import authors
from services.activity.changes import Changes
from shared import fastjson, jobs, tenant_settings
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
    by_another_human,
    utcnow,
)
from shared.observability import EVENTS_DEAD
from shared.sql import insert_rows, is_postgres, lock_repositories
from shared.storable import unstorable_reason

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
# Why an event went DEAD (devmetrics_events_dead_total's `reason`): a value no column can
# hold (at once: it fails the same way every time), or every attempt failed.
DEAD_UNSTORABLE = "unstorable"
DEAD_RETRIES_EXHAUSTED = "retries_exhausted"
LEASE_SECONDS = 120
TERMINAL_DEPLOYMENT_STATES = {
    DeploymentState.SUCCESS,
    DeploymentState.FAILURE,
    DeploymentState.ERROR,
}
FAILED_DEPLOYMENT_STATES = {DeploymentState.FAILURE, DeploymentState.ERROR}
PUSH_COMMIT_CAP = 2048  # a push payload lists at most this many commits
REVERT_BRANCH = re.compile(r"^revert-(\d+)-")
# Pull request actions that put new code up for review (an AI review is asked for).
REVIEWED_ACTIONS = {"opened", "reopened", "synchronize", "ready_for_review"}
# A workflow run's conclusion as a deployment outcome; any other conclusion (cancelled,
# skipped, timed_out...) is no outcome, and the run counts nowhere.
WORKFLOW_CONCLUSIONS = {"success": DeploymentState.SUCCESS, "failure": DeploymentState.FAILURE}


class Batch:
    """What the events of one batch share while it is processed in one go: lookups made once
    (repositories, organization settings, developers, the rows events update) and writes
    deferred to its end (commits, review times). Only process_batch's fast path sets one;
    without it every function here reads and writes at once."""

    def __init__(self, events):
        self.repositories = {
            r.id: r
            for r in Repository.select().where(
                Repository.id.in_({e.repository_id for e in events if e.repository_id})
            )
        }
        self.settings: dict[int, dict] = {}
        self.developers = Developers(events)
        self.commits: list[dict] = []
        # (organization id, e-mail) -> its owner, as attributed in this batch (authors.py).
        self.author_emails: dict[tuple[int, str], authors.Owner] = {}
        self.review_times: dict[int, PullRequest] = {}
        # (repository id, number) -> row, or None: known absent. Keys not in them are unknown.
        self.pull_requests: dict[tuple[int, int], PullRequest | None] = {}
        self.issues: dict[tuple[int, int], Issue | None] = {}
        # Keyed as stored: GitHub's ids are unique per organization (see the models).
        self.deployments: dict[tuple[int, str, int], Deployment | None] = {}
        self.pull_request_updates: dict[int, tuple[PullRequest, dict]] = {}
        self.reviews: dict[tuple[int, str, int], dict] = {}
        self.review_deletions: list[tuple[int, ReviewKind, int, dt.datetime]] = []
        # (issue id, closed_at) -> (row, known closer): what record_closure would leave.
        self.closures: dict[tuple[int, int, dt.datetime], tuple[dict, bool]] = {}
        # New rows, inserted as the batch ends (no event needs their id before).
        self.new_deployments: dict[tuple[int, str, int], Deployment] = {}
        self.new_issues: dict[tuple[int, int], Issue] = {}
        # New pull requests get their ids at once (events name them by id), from ids taken
        # off the table's sequence as the batch starts (PostgreSQL; else inserted at once).
        self.new_pull_requests: dict[tuple[int, int], PullRequest] = {}
        self.pull_request_ids: list[int] = []
        self._prefetch(events)

    def _prefetch(self, events):
        """The pull requests, issues and deployments the batch's events name, in one query
        each (a key the query did not return is known not to exist yet)."""
        prs, issues, deployments = set(), set(), set()
        prs_created = set()  # the pull requests whose events create them when absent
        for event in events:
            payload = event.payload if isinstance(event.payload, dict) else {}
            repo_id, org_id = event.repository_id, event.organization_id
            try:
                if event.event_type in PULL_REQUEST_EVENTS:
                    prs.add((repo_id, int(payload["pull_request"]["number"])))
                    if repo_id in self.repositories:
                        prs_created.add((repo_id, int(payload["pull_request"]["number"])))
                elif event.event_type in ("issues", "issue_comment") and is_pull_request(
                    payload["issue"]
                ):
                    prs.add((repo_id, int(payload["issue"]["number"])))
                elif event.event_type == "issues":
                    issues.add((repo_id, int(payload["issue"]["number"])))
                elif event.event_type in ("deployment", "deployment_status"):
                    deployments.add((org_id, "DEPLOYMENT", int(payload["deployment"]["id"])))
                elif event.event_type == "workflow_run":
                    deployments.add((org_id, "WORKFLOW_RUN", int(payload["workflow_run"]["id"])))
            except (KeyError, TypeError, ValueError, AttributeError):
                continue  # a malformed payload: its handler fails on it (event by event)
        self.pull_requests = _prefetch(PullRequest, PULL_REQUEST_KEY, prs)
        self.issues = _prefetch(Issue, ISSUE_KEY, issues)
        self.deployments = _prefetch(Deployment, DEPLOYMENT_KEY, deployments)
        absent = len(prs_created - {k for k, row in self.pull_requests.items() if row})
        if absent and is_postgres():
            # As many as may be created, in order: the same ids inserting each would take.
            self.pull_request_ids = [
                n
                for (n,) in db.execute_sql(
                    "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                    (PullRequest._meta.table_name, absent),
                )
            ]
            self.pull_request_ids.reverse()  # popped from the end

    def insert_deployment(self, row: Deployment) -> None:
        row.id = Deployment.insert(**row.__data__).execute()
        self.new_deployments.pop((row.organization_id, row.kind, row.github_id), None)

    def flush(self):
        insert_rows(Deployment, [d.__data__ for d in self.new_deployments.values()])
        self.new_deployments = {}
        if self.new_issues:
            insert_rows(Issue, [i.__data__ for i in self.new_issues.values()])
            ids = _prefetch(Issue, ISSUE_KEY, set(self.new_issues))
            for key, issue in self.new_issues.items():
                issue.id = ids[key].id
            self.new_issues = {}
        # In push order: the branch a commit was first pushed to is kept.
        insert_rows(Commit, self.commits, ignore=True)
        self.commits = []
        # New pull requests as the batch's events left them (their updates included).
        insert_rows(PullRequest, [pr.__data__ for pr in self.new_pull_requests.values()])
        for pr, updates in self.pull_request_updates.values():
            if (pr.repository_id, pr.number) not in self.new_pull_requests:
                PullRequest.update(updates).where(PullRequest.id == pr.id).execute()
        self.new_pull_requests = {}
        self.pull_request_updates = {}
        insert_rows(
            Review,
            list(self.reviews.values()),
            conflict_target=(Review.organization, Review.kind, Review.github_id),
            preserve=(Review.state, Review.commit_sha),
        )
        self.reviews = {}
        for organization, kind, github_id, deleted_at in self.review_deletions:
            _delete_review(organization, kind, github_id, deleted_at)
        self.review_deletions = []
        refresh_review_times_of(list(self.review_times))
        self.review_times = {}
        closures = list(self.closures.values())
        for row, _ in closures:
            if isinstance(row["issue"], Issue):  # an issue new in this batch: now it has an id
                row["issue"] = row["issue"].id
        for known in (True, False):
            _insert_closures([row for row, has_closer in closures if has_closer is known], known)
        self.closures = {}


PULL_REQUEST_EVENTS = ("pull_request", "pull_request_review", "pull_request_review_comment")


# The unique keys a batch finds rows by (shared/models/activity.py).
PULL_REQUEST_KEY = (PullRequest.repository, PullRequest.number)
ISSUE_KEY = (Issue.repository, Issue.number)
DEPLOYMENT_KEY = (Deployment.organization, Deployment.kind, Deployment.github_id)


def _prefetch(model, fields: tuple, keys: set[tuple]) -> dict:
    """The rows of `model` whose `fields` take each key in `keys` (a key the query did not
    return maps to None: known absent), in one query."""
    found: dict = dict.fromkeys(keys)
    if not keys:
        return found
    where = [among(field, {key[n] for key in keys}) for n, field in enumerate(fields)]
    for row in model.select().where(*where):
        key = tuple(row.__data__[field.name] for field in fields)
        if key in found:
            found[key] = row
    return found


def among(expr, values) -> pw.Expression:
    """`expr IN values`; on PostgreSQL as one array parameter (`= ANY(%s)`): peewee builds a
    placeholder per value far slower than the server reads the list."""
    values = list(values)
    if values and is_postgres():
        if isinstance(expr, pw.Field):  # each value as in_() converts it, not the list
            values = [expr.db_value(value) for value in values]
        return expr == pw.fn.ANY(pw.Value(values, converter=False, unpack=False))
    return expr.in_(values)


_batch: contextvars.ContextVar[Batch | None] = contextvars.ContextVar("batch", default=None)


@contextmanager
def batch_context(batch: Batch):
    token = _batch.set(batch)
    try:
        yield batch
    finally:
        _batch.reset(token)


def _accounts_of(payload: dict):
    """(login, github_id) of the accounts and commit authors a payload names."""
    for key in ("sender", "requested_reviewer"):
        yield payload.get(key)
    for key, inner in (
        ("pull_request", "user"),
        ("review", "user"),
        ("comment", "user"),
        ("issue", "user"),
        ("issue", "closed_by"),
        ("deployment", "creator"),
    ):
        yield (payload.get(key) or {}).get(inner) if isinstance(payload.get(key), dict) else None
    for commit in payload.get("commits") or []:
        if isinstance(commit, dict):
            author = commit.get("author") or {}
            yield {"login": author.get("username")}


class Developers:
    """known_developer's two lookups (GitHub id, login) answered from the users a batch's
    payloads name, fetched in one query; what the query did not cover is asked of the
    database as before."""

    def __init__(self, events):
        ids, logins = set(), set()
        for event in events:
            payload = event.payload if isinstance(event.payload, dict) else {}
            for account in _accounts_of(payload):
                if not isinstance(account, dict):
                    continue
                if isinstance(account.get("id"), int) and not isinstance(account["id"], bool):
                    ids.add(account["id"])
                if isinstance(account.get("login"), str) and account["login"]:
                    logins.add(account["login"].lower())
        self.ids, self.logins = ids, logins
        self.by_id: dict[int, User] = {}
        self.by_login: dict[str, User] = {}
        conditions = []
        if ids:
            conditions.append(among(User.github_id, ids))
        if logins:
            conditions.append(among(pw.fn.LOWER(User.login), logins))
        if conditions:
            # What the handlers read of a user (a whole row is several times the work).
            columns = (User.id, User.github_id, User.login, User.is_bot)
            for user in (
                User.select(*columns)
                .where(pw.reduce(pw.operator.or_, conditions))
                .order_by(User.id)
            ):
                self._remember(user)

    def _remember(self, user: User) -> None:
        if user.github_id is not None:
            self.by_id.setdefault(user.github_id, user)
        self.by_login.setdefault(user.login.lower(), user)

    def by_github_id(self, github_id: int) -> User | None:
        if github_id in self.ids:
            return self.by_id.get(github_id)
        return User.get_or_none(User.github_id == github_id)

    def by_login_of(self, login: str) -> User | None:
        if login.lower() in self.logins:
            return self.by_login.get(login.lower())
        return User.get_or_none(pw.fn.LOWER(User.login) == login.lower())

    def learned(self, user: User | None) -> None:
        """A user created or changed by the batch: later lookups must see it."""
        if user is None:
            return
        if user.github_id is not None:
            self.by_id[user.github_id] = user
        self.by_login.setdefault(user.login.lower(), user)


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
    *,
    github_id: int | None = None,
    bot: bool = False,
) -> User | None:
    """The user behind a GitHub account: by GitHub id, else login. A human login seen for
    the first time becomes a known developer (a user who has not signed in), so the
    metrics can credit them; bots never do. (A commit without a username is its e-mail's
    owner's: authors.py.)"""
    batch = _batch.get()
    if batch is None:
        by_id = lambda: User.get_or_none(User.github_id == github_id)  # noqa: E731
        by_login = lambda: User.get_or_none(pw.fn.LOWER(User.login) == login.lower())  # noqa: E731
    else:
        cache = batch.developers
        by_id = lambda: cache.by_github_id(github_id)  # noqa: E731
        by_login = lambda: cache.by_login_of(login)  # noqa: E731
    user = by_id() if github_id else None
    if user is None and login:
        user = by_login()
        if user is not None and github_id and user.github_id is None:
            User.update(github_id=github_id).where(User.id == user.id).execute()
            if batch is not None:
                user.github_id = github_id
                batch.developers.learned(user)
        elif user is not None and github_id and user.github_id != github_id:
            user = None  # a login GitHub has since given to someone else
    if user is None and login and not bot and not login.endswith("[bot]"):
        User.insert(login=login, github_id=github_id).on_conflict_ignore().execute()
        user = (
            User.get_or_none(User.github_id == github_id)
            if github_id
            else User.get_or_none(pw.fn.LOWER(User.login) == login.lower())
        )
        if batch is not None:
            batch.developers.learned(user)
    return user


def developer_of(account: dict | None) -> User | None:
    """known_developer for a GitHub user object of a payload."""
    if not account or not account.get("login"):
        return None
    return known_developer(account["login"], github_id=account.get("id"), bot=is_bot(account))


def org_settings(repo: Repository) -> dict:
    batch = _batch.get()
    if batch is not None and repo.organization_id in batch.settings:
        return batch.settings[repo.organization_id]
    settings = Organization.get_by_id(repo.organization_id).settings or {}
    if batch is not None:
        batch.settings[repo.organization_id] = settings
    return settings


def is_production(repo: Repository, environment: str) -> bool:
    return tenant_settings.is_production(org_settings(repo), environment)


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
        login = author.get("username") or None  # the username GitHub shows for the commit
        user = known_developer(login) if login else None
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
                "author": user,  # without a username: its e-mail's owner (authors.py)
                "author_login": login,
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
    batch = _batch.get()
    authors.attribute(repo, rows, changes, batch)
    if batch is not None:
        batch.commits.extend(rows)  # inserted with the batch's others, in the same order
    else:
        for chunk in pw.chunked(rows, 500):
            # The branch a commit was first pushed to is kept (a later merge does not move it).
            Commit.insert_many(chunk).on_conflict_ignore().execute()
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


def _author(pr: dict) -> dict:
    author = pr["user"] or {}
    user = developer_of(author)
    return {
        "author": user.id if user else None,
        "author_login": author.get("login"),
        "author_is_bot": is_bot(author),
    }


def _state(pr: dict) -> dict:
    if pr["merged_at"]:
        state = PullRequestState.MERGED
    elif pr["state"] == "closed":
        state = PullRequestState.CLOSED
    else:
        state = PullRequestState.OPEN  # a reopened PR's payload may keep its old closed_at
    return {
        "state": state,
        "merged_at": ts(pr["merged_at"]),
        "closed_at": ts(pr["closed_at"]) if state != PullRequestState.OPEN else None,
    }


def _head(pr: dict) -> dict:
    head = pr["head"] or {}
    revert_of = REVERT_BRANCH.match(head.get("ref") or "")
    return {
        "head_ref": head.get("ref") or "",
        "head_sha": head.get("sha"),
        "reverts_number": int(revert_of.group(1)) if revert_of else None,
    }


def _labels(item: dict) -> dict:
    names = {
        label["name"]
        for label in item["labels"] or []
        if isinstance(label, dict) and isinstance(label.get("name"), str)
    }
    return {"labels": sorted(names)}


def _milestone(item: dict) -> dict:
    milestone = item["milestone"] if isinstance(item["milestone"], dict) else {}
    return {"milestone": milestone.get("title")}


# What each key of GitHub's pull-request object sets on the stored row: (the keys it needs,
# the columns it gives). GitHub sends partial objects: a review's, a review thread's and a
# review comment's pull request lack additions, deletions, changed_files and commits (a
# review comment's also lacks draft), the REST list's lacks them too, and the issue of an
# `issues` or `issue_comment` event about a pull request carries only ISSUE_KEYS of these.
# A payload sets only the columns of the keys it carries, each only if it is at least as new
# as the payload that key was last taken from (PullRequest.fields_updated_at).
PULL_REQUEST_KEYS = {
    "id": (("id",), lambda pr: {"github_id": pr["id"]}),
    "user": (("user",), _author),
    "title": (("title",), lambda pr: {"title": pr["title"] or ""}),
    "body": (("body",), lambda pr: {"body": pr["body"]}),
    "state": (("state", "merged_at", "closed_at"), _state),
    "draft": (("draft",), lambda pr: {"draft": bool(pr["draft"])}),
    "base": (("base",), lambda pr: {"base_ref": (pr["base"] or {}).get("ref") or ""}),
    "head": (("head",), _head),
    "additions": (("additions",), lambda pr: {"additions": pr["additions"] or 0}),
    "deletions": (("deletions",), lambda pr: {"deletions": pr["deletions"] or 0}),
    "changed_files": (("changed_files",), lambda pr: {"changed_files": pr["changed_files"] or 0}),
    "commits": (("commits",), lambda pr: {"commits_count": pr["commits"] or 0}),
    "created_at": (("created_at",), lambda pr: {"created_at": ts(pr["created_at"])}),
    "merge_commit_sha": (
        ("merge_commit_sha",),
        lambda pr: {"merge_commit_sha": pr["merge_commit_sha"]},
    ),
    "labels": (("labels",), _labels),
    "milestone": (("milestone",), _milestone),
}
# What an issue-shaped object about a pull request tells of it (its state, dates and
# comment count are the pull request's own events' and stored comments' to say).
ISSUE_KEYS = ("title", "labels", "milestone")


def is_pull_request(issue: dict) -> bool:
    """Whether an issue-shaped object (the issue of an `issues` or `issue_comment` payload,
    an item of the REST issues list) is a pull request: GitHub marks those with a
    `pull_request` key. Such an object is never stored as an issue: the one rule of the
    webhooks and the backfill."""
    return issue.get("pull_request") is not None


def _carried(item: dict, keys) -> dict[str, dict]:
    """{key: the columns it sets} for the keys of PULL_REQUEST_KEYS in `keys` that `item`
    carries."""
    carried = {}
    for key in keys:
        needs, columns = PULL_REQUEST_KEYS[key]
        if all(name in item for name in needs):
            carried[key] = columns(item)
    return carried


def _fresh_updates(row: PullRequest, carried: dict[str, dict], at: dt.datetime | None) -> dict:
    """The columns a payload of GitHub time `at` may set on `row`: those of each key it
    carries that is no newer on the row (a key no payload carried yet: always). With them
    the row's times: `updated_at` the newest applied, `fields_updated_at` each key's
    where older (so a newer partial object never makes older full fields look current)."""
    if at is None:
        return {}
    stamps = row.fields_updated_at or {}

    def taken_at(key: str) -> dt.datetime | None:
        return ts(stamps[key]) if key in stamps else row.updated_at

    fresh = [key for key in carried if (taken_at(key) is None or at >= taken_at(key))]
    if not fresh:
        return {}
    updates = {}
    for key in fresh:
        updates.update(carried[key])
    newest = max(at, row.updated_at) if row.updated_at is not None else at
    older = {}
    for key in PULL_REQUEST_KEYS:
        moment = at if key in fresh else taken_at(key)
        if moment != newest:
            older[key] = moment.isoformat() if moment is not None else None
    updates["updated_at"] = newest
    updates["fields_updated_at"] = older or None
    return updates


def stored_pull_request(repo: Repository, number: int) -> PullRequest | None:
    """The pull request's row (in a batch: as its events left it so far)."""
    batch = _batch.get()
    key = (repo.id, number)
    if batch is not None and key in batch.pull_requests:
        return batch.pull_requests[key]
    row = PullRequest.get_or_none((PullRequest.repository == repo) & (PullRequest.number == number))
    if batch is not None and row is not None:
        batch.pull_requests[key] = row  # later events of the batch see its deferred updates
    return row


def _write(repo: Repository, row: PullRequest, updates: dict, changes: Changes) -> PullRequest:
    """Apply `updates` to the stored row; the days it counted on are touched (a moved or
    cleared time changes them)."""
    if not updates:
        return row
    changes.touch(repo, row.created_at, row.merged_at, row.closed_at)
    batch = _batch.get()
    if batch is not None:
        # Written once per pull request when the batch ends; the row in memory is current.
        for name, value in updates.items():
            setattr(row, name, value)
        _, pending = batch.pull_request_updates.setdefault(row.id, (row, {}))
        pending.update(updates)
        return row
    PullRequest.update(updates).where(PullRequest.id == row.id).execute()
    return PullRequest.get_by_id(row.id)


def upsert_pull_request(
    repo: Repository, pr: dict, changes: Changes, *, ready_at=None
) -> PullRequest:
    """Create or update from a payload's pull_request, with the fields it carries (a key
    it lacks leaves its columns as they are); an older payload never overwrites a newer
    one, and `ready_at` only ever moves earlier."""
    carried = _carried(pr, PULL_REQUEST_KEYS)
    at = ts(pr.get("updated_at")) or ts(pr.get("created_at"))
    number = pr["number"]
    batch = _batch.get()
    key = (repo.id, number)
    existing = stored_pull_request(repo, number)
    if existing is None:
        fields = {
            "repository": repo.id,
            "organization": repo.organization_id,
            "number": number,
            "base_ref": "",
            "head_ref": "",
            "ready_at": ready_at,
            "updated_at": at,
            # What this payload lacks: any later payload that carries it sets it.
            "fields_updated_at": dict.fromkeys(k for k in PULL_REQUEST_KEYS if k not in carried)
            or None,
        }
        for columns in carried.values():
            fields.update(columns)
        if batch is not None:
            # Known absent: a plain insert (a concurrent writer's row fails the batch's fast
            # path), as the batch ends when its id could be taken now.
            existing = PullRequest(**fields)
            if batch.pull_request_ids:
                existing.id = batch.pull_request_ids.pop()
                batch.new_pull_requests[key] = existing
            else:
                existing.id = PullRequest.insert(**fields).execute()
            batch.pull_requests[key] = existing
            return existing
        PullRequest.insert(**fields).on_conflict_ignore().execute()
        existing = PullRequest.get(
            (PullRequest.repository == repo) & (PullRequest.number == number)
        )
        if existing.ready_at == ready_at:
            return existing
    updates = _fresh_updates(existing, carried, at)
    if ready_at is not None and (existing.ready_at is None or ready_at < existing.ready_at):
        updates["ready_at"] = ready_at
    return _write(repo, existing, updates, changes)


def pull_request_of_issue(repo: Repository, issue: dict, changes: Changes) -> PullRequest | None:
    """An issue-shaped object about a pull request (is_pull_request) updates what the pull
    request keeps of it (ISSUE_KEYS), as fresh as it is; never an issue. None when the pull
    request is not stored (it arrives with its own events, or the backfill)."""
    row = stored_pull_request(repo, issue["number"])
    if row is None:
        return None
    updates = _fresh_updates(row, _carried(issue, ISSUE_KEYS), ts(issue.get("updated_at")))
    return _write(repo, row, updates, changes)


def review_times_changed(pr: PullRequest) -> None:
    """refresh_review_times now, or once per pull request at the end of the batch."""
    batch = _batch.get()
    if batch is None:
        refresh_review_times(pr)
    else:
        batch.review_times[pr.id] = pr


def refresh_review_times(pr: PullRequest) -> None:
    """first_review_at / approved_at from the stored reviews by humans other than the author,
    and the comment counts from the stored comments."""
    refresh_review_times_of([pr.id])


def refresh_review_times_of(pull_request_ids) -> None:
    """refresh_review_times for many pull requests in one statement (correlated subqueries
    over each one's reviews; the author is the stored row's)."""
    if not pull_request_ids:
        return
    r = Review.alias("r")
    live = (r.pull_request == PullRequest.id) & r.deleted_at.is_null()
    by_others = live & by_another_human(r, PullRequest)

    def first(condition):
        return r.select(pw.fn.MIN(r.submitted_at)).where(by_others & condition)

    def count(kind):
        return r.select(pw.fn.COUNT(r.id)).where(live & (r.kind == kind))

    for chunk in pw.chunked(sorted(set(pull_request_ids)), 500):
        PullRequest.update(
            first_review_at=first(r.kind != ReviewKind.ISSUE_COMMENT),
            approved_at=first((r.kind == ReviewKind.REVIEW) & (r.state == "APPROVED")),
            review_comments=count(ReviewKind.REVIEW_COMMENT),
            comments=count(ReviewKind.ISSUE_COMMENT),
        ).where(PullRequest.id.in_(chunk)).execute()


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
    batch = _batch.get()
    if batch is not None:
        # One upsert per review when the batch ends: the first delivery's row, with the
        # state and commit of the last (what upserting each in turn leaves).
        first = batch.reviews.setdefault((repo.organization_id, str(kind), github_id), row)
        first["state"], first["commit_sha"] = row["state"], row["commit_sha"]
        return
    (
        Review.insert(**row)
        .on_conflict(
            conflict_target=[Review.organization, Review.kind, Review.github_id],
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
    review_times_changed(pr_row)
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
        deleted_at = ts(comment.get("updated_at")) or event.received_at
        batch = _batch.get()
        if batch is not None:
            batch.review_deletions.append((repo.organization_id, kind, comment["id"], deleted_at))
        else:
            _delete_review(repo.organization_id, kind, comment["id"], deleted_at)
    review_times_changed(pr_row)
    changes.touch(repo, ts(comment.get("created_at")), pull_request=pr_row)


def _delete_review(organization: int, kind, github_id: int, deleted_at) -> None:
    Review.update(deleted_at=deleted_at).where(
        (Review.organization == organization)
        & (Review.kind == kind)
        & (Review.github_id == github_id)
    ).execute()


def handle_review_comment(event: Event, repo: Repository, payload: dict, changes: Changes):
    pr_row = upsert_pull_request(repo, payload["pull_request"], changes)
    _record_comment(event, repo, pr_row, ReviewKind.REVIEW_COMMENT, payload["comment"], changes)


def handle_issue_comment(event: Event, repo: Repository, payload: dict, changes: Changes):
    issue = payload["issue"]
    if not is_pull_request(issue):
        return  # a comment on a plain issue: nothing the metrics use
    pr_row = pull_request_of_issue(repo, issue, changes)
    if pr_row is None:
        return  # the pull request itself arrives with its own events (or the backfill)
    _record_comment(event, repo, pr_row, ReviewKind.ISSUE_COMMENT, payload["comment"], changes)


def handle_issues(event: Event, repo: Repository, payload: dict, changes: Changes):
    issue = payload["issue"]
    if is_pull_request(issue):  # e.g. milestoned or labeled on a pull request
        pull_request_of_issue(repo, issue, changes)
        return
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
    batch = _batch.get()
    key = (repo.id, issue["number"])
    if batch is not None and key in batch.issues:
        existing = batch.issues[key]
    else:
        existing = Issue.get_or_none((Issue.repository == repo) & (Issue.number == issue["number"]))
        if batch is not None and existing is not None:
            batch.issues[key] = existing  # later events of the batch see its changes
    if existing is None and batch is not None:
        # Known absent: inserted as the batch ends, as its events leave it (a concurrent
        # writer's row then fails the batch's fast path).
        batch.issues[key] = batch.new_issues[key] = Issue(**fields)
    elif existing is None:
        Issue.insert(**fields).on_conflict_ignore().execute()
    elif fields["updated_at"] >= existing.updated_at:
        changes.touch(repo, existing.created_at, existing.closed_at)  # the days it counted on
        updates = {k: v for k, v in fields.items() if k not in ("repository", "number")}
        if existing.id is not None:
            Issue.update(updates).where(Issue.id == existing.id).execute()
        if batch is not None:
            for name, value in updates.items():
                setattr(existing, name, value)
    if fields["closed_at"] is not None:
        # Each closing, credited to the sender of the `closed` event (the backfill knows the
        # closer only when the API says `closed_by`).
        closer = payload.get("sender") if event.action == "closed" else issue.get("closed_by")
        record_closure(
            repo,
            issue["number"],
            fields["closed_at"],
            closer,
            issue=batch.issues[key] if batch is not None else None,
        )
    changes.touch(repo, fields["created_at"], fields["closed_at"])


def record_closure(
    repo: Repository, number: int, closed_at, closer: dict | None, *, issue: Issue | None = None
) -> None:
    """Record one closing of an issue (`issue`: its row, when the caller has it; a batch's
    new issue has no id until the batch ends)."""
    if issue is None:
        issue = Issue.get((Issue.repository == repo) & (Issue.number == number))
    user = developer_of(closer)
    row = {
        "issue": issue.id if issue.id is not None else issue,
        "organization": repo.organization_id,
        "repository": repo.id,
        "closed_at": closed_at,
        "closer": user.id if user else None,
        "closer_login": (closer or {}).get("login"),
        "closer_is_bot": is_bot(closer),
    }
    batch = _batch.get()
    if batch is None:
        _insert_closures([row], bool(closer))
        return
    # Inserted with the batch's others: a known closer replaces an unknown one, a second
    # unknown one changes nothing (as inserting each in turn would).
    key = (repo.id, number, closed_at)
    if closer or key not in batch.closures:
        batch.closures[key] = (row, bool(closer))


def _insert_closures(rows: list[dict], known_closer: bool) -> None:
    if known_closer:  # a known closer replaces an unknown one (the backfill's)
        insert_rows(
            IssueClosure,
            rows,
            conflict_target=(IssueClosure.issue, IssueClosure.closed_at),
            preserve=(IssueClosure.closer, IssueClosure.closer_login, IssueClosure.closer_is_bot),
        )
    else:
        insert_rows(IssueClosure, rows, ignore=True)


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
    return _stored_deployment(row)


def _stored_deployment(row: dict) -> Deployment:
    """The deployment keyed (organization, kind, github_id), inserted from `row` if new."""
    batch = _batch.get()
    key = (row["organization"], row["kind"], row["github_id"])
    if batch is not None and key in batch.deployments:
        if batch.deployments[key] is None:
            # Known absent: inserted as the batch ends, with the state its statuses leave (a
            # concurrent writer's row then fails the batch's fast path).
            batch.deployments[key] = batch.new_deployments[key] = Deployment(**row)
        return batch.deployments[key]
    Deployment.insert(**row).on_conflict_ignore().execute()
    return Deployment.get(
        (Deployment.organization == row["organization"])
        & (Deployment.kind == row["kind"])
        & (Deployment.github_id == row["github_id"])
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
    if row.id is not None:  # else a batch's new deployment, inserted as it ends
        Deployment.update(state=state, status_at=at, finished_at=at if terminal else None).where(
            Deployment.id == row.id
        ).execute()
    row.state, row.status_at, row.finished_at = state, at, at if terminal else None
    if not terminal:
        return
    production = is_production(repo, row.environment)
    if state in FAILED_DEPLOYMENT_STATES:
        if row.id is None:  # the announcement names it: insert it now
            _batch.get().insert_deployment(row)
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
    _kind, wanted = tenant_settings.deployment_source(repo)
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
    deployment = _stored_deployment(row)
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
    """Lease due events, normalize them, publish what changed, commit.

    Fast path: the whole batch in one transaction with shared lookups, deferred bulk writes
    and one status update. If any event fails there, that transaction is rolled back and the
    batch is processed again event by event, each in its own savepoint, so one bad event
    is recorded as failed without holding back the others."""
    leased = lease_events(worker_id, limit)
    if not leased:
        return 0
    for attempt in (1, 2, 3):
        try:
            with db.atomic():
                plan_key_lookups()
                lock_repositories_of(leased)
                _process_together(leased)
            return len(leased)
        except (pw.IntegrityError, pw.OperationalError, psycopg2.Error) as exc:
            if not _is_conflict(exc):
                log.info("batch retried event by event", extra={"error": repr(exc)[:500]})
                break
            # Another worker inserted a row this batch found absent, or both locked rows in
            # opposite orders (events of one pull request in two batches): once more, with
            # lookups that now see the other's rows.
            log.info("batch conflicted", extra={"attempt": attempt, "error": repr(exc)[:500]})
        except Exception as exc:  # noqa: BLE001 - processed below, one savepoint per event
            log.info("batch retried event by event", extra={"error": repr(exc)[:500]})
            break
    changes = Changes()
    with db.atomic():
        plan_key_lookups()
        lock_repositories_of(leased)
        for event in leased:
            process_one(event, changes)
        changes.publish()
    for reason in changes.dead:  # once committed: a rolled-back batch is leased again
        EVENTS_DEAD.labels(reason).inc()
    return len(leased)


def lock_repositories_of(events: list[Event]) -> None:
    """Before the batch touches a row: its repositories, shared (a recompute of one of them
    waits for the batch, and the batch for it; see lock_repositories)."""
    lock_repositories([event.repository_id for event in events], exclusive=False)


def _is_conflict(exc: Exception) -> bool:
    """A concurrent worker's doing, cured by running the batch again: a row it inserted that
    this batch found absent (a unique violation: peewee's IntegrityError, insert_rows too), or
    a deadlock with it (the driver's own error: peewee maps only the DB-API classes)."""
    return isinstance(exc, pw.IntegrityError | psycopg2.errors.DeadlockDetected)


# What processing reads of an event (not the stored request headers).
LEASED_COLUMNS = (
    Event.id,
    Event.event_type,
    Event.action,
    Event.repository,
    Event.organization,
    Event.payload,
    Event.received_at,
    Event.attempts,
)


def lease_events(worker_id: str, limit: int) -> list[Event]:
    """Lease up to `limit` due events to `worker_id`, oldest first (as jobs.lease does, safe
    with any number of concurrent workers): they become PROCESSING, locked until the lease
    ends, with one more attempt. Their payloads are decoded fast (fast_jsonb)."""
    now = utcnow()
    postgres = is_postgres()
    with db.atomic() if postgres else db.atomic("IMMEDIATE"):
        # Each kind's oldest by walking its (status, received_at) index, stopping at `limit`.
        plan_key_lookups()
        candidates = [row.id for row in due_candidates(now, limit)]
        if not candidates:
            return []
        # Locked by id alone (the planner then looks up just these), and checked due again
        # as locked: another worker's lease wins.
        locked = Event.select(
            Event.id, Event.received_at, Event.status, Event.next_attempt_at, Event.locked_until
        ).where(among(Event.id, candidates))
        if postgres:
            locked = locked.for_update(skip_locked=True)
        due = sorted((e for e in locked if is_due(e, now)), key=lambda e: (e.received_at, e.id))
        due = due[:limit]
        if not due:
            return []
        # Their receipt times as well as their ids: the partitions of that span alone are
        # searched, not every month's.
        chosen = among(Event.id, [e.id for e in due]) & Event.received_at.between(
            due[0].received_at, due[-1].received_at
        )
        lease = Event.update(
            {
                Event.status: EventStatus.PROCESSING,
                Event.locked_by: worker_id,
                Event.locked_until: now + dt.timedelta(seconds=LEASE_SECONDS),
                Event.attempts: Event.attempts + 1,
            }
        ).where(chosen)
        if not postgres:
            lease.execute()
            return list(
                Event.select(*LEASED_COLUMNS).where(chosen).order_by(Event.received_at, Event.id)
            )
        # One statement leases them and reads what processing needs (RETURNING).
        fast_jsonb(db.connection())
        leased = list(lease.returning(*LEASED_COLUMNS))
        return sorted(leased, key=lambda e: (e.received_at, e.id))


def plan_key_lookups() -> None:
    """Until the transaction ends, neither sequential nor bitmap scans, nor JIT (PostgreSQL).
    Every statement of this worker finds rows by key (ids, GitHub numbers, logins) or walks an
    index for the oldest rows, yet without fresh statistics (autovacuum behind, or off; a
    freshly loaded table has none) the planner takes a batch's IN list to match most of a
    table and scans all of it, or matches one column of a two-column key through a bitmap
    and filters every row of that kind, or sorts every due event to find the oldest: costs
    that grow with the tables. A scan left with no alternative then looks costly enough to
    JIT-compile, which takes longer than any of these short statements."""
    if is_postgres():
        db.execute_sql(
            "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL jit = off"
        )


def is_due(event: Event, now: dt.datetime) -> bool:
    """Whether an event is to be processed: a new one, a failed one due for a retry, or one
    whose worker's lease ran out."""
    if event.status == EventStatus.PENDING:
        return True
    if event.status == EventStatus.FAILED:
        return event.next_attempt_at is not None and event.next_attempt_at <= now
    if event.status == EventStatus.PROCESSING:
        return event.locked_until is not None and event.locked_until < now
    return False


def due_candidates(now: dt.datetime, limit: int):
    """The ids of the `limit` oldest due events of each kind (is_due), each kind found
    through its own index (an OR of the three cannot walk an index in received_at order:
    every lease would sort every pending event, so the cost of a batch would grow with the
    backlog). Locked by id in a statement of their own: joined to them in one, the planner
    scans every due event to match the candidates."""
    pending = Event.status == EventStatus.PENDING
    retry = (Event.status == EventStatus.FAILED) & (Event.next_attempt_at <= now)
    expired = (Event.status == EventStatus.PROCESSING) & (Event.locked_until < now)

    def oldest(condition):
        return (
            Event.select(Event.id)
            .where(condition)
            .order_by(Event.received_at, Event.id)
            .limit(limit)
        )

    return oldest(pending) + oldest(retry) + oldest(expired)  # UNION ALL


def fast_jsonb(connection) -> None:
    """Decode the jsonb the connection reads with fastjson.loads (the payloads: most of a
    lease's time went into json.loads)."""
    psycopg2.extras.register_default_jsonb(connection, loads=fastjson.loads)


def _process_together(leased: list[Event]) -> None:
    """Every event of the batch in the caller's transaction, without a savepoint each; any
    exception propagates (and the caller processes the batch event by event instead)."""
    changes = Changes()
    done: dict[EventStatus, list[int]] = defaultdict(list)
    with batch_context(Batch(leased)) as batch:
        for event in leased:
            handler = HANDLERS.get(event.event_type)
            repo = batch.repositories.get(event.repository_id)
            if handler is None or repo is None:
                done[EventStatus.SKIPPED].append(event.id)  # kept raw, not modelled
                continue
            changes.handling(repo, event.event_type)
            handler(event, repo, event.payload, changes)
            done[EventStatus.PROCESSED].append(event.id)
        batch.flush()
    finished = utcnow()
    for status, ids in done.items():
        Event.update(
            status=status,
            last_error=None,
            locked_by=None,
            locked_until=None,
            processed_at=finished,
            next_attempt_at=None,
        ).where(among(Event.id, ids)).execute()
    changes.publish()


def process_one(event: Event, changes: Changes) -> EventStatus:
    handler = HANDLERS.get(event.event_type)
    repo = Repository.get_or_none(Repository.id == event.repository_id)
    if handler is None or repo is None:
        status, error = EventStatus.SKIPPED, None  # kept raw, not modelled
    else:
        try:
            changes.handling(repo, event.event_type)
            with db.atomic():
                handler(event, repo, event.payload, changes)
            status, error = EventStatus.PROCESSED, None
        except Exception as exc:  # recorded on the event
            status, error = _failed(event, exc, changes)
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


def _failed(event: Event, exc: Exception, changes: Changes) -> tuple[EventStatus, str]:
    """The status and error of an event its handler failed on: DEAD at once when a value it
    carries can never be stored (it would fail the same way on every retry); otherwise
    retried with backoff, DEAD after MAX_ATTEMPTS."""
    unstorable = unstorable_reason(exc)
    if unstorable is not None:
        status, error, dead = EventStatus.DEAD, f"permanent: {unstorable}", DEAD_UNSTORABLE
    elif event.attempts >= MAX_ATTEMPTS:
        status, error, dead = EventStatus.DEAD, repr(exc), DEAD_RETRIES_EXHAUSTED
    else:
        status, error, dead = EventStatus.FAILED, repr(exc), None
    if dead:
        changes.dead.append(dead)
    log.warning(
        "event failed",
        extra={"event_id": event.id, "error": repr(exc), "status": str(status)},
    )
    return status, error[:4000]


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
