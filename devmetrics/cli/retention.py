"""`devmetrics retention run [--dry-run]`: delete data older than its retention policy."""

from __future__ import annotations

import click

from devmetrics.cli.common import with_database


@click.group("retention")
def retention_group():
    """Data retention (policies: RETENTION_*_DAYS and organization settings)."""


@retention_group.command("run")
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
@with_database
def run_cmd(settings, dry_run):
    """Delete expired events, activity and audit entries in bounded batches, printing the
    rows per table and organization. Metric tables are never touched."""
    from devmetrics import retention

    report = retention.run(dry_run=dry_run, settings=settings)
    for line in report.lines():
        click.echo(line)
