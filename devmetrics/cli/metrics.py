"""`devmetrics metrics recompute`: rebuild an organization's metrics from its activity."""

from __future__ import annotations

import click

from devmetrics.cli.common import fail, with_database
from shared.models import Organization


@click.group("metrics")
def metrics_group():
    """Daily metrics, DORA keys and cycle time."""


@metrics_group.command("recompute")
@click.option("--org", "org_ref", required=True, help="Organization slug (or id).")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="First day (UTC) to rebuild; default: the organization's first activity.",
)
@with_database
def recompute_cmd(settings, org_ref, since):
    """Re-derive deployments, pull request stages and incidents, then rebuild every
    daily row up to today (the same rows the incremental recompute gives)."""
    from services.metrics.engine import recompute_full

    org = Organization.by_ref(org_ref)
    if org is None:
        fail(f"no organization {org_ref!r}")
    with click.progressbar(length=1, label=f"{org.slug}: recomputing", file=None) as bar:

        def progress(done: int, total: int):
            bar.length = total
            bar.update(done - bar.pos)

        result = recompute_full(org.id, since=since.date() if since else None, progress=progress)
    if result.start is None:
        click.echo(f"{org.slug}: no activity yet, nothing to compute")
    else:
        click.echo(f"{org.slug}: recomputed {result.start} to {result.end}")
