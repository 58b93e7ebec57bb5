"""`devmetrics apikey create`: bootstrap the first key of an organization."""

from __future__ import annotations

import datetime as dt

import click

from devmetrics.cli.common import fail, with_database
from shared.models import Organization, utcnow
from shared.permissions import SCOPES


@click.group("apikey")
def apikey_group():
    """API keys."""


@apikey_group.command("create")
@click.option("--org", "org_slug", required=True, help="Organization slug.")
@click.option("--name", required=True, help="What the key is for.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(SCOPES),
    default=("metrics:read", "activity:read", "notifications:read"),
    show_default=True,
    help="Repeat for several scopes.",
)
@click.option("--expires-in-days", type=click.IntRange(min=1), help="Expiry (default: never).")
@with_database
def create_cmd(settings, org_slug, name, scopes, expires_in_days):
    """Create an organization key and print it once (only its prefix and bcrypt hash are
    stored). It belongs to the organization, not to a person: no one's leaving or demotion
    revokes it; revoke it through the API when it is no longer needed."""
    from services.accounts.logic import create_api_key

    org = Organization.get_or_none(Organization.slug == org_slug)
    if org is None:
        fail(f"no organization with slug {org_slug!r}")
    expires_at = utcnow() + dt.timedelta(days=expires_in_days) if expires_in_days else None
    key, plaintext = create_api_key(org, name, list(scopes), expires_at=expires_at)
    click.echo(f"created API key {key.name!r} for {org.slug} (prefix {key.prefix})")
    click.echo(f"scopes: {', '.join(key.scopes)}")
    click.echo("the key is shown once, store it now:")
    click.echo(plaintext)
