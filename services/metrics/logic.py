"""Metrics business logic (no Flask here): what the inbox and the workers do."""

from __future__ import annotations

import datetime as dt
import time

from services.metrics import engine
from shared import jobs
from shared.config import Settings
from shared.messages import ActivityChanged
from shared.models import Organization, Repository, utcnow
from shared.outbox import PermanentFailure
from shared.worker import run_batch

RECOMPUTE_QUEUE = "recompute"


def on_activity_changed(payload: dict, message_id: str) -> None:
    """Inbox handler for `activity.changed` {organization_id, repository_id, dates,
    pull_request_ids, event_types (optional: the webhook events behind it)}: one recompute
    job, applied once (the inbox dedupes messages)."""
    change = ActivityChanged.from_payload(payload)
    org_id = change.organization_id
    if not Organization.select().where(Organization.id == org_id).exists():
        return  # the organization was deleted meanwhile: nothing to recompute
    jobs.enqueue(
        RECOMPUTE_QUEUE,
        {
            "organization_id": org_id,
            "repository_ids": [change.repository_id],
            "dates": [d.isoformat() for d in change.dates],
            "pull_request_ids": list(change.pull_request_ids),
            **({"event_types": list(change.event_types)} if change.event_types is not None else {}),
        },
        dedupe_key=f"message:{message_id}",
        organization=org_id,
        rearm=False,
    )


def run_recompute_job(job) -> None:
    payload = job.payload
    org_id = payload["organization_id"]
    if not Organization.select().where(Organization.id == org_id).exists():
        raise PermanentFailure(f"organization {org_id} no longer exists")
    engine.recompute(
        org_id,
        repository_ids=payload.get("repository_ids"),
        dates=[dt.date.fromisoformat(d) for d in payload.get("dates") or []],
        pull_request_ids=payload.get("pull_request_ids") or [],
        event_types=payload.get("event_types"),
    )


def schedule_recent(now: dt.datetime | None = None, every_seconds: int = 900) -> int:
    """The scheduled pass: once per `every_seconds` slot, recompute today and yesterday of
    every organization with repositories (late events, and a row for each new day)."""
    now = now or utcnow()
    slot = int(now.timestamp()) // every_seconds
    today = now.date()
    org_ids = [
        org_id for (org_id,) in Repository.select(Repository.organization).distinct().tuples()
    ]
    for org_id in org_ids:
        jobs.enqueue(
            RECOMPUTE_QUEUE,
            {
                "organization_id": org_id,
                "dates": [(today - dt.timedelta(days=1)).isoformat(), today.isoformat()],
            },
            dedupe_key=f"scheduled:{org_id}:{slot}",
            organization=org_id,
            rearm=False,
        )
    return len(org_ids)


_last_schedule = 0.0


def recompute_batch(worker_id: str, limit: int = 10) -> int:
    """The `recompute` worker: the scheduled pass when it is due, then queued jobs."""
    global _last_schedule
    every = Settings.from_env().metrics_schedule_seconds
    if time.monotonic() - _last_schedule >= min(every, 60):
        schedule_recent(every_seconds=every)  # idempotent per slot across workers
        _last_schedule = time.monotonic()
    return run_batch(RECOMPUTE_QUEUE, run_recompute_job, worker_id, limit)
