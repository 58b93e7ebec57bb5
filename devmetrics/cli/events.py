"""`devmetrics events replay`: process stored webhook events again."""

from __future__ import annotations

import datetime as dt

import click

from devmetrics.cli.common import fail, with_database
from shared.models import EventStatus, Repository


@click.group("events")
def events_group():
    """Stored GitHub webhook events."""


@events_group.command("replay")
@click.option("--since", type=click.DateTime(), help="Only events received at or after (UTC).")
@click.option(
    "--status",
    type=click.Choice([s.value for s in EventStatus]),
    help="Only events in this state (e.g. FAILED, DEAD).",
)
@click.option("--repository", "full_name", help="Only this repository (owner/name).")
@with_database
def replay_cmd(settings, since, status, full_name):
    """Queue events for processing again; the events worker picks them up. Processing is
    idempotent, so a replay converges on the same rows."""
    from services.activity.processing import replay

    repository = None
    if full_name:
        repository = Repository.get_or_none(Repository.full_name == full_name)
        if repository is None:
            fail(f"no repository {full_name!r}")
    since = since.replace(tzinfo=dt.UTC) if since else None
    count = replay(since=since, status=status, repository=repository)
    click.echo(f"{count} event(s) queued for processing")
