"""`devmetrics backfill OWNER/NAME`: import a repository's history from the GitHub API."""

from __future__ import annotations

import datetime as dt
import os

import click
import peewee as pw

from devmetrics.cli.common import fail, with_database
from shared.models import Organization, Repository


@click.command("backfill")
@click.argument("full_name")
@click.option("--org", "org_slug", help="The organization, when several connected it.")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Import history from this day (UTC); default: everything, or since the last run.",
)
@with_database
def backfill_cmd(settings, full_name, org_slug, since):
    """Pull requests (with reviews and commits), issues, default-branch commits and
    deployments, incrementally. Uses GITHUB_TOKEN, else the repository's token owner's
    GitHub token (never another member's)."""
    from services.activity.backfill import backfill

    query = (
        Repository.select(Repository, Organization)
        .join(Organization)
        .where(pw.fn.LOWER(Repository.full_name) == full_name.lower())
    )
    if org_slug:
        query = query.where(Organization.slug == org_slug)
    found = list(query)
    if not found:
        fail(f"no connected repository {full_name!r}" + (f" in {org_slug!r}" if org_slug else ""))
    if len(found) > 1:
        slugs = ", ".join(sorted(r.organization.slug for r in found))
        fail(f"{full_name} is connected by several organizations ({slugs}): name one with --org")
    repo = found[0]
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
