"""`devmetrics worker NAME`: run one kind of background worker until SIGTERM/SIGINT."""

from __future__ import annotations

import click

from shared import worker
from shared.cli.common import fail, with_database
from shared.config import Settings
from shared.observability import configure_logging
from shared.startup import check_worker_settings


@click.command("worker")
@click.argument("name")
@click.option("--once", is_flag=True, help="Run one batch and exit (for scripts and tests).")
@click.option("--poll", default=1.0, show_default=True, help="Seconds between empty polls.")
@with_database
def worker_cmd(settings: Settings, name, once, poll):
    """Claim and run jobs of one queue (several workers may run at once)."""
    if name not in worker.WORKERS:
        fail(f"unknown worker {name!r} (known: {', '.join(sorted(worker.WORKERS))})")
    check_worker_settings(settings)  # a ConfigError is one line naming the setting
    configure_logging(f"worker-{name}", settings.log_level)
    worker.run(name, once=once, poll_seconds=poll)
