"""Metrics business logic (no Flask here)."""

from __future__ import annotations

import datetime as dt

from shared import jobs
from shared.models import Organization, TeamMetric
from shared.outbox import MessageRejected

RECOMPUTE_QUEUE = "recompute"


def daily_team_metrics(organization, start: dt.date | None, end: dt.date | None):
    query = TeamMetric.select().where(TeamMetric.organization == organization)
    if start:
        query = query.where(TeamMetric.date >= start)
    if end:
        query = query.where(TeamMetric.date <= end)
    return query.order_by(TeamMetric.date)


def on_activity_changed(payload: dict, message_id: str) -> None:
    """Inbox handler for `activity.changed` {organization_id, dates: [YYYY-MM-DD, ...]}:
    one recompute job per (organization, day), merged with any still pending."""
    try:
        org_id = int(payload["organization_id"])
        days = sorted({dt.date.fromisoformat(d) for d in payload["dates"]})
    except (KeyError, TypeError, ValueError) as exc:
        raise MessageRejected(
            f"activity.changed needs organization_id and ISO dates: {exc}"
        ) from None
    if not Organization.select().where(Organization.id == org_id).exists():
        return  # the organization was deleted meanwhile: nothing to recompute
    for day in days:
        jobs.enqueue(
            RECOMPUTE_QUEUE,
            {"organization_id": org_id, "date": day.isoformat(), "message_id": message_id},
            dedupe_key=f"{org_id}:{day.isoformat()}",
            organization=org_id,
        )
