"""The metrics engine: derived data per repository (`derive`), then the daily tables per
organization (`daily`). Incremental runs recompute only the days a change touches, from
the earliest of them to today; a full run rebuilds every day. Both give the same rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from services.metrics.engine import daily
from services.metrics.engine.derive import refresh_repository
from shared import messages
from shared.database import db
from shared.models import Incident, Repository, utcnow
from shared.sql import advisory_lock, lock_repositories, without_jit

FULL_CHUNK_DAYS = 31
# Webhook events that change only the pull requests they name (their rows, reviews and
# comments) or issues: no commit pushed, no deployment. A change made of these alone
# re-derives those pull requests, not the whole repository (see refresh_repository).
PULL_REQUEST_LOCAL_EVENTS = frozenset(
    {
        "pull_request",
        "pull_request_review",
        "pull_request_review_comment",
        "pull_request_review_thread",
        "issue_comment",
        "issues",
    }
)


@dataclass
class Recomputed:
    start: dt.date | None
    end: dt.date | None
    incidents_opened: int


def today() -> dt.date:
    return utcnow().date()


def _announce(incidents: list[Incident]) -> None:
    """New incidents go to the notifications service (alert rules match on them)."""
    if not incidents:
        return
    repos = {
        repo.id: repo
        for repo in Repository.select().where(
            Repository.id.in_({incident.repository_id for incident in incidents})
        )
    }
    events = []
    for incident in incidents:
        repo = repos[incident.repository_id]
        events.append(
            messages.Event(
                type="incident.opened",
                organization_id=incident.organization_id,
                key=f"incident.opened:{incident.kind}:{incident.source_id}",
                data={
                    "incident_id": incident.id,
                    "kind": str(incident.kind),
                    "title": incident.title,
                    "opened_at": incident.opened_at.isoformat(),
                    **messages.repository_fields(repo),
                },
            )
        )
    messages.publish_many(events)


def _repositories(organization_id: int, repository_ids: Iterable[int] | None):
    query = Repository.select().where(Repository.organization == organization_id)
    if repository_ids is not None:
        query = query.where(Repository.id.in_(list(repository_ids)))
    return list(query.order_by(Repository.id))


def recompute(
    organization_id: int,
    *,
    repository_ids: Iterable[int] | None = None,
    dates: Iterable[dt.date] = (),
    pull_request_ids: Iterable[int] = (),
    event_types: Iterable[str] | None = None,
) -> Recomputed:
    """Incremental: refresh the repositories' derived data, then recompute every day from
    the earliest day touched (by the change or by what it re-derived) to today.
    `event_types`: the kinds of webhook events behind the change, when known."""
    local = event_types is not None and set(event_types) <= PULL_REQUEST_LOCAL_EVENTS
    with db.atomic():
        advisory_lock("metrics", organization_id)
        without_jit()
        days = set(dates)
        new_incidents = []
        repos = _repositories(organization_id, repository_ids)
        lock_repositories([repo.id for repo in repos], exclusive=True)
        for repo in repos:
            derived = refresh_repository(repo, pull_request_ids, local=local)
            days |= derived.days
            new_incidents += derived.new_incidents
        _announce(new_incidents)
        if not days:
            return Recomputed(None, None, len(new_incidents))
        start, end = min(days), max(max(days), today())
        daily.write(organization_id, start, end, daily.compute(organization_id, start, end))
        return Recomputed(start, end, len(new_incidents))


def recompute_full(
    organization_id: int,
    *,
    since: dt.date | None = None,
    progress: Callable[[int, int], None] | None = None,
    announce: bool = True,
) -> Recomputed:
    """Rebuild everything: every repository's derived data, then every day from `since`
    (default: the first activity) to today, a month per transaction. `announce=False`
    keeps new incidents from alerting anyone (demo data)."""
    new_incidents = []
    with db.atomic():
        advisory_lock("metrics", organization_id)
        without_jit()
        repos = _repositories(organization_id, None)
        lock_repositories([repo.id for repo in repos], exclusive=True)
        for repo in repos:
            new_incidents += refresh_repository(repo).new_incidents
        if announce:
            _announce(new_incidents)
    firsts = daily.first_activity(organization_id)
    first = firsts[0]
    start = max(filter(None, [since, first]), default=None)
    if start is None:
        return Recomputed(None, None, len(new_incidents))
    end = max(today(), start)
    chunks = []
    cursor = start
    while cursor <= end:
        chunk_end = min(end, cursor + dt.timedelta(days=FULL_CHUNK_DAYS - 1))
        chunks.append((cursor, chunk_end))
        cursor = chunk_end + dt.timedelta(days=1)
    for done, (chunk_start, chunk_end) in enumerate(chunks, 1):
        with db.atomic():
            advisory_lock("metrics", organization_id)
            without_jit()
            figures = daily.compute(organization_id, chunk_start, chunk_end)
            daily.write(organization_id, chunk_start, chunk_end, figures, firsts)
        if progress:
            progress(done, len(chunks))
    return Recomputed(start, end, len(new_incidents))
