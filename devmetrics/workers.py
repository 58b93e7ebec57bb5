"""`devmetrics worker NAME`: which function each worker runs, and the loop that runs it.

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

from shared.database import db
from shared.worker import STOPPING, run_batch

log = logging.getLogger(__name__)

# name -> ("module:function", queue). With a queue, the function handles one Job of it;
# without, it is a batch function (worker_id, limit) -> rows claimed, for work that lives
# in its own table (webhook events). A new worker is added here.
WORKERS: dict[str, tuple[str, str | None]] = {
    "outbox": ("shared.outbox:deliver", "outbox"),
    "events": ("services.activity.processing:process_batch", None),
    "backfill": ("services.activity.backfill:run_job", "backfill"),
    "ai_review": ("services.metrics.ai_review.logic:run_job", "ai_review"),
    "recompute": ("services.metrics.logic:recompute_batch", None),
    "notify": ("services.notifications.delivery:deliver_batch", None),
    "notify-schedule": ("services.notifications.schedule:schedule_batch", None),
    "retention": ("devmetrics.retention:scheduled_batch", None),
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
