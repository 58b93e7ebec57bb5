"""Job queues in the database: enqueue in the caller's transaction, claim safely from any
number of workers, finish or retry with backoff.

Claiming uses `FOR UPDATE SKIP LOCKED` on PostgreSQL and an IMMEDIATE transaction on SQLite
(which takes the single write lock first, so two workers never claim the same row). A
claim is a lease: a worker that dies leaves its jobs to be claimed again once it expires.
"""

from __future__ import annotations

import datetime as dt

import peewee as pw

from shared.database import backend_name, db
from shared.models import Job, JobStatus, utcnow

DEFAULT_LEASE_SECONDS = 60
MAX_BACKOFF_SECONDS = 15 * 60


def job_row(queue, payload, dedupe_key=None, organization=None, run_at=None, max_attempts=10):
    """The columns of a new PENDING job (for enqueue, and for bulk inserts of new jobs)."""
    return {
        "queue": queue,
        "dedupe_key": dedupe_key,
        "payload": payload,
        "organization": organization,
        "status": JobStatus.PENDING,
        "attempts": 0,
        "max_attempts": max_attempts,
        "run_at": run_at or utcnow(),
    }


def enqueue(
    queue: str,
    payload: dict,
    *,
    dedupe_key: str | None = None,
    organization=None,
    run_at: dt.datetime | None = None,
    max_attempts: int = 10,
    rearm: bool = True,
) -> None:
    """Add a job. With a dedupe_key, an existing job of that key is re-armed instead (so a
    burst of changes costs one run, and a change during a run still causes another one),
    or, with `rearm=False`, left as it is (a job that must run once per key)."""
    row = job_row(queue, payload, dedupe_key, organization, run_at, max_attempts)
    query = Job.insert(**row)
    if dedupe_key is not None and not rearm:
        query = query.on_conflict_ignore()
    elif dedupe_key is not None:
        query = query.on_conflict(
            conflict_target=[Job.queue, Job.dedupe_key],
            update={
                Job.payload: row["payload"],
                Job.status: JobStatus.PENDING,
                Job.attempts: 0,
                Job.run_at: row["run_at"],
                Job.last_error: None,
            },
        )
    with db.atomic():
        query.execute()


def lease(
    model, due, worker_id: str, *, limit: int, lease_seconds: int, running_status, order_by
) -> list:
    """Lease up to `limit` rows of `model` matching `due` to `worker_id`: they get
    `running_status`, `locked_by`, `locked_until` and one more attempt. Safe with any
    number of concurrent workers; returns the leased rows."""
    now = utcnow()
    postgres = backend_name() == "postgresql"
    with db.atomic() if postgres else db.atomic("IMMEDIATE"):
        candidates = model.select(model.id).where(due).order_by(*order_by).limit(limit)
        if postgres:
            candidates = candidates.for_update(skip_locked=True)
        ids = [row.id for row in candidates]
        if not ids:
            return []
        (
            model.update(
                {
                    model.status: running_status,
                    model.locked_by: worker_id,
                    model.locked_until: now + dt.timedelta(seconds=lease_seconds),
                    model.attempts: model.attempts + 1,
                }
            )
            .where(model.id.in_(ids))
            .execute()
        )
    return list(model.select().where(model.id.in_(ids)).order_by(*order_by))


def claim(queue: str, worker_id: str, limit: int = 10, lease_seconds: int = DEFAULT_LEASE_SECONDS):
    """Lease up to `limit` due jobs of `queue` to `worker_id`; returns them."""
    now = utcnow()
    due = (Job.queue == queue) & (
        ((Job.status == JobStatus.PENDING) & (Job.run_at <= now))
        | ((Job.status == JobStatus.RUNNING) & (Job.locked_until < now))
    )
    return lease(
        Job,
        due,
        worker_id,
        limit=limit,
        lease_seconds=lease_seconds,
        running_status=JobStatus.RUNNING,
        order_by=(Job.run_at, Job.id),
    )


def _owned(job: Job):
    # A job re-armed by enqueue() or re-leased after expiry is no longer ours to finish.
    return (
        (Job.id == job.id)
        & (Job.status == JobStatus.RUNNING)
        & (Job.locked_by == job.locked_by)
        & (Job.attempts == job.attempts)
    )


def complete(job: Job) -> bool:
    with db.atomic():
        return bool(
            Job.update(status=JobStatus.DONE, finished_at=utcnow(), locked_until=None)
            .where(_owned(job))
            .execute()
        )


def release(job: Job) -> bool:
    """Give a leased job back unstarted (its worker is stopping): due again at once, and
    the attempt it was leased with does not count."""
    with db.atomic():
        return bool(
            Job.update(
                status=JobStatus.PENDING,
                locked_by=None,
                locked_until=None,
                attempts=Job.attempts - 1,
            )
            .where(_owned(job))
            .execute()
        )


def backoff_seconds(attempts: int) -> int:
    return min(MAX_BACKOFF_SECONDS, 2 ** max(0, attempts - 1))


def fail(job: Job, error: str, *, permanent: bool = False) -> JobStatus:
    """Record a failed attempt: retry later with exponential backoff, or give up (DEAD)."""
    dead = permanent or job.attempts >= job.max_attempts
    status = JobStatus.DEAD if dead else JobStatus.PENDING
    with db.atomic():
        (
            Job.update(
                status=status,
                last_error=error[:4000],
                locked_until=None,
                run_at=utcnow() + dt.timedelta(seconds=backoff_seconds(job.attempts)),
                finished_at=utcnow() if dead else None,
            )
            .where(_owned(job))
            .execute()
        )
    return status


def counts(queue: str) -> dict[str, int]:
    rows = (
        Job.select(Job.status, pw.fn.COUNT(Job.id))
        .where(Job.queue == queue)
        .group_by(Job.status)
        .tuples()
    )
    return {str(status): n for status, n in rows}
