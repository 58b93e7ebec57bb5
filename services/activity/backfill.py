"""Backfill a repository's history from the GitHub REST API into the same rows webhooks
produce (the same handlers normalize both).

Incremental: per resource a high-water mark (the newest `updated_at`/date seen) and the
ETag of the first page are kept in `repositories.backfill_state`, so a second run asks only
for what changed (and GitHub answers 304 to unchanged first pages, which costs no quota).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from contextlib import contextmanager
from types import SimpleNamespace

from services.activity import github_access, processing
from shared.database import db
from shared.errors import BadRequest
from shared.github import GitHubRest
from shared.models import PullRequest, PullRequestCommit, Repository, utcnow
from shared.outbox import PermanentFailure
from shared.sql import lock_repositories

log = logging.getLogger(__name__)
PER_PAGE = 100
QUEUE = "backfill"


class NoOwnerToken(PermanentFailure):
    """The repository's GitHub calls stopped: its token owner left or lost access."""


def _client(repo: Repository, token: str | None, sleep=None) -> tuple[GitHubRest, bool]:
    """A GitHub client for the repository's calls: with `token` when the operator gave one
    (`GITHUB_TOKEN` on the command line), else with the repository's credential (its token
    owner's, or the GitHub App's), never anyone else's. The flag says whether the owner's
    own token is in use (a refusal then stops its calls)."""
    if token:
        return GitHubRest(token, sleep=sleep), False
    credential = github_access.repository_credential(repo)
    if credential is None:
        raise NoOwnerToken(f"{repo.full_name}: {github_access.status_of(repo).detail}")
    return GitHubRest(credential.token, sleep=sleep), credential.owners


@contextmanager
def _owner_token_guard(repo: Repository, owners: bool):
    """GitHub refusing the owner's token (401, 403, or 404 for a repository it can no
    longer read) stops the repository's calls, recorded on it, rather than retrying."""
    try:
        yield
    except BadRequest as exc:
        if not owners:
            raise
        github_access.record_token_refused(repo, f"GitHub refused its token: {exc.message}")
        raise NoOwnerToken(f"{repo.full_name}: {repo.github_problem}") from None


def empty_progress() -> dict:
    return {
        "state": None,
        "since": None,
        "started_at": None,
        "finished_at": None,
        "error": None,
        "pages": 0,
        "items": 0,
        "not_modified": 0,
        "rate_limit_remaining": None,
        "marks": {},
    }


def progress_of(repo: Repository) -> dict:
    """The repository's backfill state, every field present (ETags are internal)."""
    stored = {k: v for k, v in (repo.backfill_state or {}).items() if k != "etags"}
    return {**empty_progress(), **stored}


def _api_commit_as_push(commit: dict) -> dict:
    """A REST commit in the shape of a push payload's commit (what handle_push reads)."""
    info = commit.get("commit") or {}
    author = info.get("author") or {}
    files = [f.get("filename") for f in commit.get("files") or [] if f.get("filename")]
    return {
        "id": commit["sha"],
        "timestamp": author.get("date"),
        "message": info.get("message"),
        "author": {
            "name": author.get("name"),
            "email": author.get("email"),
            "username": (commit.get("author") or {}).get("login"),
        },
        "modified": files,
    }


