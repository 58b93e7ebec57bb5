"""`devmetrics login-link`: a one-time sign-in URL for local use, where no GitHub OAuth app
is set up. Refused in production."""

from __future__ import annotations

import datetime as dt
import secrets
from urllib.parse import quote

import click
import peewee as pw

from devmetrics.cli.common import fail, with_database
from shared import crypto
from shared.database import db
from shared.models import LoginLink, Organization, User, UserOrganization, utcnow

LINK_LIFETIME = dt.timedelta(minutes=10)
CONSUME_PATH = "/api/v1/auth/login-link/"


def create_login_link(user: User, lifetime: dt.timedelta = LINK_LIFETIME) -> str:
    """Store a new link for `user` and return its token (only its SHA-256 is kept)."""
    token = secrets.token_urlsafe(32)
    with db.atomic():
        LoginLink.create(
            user=user,
            token_digest=crypto.token_digest(token),
            expires_at=utcnow() + lifetime,
        )
    return token


@click.command("login-link")
@click.option("--user", "login", required=True, help="GitHub login of the person signing in.")
@click.option("--org", "org_slug", help="Open this organization's dashboard.")
@click.option(
    "--base-url",
    help="Where browsers reach the accounts service (default: ACCOUNTS_PUBLIC_URL, ACCOUNTS_URL).",
)
@with_database
def login_link_cmd(settings, login, org_slug, base_url):
    """Print a sign-in URL for USER, valid once for 10 minutes, that opens the dashboard."""
    if settings.is_production:
        fail("login links are disabled in production (DEVMETRICS_ENV=production)")
    user = User.get_or_none(pw.fn.LOWER(User.login) == login.lower())
    if user is None:
        fail(f"no user with login {login!r}")
    dashboard = settings.public_url("metrics") + "/dashboard"
    if org_slug is not None:
        is_member = (
            UserOrganization.select()
            .join(Organization)
            .where((UserOrganization.user == user) & (Organization.slug == org_slug))
            .exists()
        )
        if not is_member:
            fail(f"{user.login} is not a member of an organization with slug {org_slug!r}")
        dashboard += f"/{org_slug}"
    token = create_login_link(user)
    accounts = (base_url or settings.public_url("accounts")).rstrip("/")
    click.echo(f"one-time sign-in link for {user.login}, valid 10 minutes:", err=True)
    click.echo(f"{accounts}{CONSUME_PATH}{token}?next={quote(dashboard, safe='')}")
