"""Hand-built activity histories for the metrics tests: rows as the activity service
stores them (it is tested on real webhooks elsewhere), written directly, with the days and
pull requests each step touched so a test can drive the incremental recompute."""

from __future__ import annotations

import datetime as dt
import itertools

from services.activity import authors
from services.activity.processing import Changes, known_developer, refresh_review_times
from shared.models import (
    Commit,
    Deployment,
    Issue,
    IssueClosure,
    Organization,
    PullRequest,
    PullRequestCommit,
    Repository,
    Review,
    User,
)

_ids = itertools.count(900_000)


def at(text: str) -> dt.datetime:
    """'2026-03-02 10:00' as UTC."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


class History:
    def __init__(self, slug="acme", repo="acme/api", *, org_settings=None, repo_settings=None):
        self.org = Organization.create(name=slug, slug=slug, settings=org_settings or {})
        self.repo = self.add_repository(repo, repo_settings)
        self.touched_days: set[dt.date] = set()
        self.touched_prs: set[int] = set()
        self.event_types: set[str] = set()

    def add_repository(self, full_name, settings=None) -> Repository:
        return Repository.create(
            organization=self.org, full_name=full_name, settings=settings or {}
        )

    def user(self, login: str) -> User | None:
        return known_developer(login, bot=login.endswith("[bot]"))

    def _touch(self, *moments, pr=None, event_type):
        self.touched_days |= {m.date() for m in moments if m is not None}
        if pr is not None:
            self.touched_prs.add(pr.id)
        self.event_types.add(event_type)

    def take_changes(self) -> dict:
        """What an activity.changed message would carry since the last call."""
        changes = {
            "dates": sorted(self.touched_days),
            "pull_request_ids": sorted(self.touched_prs),
            "event_types": sorted(self.event_types),
        }
        self.touched_days, self.touched_prs, self.event_types = set(), set(), set()
        return changes

    def commit(self, sha, author, authored, *, branch="main", pushed=None, email=None, repo=None):
        """A pushed commit; without a username (`author`) it is its e-mail's owner's, and
        one with both pairs the e-mail (as the events worker attributes them)."""
        row = {
            "repository": repo or self.repo,
            "organization": self.org.id,
            "sha": sha,
            "author": self.user(author) if author else None,
            "author_login": author,
            "author_email": email.lower() if email else None,
            "author_is_bot": bool(author and author.endswith("[bot]")),
            "authored_at": at(authored),
            "committed_at": at(authored),
            "branch": branch,
            "pushed_at": at(pushed) if pushed else at(authored),
        }
        changes = Changes()
        authors.attribute(row["repository"], [row], changes)
        Commit.create(**row)
        # Earlier commits the e-mail's new pairing re-attributed: their days too.
        moved = [dt.datetime.fromisoformat(day) for days in changes.days.values() for day in days]
        self._touch(at(authored), *moved, event_type="push")

    def pr(
        self,
        number,
        author,
        created,
        *,
        title=None,
        head=None,
        base="main",
        draft=False,
        ready=None,
        merged=None,
        closed=None,
        additions=0,
        deletions=0,
        repo=None,
        listed=(),
    ):
        user = self.user(author)
        ready_at = at(ready) if ready else (None if draft else at(created))
        merged_at = at(merged) if merged else None
        closed_at = at(closed) if closed else merged_at
        head = head or f"branch-{number}"
        revert = head.startswith("revert-") and head.split("-")[1].isdigit()
        pr = PullRequest.create(
            repository=repo or self.repo,
            organization=self.org,
            number=number,
            author=user,
            author_login=author,
            author_is_bot=author.endswith("[bot]"),
            title=title or f"PR {number}",
            state="MERGED" if merged_at else "CLOSED" if closed_at else "OPEN",
            draft=draft and not ready,
            base_ref=base,
            head_ref=head,
            head_sha=f"{number:040d}",
            additions=additions,
            deletions=deletions,
            created_at=at(created),
            ready_at=ready_at,
            merged_at=merged_at,
            closed_at=closed_at,
            reverts_number=int(head.split("-")[1]) if revert else None,
        )
        for sha in listed:
            PullRequestCommit.create(pull_request=pr, sha=sha)
        self._touch(at(created), ready_at, merged_at, closed_at, pr=pr, event_type="pull_request")
        return pr

    def review(self, pr, reviewer, when, *, state="APPROVED", kind="REVIEW"):
        Review.create(
            pull_request=pr,
            organization=self.org,
            kind=kind,
            github_id=next(_ids),
            reviewer=self.user(reviewer),
            reviewer_login=reviewer,
            reviewer_is_bot=reviewer.endswith("[bot]"),
            state=state if kind == "REVIEW" else None,
            submitted_at=at(when),
        )
        refresh_review_times(PullRequest.get_by_id(pr.id))
        event_type = "pull_request_review" if kind == "REVIEW" else "pull_request_review_comment"
        self._touch(at(when), pr=pr, event_type=event_type)

    def deployment(
        self,
        created,
        state,
        finished,
        *,
        environment="production",
        kind="DEPLOYMENT",
        ref="main",
        repo=None,
    ):
        Deployment.create(
            repository=repo or self.repo,
            organization=self.org,
            kind=kind,
            github_id=next(_ids),
            environment=environment,
            sha="d" * 40,
            ref=ref,
            state=state,
            created_at=at(created),
            status_at=at(finished) if finished else None,
            finished_at=at(finished) if finished else None,
        )
        self._touch(at(created), at(finished) if finished else None, event_type="deployment")

    def issue(self, number, author, created, *, labels=(), closed=None, closer=None, repo=None):
        issue = Issue.create(
            repository=repo or self.repo,
            organization=self.org,
            number=number,
            author=self.user(author),
            author_login=author,
            labels=list(labels),
            state="CLOSED" if closed else "OPEN",
            created_at=at(created),
            closed_at=at(closed) if closed else None,
        )
        if closed:
            IssueClosure.create(
                issue=issue,
                organization=self.org,
                repository=repo or self.repo,
                closed_at=at(closed),
                closer=self.user(closer) if closer else None,
                closer_login=closer,
                closer_is_bot=bool(closer and closer.endswith("[bot]")),
            )
        self._touch(at(created), at(closed) if closed else None, event_type="issues")
        return issue
