"""`devmetrics backfill OWNER/NAME`: import a repository's history from the GitHub API."""

from __future__ import annotations

import datetime as dt
import os

import click

from shared.cli.common import fail, with_database
from shared.models import Repository


@click.command("backfill")
@click.argument("full_name")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Import history from this day (UTC); default: everything, or since the last run.",
)
@with_database
def backfill_cmd(settings, full_name, since):
    """Pull requests (with reviews and commits), issues, default-branch commits and
    deployments, incrementally. Uses GITHUB_TOKEN, else an org OWNER's GitHub token."""
    from services.activity.backfill import backfill

    repo = Repository.get_or_none(Repository.full_name == full_name)
    if repo is None:
        fail(f"no connected repository {full_name!r}")
    since = since.replace(tzinfo=dt.UTC) if since else None

    def progress(state):
        # One status line, rewritten in place (the total is unknown until the last page).
        click.echo(
            f"\r{full_name}: {state['pages']} pages, {state['items']} items, "
            f"rate limit left {state['rate_limit_remaining']}   ",
            nl=False,
            err=True,
        )

    state = backfill(repo, since, token=os.environ.get("GITHUB_TOKEN"), progress=progress)
    click.echo("", err=True)
    click.echo(
        f"done: {state['pages']} pages ({state['not_modified']} unchanged), {state['items']} items"
    )
