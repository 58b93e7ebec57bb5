"""Running a queue's jobs: claim a batch, run each with its handler, record the outcome
(devmetrics/workers.py names the workers and loops over their batches).

Several workers of the same kind may run at once (claims never overlap). STOPPING, set by
SIGTERM or SIGINT in a worker process, lets the current job finish; the rest of its batch
is released for another worker at once (not left leased until the lease ends).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from shared import jobs
from shared.observability import JOBS, clear_request_id, set_request_id
from shared.storable import unstorable_reason

log = logging.getLogger(__name__)

# Set by SIGTERM/SIGINT in a worker process: queue batches stop between jobs.
STOPPING = threading.Event()


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
