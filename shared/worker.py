"""`devmetrics worker NAME`: a loop that claims jobs of one queue and runs its handler.

Several workers of the same kind may run at once (claims never overlap). SIGTERM or
SIGINT lets the current job finish, then the worker exits; the rest of its batch is
released for another worker at once (not left leased until the lease ends).
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable

from shared import jobs
from shared.database import db
from shared.observability import JOBS, clear_request_id, set_request_id
from shared.storable import unstorable_reason

log = logging.getLogger(__name__)

# Set by SIGTERM/SIGINT in a worker process: queue batches stop between jobs.
STOPPING = threading.Event()

# name -> ("module:function", queue). With a queue, the function handles one Job of it;
# without, it is a batch function (worker_id, limit) -> rows claimed, for work that lives
# in its own table (webhook events). Services add theirs here.
WORKERS: dict[str, tuple[str, str | None]] = {
    "outbox": ("shared.outbox:deliver", "outbox"),
    "events": ("services.activity.processing:process_batch", None),
    "backfill": ("services.activity.backfill:run_job", "backfill"),
    "ai_review": ("services.metrics.ai_review.logic:run_job", "ai_review"),
    "recompute": ("services.metrics.logic:recompute_batch", None),
    "notify": ("services.notifications.delivery:deliver_batch", None),
    "notify-schedule": ("services.notifications.schedule:schedule_batch", None),
    "retention": ("shared.retention:scheduled_batch", None),
}
# Rows claimed per batch. Webhook events are processed a whole batch per transaction with
# shared lookups and bulk writes, so a bigger batch costs far fewer round trips per event.
BATCH_SIZE = 10
BATCH_SIZES: dict[str, int] = {"events": 200}


def batch_for(name: str) -> Callable[[str, int], int]:
    if name not in WORKERS:
        raise KeyError(f"unknown worker {name!r} (known: {', '.join(sorted(WORKERS))})")
    target, queue = WORKERS[name]
    module, _, function = target.partition(":")
    fn = getattr(importlib.import_module(module), function)
    if queue is None:
        return fn
    return lambda worker_id, limit: run_batch(queue, fn, worker_id, limit)


def run_batch(queue: str, handler: Callable, worker_id: str, limit: int = 10) -> int:
    """Claim and run one batch; returns how many jobs were claimed."""
    from shared.outbox import PermanentFailure

    claimed = jobs.claim(queue, worker_id, limit=limit)
    for position, job in enumerate(claimed):
        if STOPPING.is_set():
            # Shutting down: hand the jobs not started back instead of running a whole
            # batch (which against a service that is down takes many seconds each).
            released = sum(jobs.release(rest) for rest in claimed[position:])
            log.info("worker stopping", extra={"released_jobs": released})
            break
        set_request_id(f"job-{queue}-{job.id}")
        try:
            handler(job)
        except PermanentFailure as exc:
            jobs.fail(job, str(exc), permanent=True)
            JOBS.labels(queue, "dead").inc()
            log.error("job failed permanently", extra={"job_id": job.id, "error": str(exc)})
        except Exception as exc:  # any failure: retried with backoff, up to max_attempts
            reason = unstorable_reason(exc)
            if reason is not None:  # fails the same way on every attempt: DEAD at once
                jobs.fail(job, f"permanent: {reason}", permanent=True)
                JOBS.labels(queue, "dead").inc()
                log.error("job failed permanently", extra={"job_id": job.id, "error": reason})
                continue
            status = jobs.fail(job, f"{type(exc).__name__}: {exc}")
            JOBS.labels(queue, "retry" if status == "PENDING" else "dead").inc()
            log.warning(
                "job failed", extra={"job_id": job.id, "error": str(exc), "next": str(status)}
            )
        else:
            jobs.complete(job)
            JOBS.labels(queue, "done").inc()
        finally:
            clear_request_id()
    return len(claimed)


def run(name: str, *, once: bool = False, poll_seconds: float = 1.0, stop=None) -> None:
    batch = batch_for(name)
    stop = stop or threading.Event()
    worker_id = f"{socket.gethostname()}:{os.getpid()}:{name}"
    if threading.current_thread() is threading.main_thread():
        STOPPING.clear()

        def on_signal(*_):
            STOPPING.set()
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
    log.info("worker started", extra={"worker": worker_id})
    while not stop.is_set():
        try:
            claimed = batch(worker_id, BATCH_SIZES.get(name, BATCH_SIZE))
        except Exception as exc:  # the database went away: wait and try again
            log.error("worker cannot claim jobs", extra={"error": str(exc)})
            claimed = 0
            if not db.is_closed() and not db.in_transaction():
                db.close()
        if once:
            break
        if not claimed:
            stop.wait(poll_seconds)
    log.info("worker stopped", extra={"worker": worker_id})
