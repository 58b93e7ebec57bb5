"""What an events batch (or a backfill step, or a re-attribution) changed, and the messages
that tell the other services: the days and pull requests to recompute, alert events, pull
requests to review."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from shared import messages
from shared.messages import ActivityChanged, AIReviewRequested, Event
from shared.models import PullRequest, Repository


class Changes:
    """What a batch touched, per (organization, repository): the metrics service is told."""

    def __init__(self):
        self.days: dict[tuple[int, int], set[str]] = defaultdict(set)
        self.pull_requests: dict[tuple[int, int], set[int]] = defaultdict(set)
        # The webhook event types behind each (organization, repository)'s changes, when
        # every change came through `handling` (the backfill's do not: no types are sent).
        self.event_types: dict[tuple[int, int], set[str]] = defaultdict(set)
        self.events: dict[str, Event] = {}  # event key -> message for the notifications service
        # (organization, pull request id, head sha) to review for risk (metrics service)
        self.reviews: set[tuple[int, int, str]] = set()
        # Why each event given up on (DEAD) was: counted once the batch commits.
        self.dead: list[str] = []

    def notify(self, repo: Repository, event_type: str, key: str, **data):
        """An event the notifications service matches against alert rules."""
        self.events[key] = Event(
            type=event_type,
            organization_id=repo.organization_id,
            key=key,
            data={**messages.repository_fields(repo), **data},
        )

    def handling(self, repo: Repository, event_type: str) -> None:
        """An event of this type is about to be applied (before its handler, so whatever
        it touches is known to come from such an event)."""
        self.event_types[(repo.organization_id, repo.id)].add(event_type)

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
        batch: list[messages.Message] = [
            ActivityChanged(
                organization_id=org_id,
                repository_id=repo_id,
                dates=tuple(dt.date.fromisoformat(day) for day in sorted(days)),
                pull_request_ids=tuple(sorted(self.pull_requests.get((org_id, repo_id), ()))),
                # What the metrics service may narrow its re-derivation by.
                event_types=tuple(sorted(self.event_types[(org_id, repo_id)]))
                if self.event_types.get((org_id, repo_id))
                else None,
            )
            for (org_id, repo_id), days in self.days.items()
        ]
        batch.extend(self.events.values())
        batch.extend(
            AIReviewRequested(organization_id=org_id, pull_request_id=pr_id, head_sha=head_sha)
            for org_id, pr_id, head_sha in sorted(self.reviews)
        )
        messages.publish_many(batch)
