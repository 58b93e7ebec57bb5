"""`devmetrics worker NAME`: run one kind of background worker until SIGTERM/SIGINT."""

from __future__ import annotations

import click

from devmetrics import workers
from devmetrics.cli.common import fail, with_database
from shared.config import Settings
from shared.observability import configure_logging, serve_metrics
from shared.startup import check_worker_settings


@click.command("worker")
@click.argument("name")
@click.option("--once", is_flag=True, help="Run one batch and exit (for scripts and tests).")
@click.option("--poll", default=1.0, show_default=True, help="Seconds between empty polls.")
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    envvar="WORKER_METRICS_PORT",
    help="Serve this worker's Prometheus metrics on this port (/metrics).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    envvar="WORKER_METRICS_HOST",
    help="The address --metrics-port listens on.",
)
@with_database
def worker_cmd(settings: Settings, name, once, poll, metrics_port, metrics_host):
    """Claim and run jobs of one queue (several workers may run at once)."""
    if name not in workers.WORKERS:
        fail(f"unknown worker {name!r} (known: {', '.join(sorted(workers.WORKERS))})")
    check_worker_settings(settings)  # a ConfigError is one line naming the setting
    configure_logging(f"worker-{name}", settings.log_level)
    if metrics_port:
        try:
            serve_metrics(metrics_host, metrics_port)
        except OSError as exc:
            fail(f"cannot serve metrics on {metrics_host}:{metrics_port}: {exc.strerror}")
    workers.run(name, once=once, poll_seconds=poll)