class Backfill:
    def __init__(
        self,
        repo: Repository,
        client: GitHubRest,
        since: dt.datetime | None,
        progress: Callable[[dict], None] | None = None,
    ):
        self.repo, self.client, self.since = repo, client, since
        self.progress = progress or (lambda state: None)
        previous = repo.backfill_state or {}
        self.state = {
            **empty_progress(),
            "state": "running",
            "since": since.isoformat() if since else None,
            "started_at": utcnow().isoformat(),
            "marks": dict(previous.get("marks") or {}),
            "etags": dict(previous.get("etags") or {}),
        }
        self.changes = processing.Changes()
        self.path = f"/repos/{repo.full_name}"

    # Paging --------------------------------------------------------------------------
    def pages(self, resource: str, path: str, params: dict):
        """Every page of a list; the first page is conditional on its stored ETag."""
        url, first = path, True
        while url:
            key = f"{resource}:{url}:{sorted(params.items()) if first else ''}"
            page = self.client.get(
                url, params if first else None, etag=self.state["etags"].get(key) if first else None
            )
            self.state["pages"] += 1
            self.state["rate_limit_remaining"] = self.client.rate_limit_remaining
            if page.status == 304:
                self.state["not_modified"] += 1
                return
            if first and page.headers.get("ETag"):
                self.state["etags"][key] = page.headers["ETag"]
            yield page.data
            url, first = page.next_url, False
            self.progress(self.state)

    def _mark(self, resource: str) -> str | None:
        mark = self.state["marks"].get(resource)
        since = self.since.isoformat().replace("+00:00", "Z") if self.since else None
        return max(filter(None, [mark, since]), default=None)

    def _since_param(self, resource: str) -> str | None:
        """GitHub's `since` is inclusive: start one second after the newest item seen."""
        mark = self._mark(resource)
        if mark is None:
            return None
        moment = processing.ts(mark)
        if resource in self.state["marks"] and mark == self.state["marks"][resource]:
            moment += dt.timedelta(seconds=1)
        return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _advance(self, resource: str, value: str | None):
        if value and value > (self.state["marks"].get(resource) or ""):
            self.state["marks"][resource] = value

    # Resources ------------------------------------------------------------------------
    def pull_requests(self):
        mark = self._mark("pulls")
        params = {"state": "all", "sort": "updated", "direction": "desc", "per_page": PER_PAGE}
        newest = None
        for items in self.pages("pulls", f"{self.path}/pulls", params):
            for pr in items:
                if mark and pr["updated_at"] < mark:
                    return self._advance("pulls", newest)  # sorted newest first: done
                newest = max(newest or "", pr["updated_at"])
                self._pull_request(pr)
        self._advance("pulls", newest)

    def _pull_request(self, listed: dict):
        pr = self._pull_request_detail(listed)
        action = "opened" if not pr.get("draft") else None
        processing.handle_pull_request(
            SimpleNamespace(action=action, received_at=utcnow()),
            self.repo,
            {"pull_request": pr},
            self.changes,
        )
        number = pr["number"]
        for items in self.pages(
            f"reviews:{number}", f"{self.path}/pulls/{number}/reviews", {"per_page": PER_PAGE}
        ):
            for review in items:
                processing.handle_review(
                    SimpleNamespace(action="submitted"),
                    self.repo,
                    {"review": review, "pull_request": pr},
                    self.changes,
                )
        pr_row = PullRequest.get(
            (PullRequest.repository == self.repo) & (PullRequest.number == number)
        )
        for items in self.pages(
            f"pr-commits:{number}", f"{self.path}/pulls/{number}/commits", {"per_page": PER_PAGE}
        ):
            self._commits(items, pr["head"]["ref"])
            # The API's list is the pull request's commits, whatever branch they came by.
            links = [{"pull_request": pr_row.id, "sha": c["sha"]} for c in items]
            if links:
                PullRequestCommit.insert_many(links).on_conflict_ignore().execute()
        self.state["items"] += 1

    def _pull_request_detail(self, listed: dict) -> dict:
        """The full pull request: GitHub's list gives the "simple" object, without
        additions, deletions, changed_files, commits, comments or merged_by; one request
        each for the pull requests that changed since the last run."""
        if "additions" in listed:
            return listed
        page = self.client.get(f"{self.path}/pulls/{listed['number']}")
        self.state["pages"] += 1
        self.state["rate_limit_remaining"] = self.client.rate_limit_remaining
        return page.data

    def _commits(self, items: list, branch: str):
        payload = {
            "ref": f"refs/heads/{branch}",
            "repository": {},
            "commits": [_api_commit_as_push(c) for c in items],
        }
        processing.handle_push(
            SimpleNamespace(action=None, received_at=utcnow()), self.repo, payload, self.changes
        )
        self.state["items"] += len(items)

    def issues(self):
        params = {"state": "all", "sort": "updated", "direction": "asc", "per_page": PER_PAGE}
        if since := self._since_param("issues"):
            params["since"] = since
        for items in self.pages("issues", f"{self.path}/issues", params):
            for issue in items:
                self._advance("issues", issue["updated_at"])
                # The list includes pull requests: handle_issues tells them apart by the
                # webhooks' rule (never an issue; their labels and milestone go to the PR).
                processing.handle_issues(
                    SimpleNamespace(action=None), self.repo, {"issue": issue}, self.changes
                )
                self.state["items"] += 1

    def default_branch_commits(self):
        branch = self.repo.default_branch
        params = {"sha": branch, "per_page": PER_PAGE}
        if since := self._since_param("commits"):
            params["since"] = since
        for items in self.pages("commits", f"{self.path}/commits", params):
            self._commits(items, branch)
            for commit in items:
                self._advance("commits", (commit.get("commit") or {}).get("author", {}).get("date"))

    def deployments(self):
        mark = self._mark("deployments")
        for items in self.pages("deployments", f"{self.path}/deployments", {"per_page": PER_PAGE}):
            for deployment in items:
                if mark and deployment["created_at"] < mark:
                    continue
                self._advance("deployments", deployment["created_at"])
                processing.handle_deployment(
                    SimpleNamespace(action="created"),
                    self.repo,
                    {"deployment": deployment},
                    self.changes,
                )
                statuses = []
                for page in self.pages(
                    f"statuses:{deployment['id']}",
                    f"{self.path}/deployments/{deployment['id']}/statuses",
                    {"per_page": PER_PAGE},
                ):
                    statuses.extend(page)
                for status in sorted(statuses, key=lambda s: s["created_at"]):
                    processing.handle_deployment_status(
                        SimpleNamespace(action="created", received_at=utcnow()),
                        self.repo,
                        {"deployment": deployment, "deployment_status": status},
                        self.changes,
                    )
                self.state["items"] += 1

    def run(self) -> dict:
        self._save()
        try:
            for step in (
                self.pull_requests,
                self.issues,
                self.default_branch_commits,
                self.deployments,
            ):
                with db.atomic():
                    if step in (self.pull_requests, self.issues):  # they write pull requests
                        lock_repositories([self.repo.id], exclusive=False)
                    step()
                    self.changes.publish()  # the metrics service recomputes what changed
                    self.changes = processing.Changes()
            self.state.update(state="done", finished_at=utcnow().isoformat())
        except Exception as exc:
            self.state.update(
                state="failed", error=str(exc)[:1000], finished_at=utcnow().isoformat()
            )
            self._save()
            raise
        self._save()
        return self.state

    def _save(self):
        with db.atomic():
            Repository.update(backfill_state=self.state).where(
                Repository.id == self.repo.id
            ).execute()


def backfill(
    repo: Repository,
    since: dt.datetime | None = None,
    *,
    token: str | None = None,
    sleep=None,
    progress=None,
) -> dict:
    if not repo.is_active:
        raise BadRequest(f"{repo.full_name} is disconnected")
    run = None
    try:
        client, owners = _client(repo, token, sleep)
        run = Backfill(repo, client, since, progress)
        with _owner_token_guard(repo, owners):
            return run.run()
    except NoOwnerToken as exc:
        if run is None:  # refused before it started: say so in its progress
            failed = {**progress_of(repo), "state": "failed", "error": str(exc)[:1000]}
            with db.atomic():
                Repository.update(backfill_state=failed).where(Repository.id == repo.id).execute()
        raise


def complete_push(
    repo: Repository, before: str, after: str, branch: str, *, token: str | None = None, sleep=None
) -> int:
    """The commits of a push whose payload GitHub truncated, from the compare API."""
    client, owners = _client(repo, token, sleep)
    with _owner_token_guard(repo, owners):
        return _complete_push(repo, client, before, after, branch)


def _complete_push(repo: Repository, client: GitHubRest, before: str, after: str, branch: str):
    changes = processing.Changes()
    url, params, count = f"/repos/{repo.full_name}/compare/{before}...{after}", {"per_page": 250}, 0
    with db.atomic():
        while url:
            page = client.get(url, params)
            commits = [_api_commit_as_push(c) for c in (page.data or {}).get("commits", [])]
            # Pages hold at most 250 commits, so this never asks for completion again.
            payload = {"ref": f"refs/heads/{branch}", "repository": {}, "commits": commits}
            processing.handle_push(
                SimpleNamespace(action=None, received_at=utcnow()), repo, payload, changes
            )
            count += len(commits)
            url, params = page.next_url, None
        changes.publish()
    return count


def run_job(job) -> None:
    """Worker handler for the `backfill` queue: a repository backfill (queued by the API),
    the completion of a truncated push (queued by the events worker), or the retried
    verification of a repository connected while GitHub was unavailable."""
    repo = Repository.get_by_id(job.payload["repository_id"])
    if job.payload.get("kind") == "verify":
        github_access.run_verification(repo)
        return
    if job.payload.get("kind") == "push":
        complete_push(repo, job.payload["before"], job.payload["after"], job.payload["branch"])
        return
    since = job.payload.get("since")
    backfill(repo, dt.datetime.fromisoformat(since) if since else None)
