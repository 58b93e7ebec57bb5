"""`devmetrics login-link` and the accounts route that consumes it: one-time, expiring,
never an open redirect, refused in production; and the dashboard page's own access rules
(session cookie, membership) on the real services."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests

from devmetrics.cli.login_link import create_login_link
from services.accounts import logic
from shared import crypto
from shared.config import Settings
from shared.errors import NotFound
from shared.models import AuditLog, LoginLink, Session, User
from tests.conftest import run_cli

PATH = "/api/v1/auth/login-link/"


@pytest.fixture
def alice(seeded):
    return User.get(User.login == "alice")


def metrics_url(client) -> str:
    return client.application.extensions["devmetrics"]["settings"].service_urls["metrics"]


def use(client, token, next_url=None):
    query = {} if next_url is None else {"next": next_url}
    return client.get(PATH + token, query_string=query)


def test_link_signs_in_once_and_redirects_to_the_dashboard(accounts_client, alice):
    token = create_login_link(alice)
    dashboard = metrics_url(accounts_client) + "/dashboard/techcorp?from=2026-11-01"
    response = use(accounts_client, token, dashboard)

    assert response.status_code == 303
    assert response.headers["Location"] == dashboard
    assert response.headers["Cache-Control"] == "no-store"
    cookie = next(
        c for c in response.headers.getlist("Set-Cookie") if c.startswith("devmetrics_session=")
    )
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    session_token = cookie.split(";")[0].split("=", 1)[1]
    session = Session.get(Session.token_digest == crypto.token_digest(session_token))
    assert session.user_id == alice.id
    assert LoginLink.get(LoginLink.user == alice).used_at is not None
    entry = AuditLog.select().where(AuditLog.action == "auth.signed_in").get()
    assert entry.actor_user_id == alice.id
    assert entry.metadata == {"new_user": False, "session_id": session.id, "method": "login_link"}
    # The session works for the API like a GitHub one.
    me = accounts_client.get("/api/v1/me", headers={"Authorization": f"Bearer {session_token}"})
    assert me.json["user"]["login"] == "alice"

    again = use(accounts_client, token, dashboard)
    assert again.status_code == 400
    assert again.json["message"] == "this sign-in link is unknown, already used or expired"
    assert Session.select().where(Session.user == alice).count() == 1


def test_without_next_it_opens_the_dashboard(accounts_client, alice):
    response = use(accounts_client, create_login_link(alice))
    assert response.status_code == 303
    assert response.headers["Location"] == metrics_url(accounts_client) + "/dashboard"


def test_expired_and_unknown_links_are_refused(accounts_client, alice):
    expired = create_login_link(alice, lifetime=dt.timedelta(seconds=-1))
    for token in (expired, "not-a-real-token"):
        response = use(accounts_client, token)
        assert response.status_code == 400
        assert response.json["message"] == "this sign-in link is unknown, already used or expired"
    assert Session.select().count() == 0


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example/dashboard",
        "//evil.example/dashboard",
        "http://127.0.0.1:8003.evil.example/dashboard",
        "https://127.0.0.1:8003/dashboard",  # our host and port, another scheme
        "javascript:alert(1)",
    ],
)
def test_next_is_only_ever_one_of_our_services(accounts_client, alice, next_url):
    token = create_login_link(alice)
    response = use(accounts_client, token, next_url)
    assert response.status_code == 422
    assert response.json["errors"] == {"next": ["not ours"]}
    assert "Set-Cookie" not in response.headers
    # Refused, and the link is void (no session): a refusal never leaves it usable.
    assert LoginLink.get(LoginLink.user == alice).used_at is not None
    assert Session.select().where(Session.user == alice).count() == 0
    voided = AuditLog.get(AuditLog.action == "auth.login_link_voided")
    assert voided.target_id == str(alice.id)
    assert use(accounts_client, token).status_code == 400


def test_links_are_refused_in_production(alice):
    token = create_login_link(alice)
    production = Settings.from_env({"DEVMETRICS_ENV": "production"})
    with pytest.raises(NotFound, match="disabled in production"):
        logic.sign_in_with_login_link(token, settings=production)
    assert LoginLink.get(LoginLink.user == alice).used_at is None


# The command, and the page, on the real services ----------------------------------------


def test_command_prints_a_link_that_signs_in_on_the_real_services(stack):
    made = stack.cli("login-link", "--user", "Bob", "--org", "startup-inc")
    assert made.returncode == 0, made.stderr
    assert made.stderr == "one-time sign-in link for bob, valid 10 minutes:\n"
    link = urlsplit(made.stdout.strip())
    dashboard = f"{stack.url('metrics')}/dashboard/startup-inc"
    assert f"{link.scheme}://{link.netloc}" == stack.url("accounts")
    assert link.path.startswith(PATH) and len(link.path) - len(PATH) >= 43
    assert parse_qs(link.query) == {"next": [dashboard]}
    assert quote(dashboard, safe="") in made.stdout

    browser = requests.Session()
    page = browser.get(made.stdout.strip(), timeout=10)  # follows the redirect with the cookie
    assert page.status_code == 200 and page.url == dashboard
    assert '<option value="/dashboard/startup-inc" selected>Startup Inc</option>' in page.text
    assert browser.get(made.stdout.strip(), timeout=10).status_code == 400


def test_command_base_url_and_refusals(stack):
    based = stack.cli("login-link", "--user", "alice", "--base-url", "http://localhost:9001/")
    assert based.returncode == 0
    assert based.stdout.startswith(f"http://localhost:9001{PATH}")
    for args, message in [
        (("--user", "nobody"), "error: no user with login 'nobody'\n"),
        (
            ("--user", "charlie", "--org", "alice-personal"),
            "error: charlie is not a member of an organization with slug 'alice-personal'\n",
        ),
    ]:
        refused = stack.cli("login-link", *args)
        assert (refused.returncode, refused.stdout, refused.stderr) == (1, "", message)
    production = run_cli(
        "login-link",
        "--user",
        "alice",
        database_url=stack.database_url,
        env={**stack.env, "DEVMETRICS_ENV": "production"},
    )
    assert production.returncode == 1 and production.stdout == ""
    assert production.stderr == (
        "error: login links are disabled in production (DEVMETRICS_ENV=production)\n"
    )


def test_dashboard_needs_a_session_and_a_membership(stack):
    metrics = stack.url("metrics")
    anonymous = requests.get(f"{metrics}/dashboard/techcorp", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["Content-Type"].startswith("text/html")
    assert f'href="{stack.url("accounts")}/api/v1/auth/github/login"' in anonymous.text
    forged = requests.get(
        f"{metrics}/dashboard/techcorp", cookies={"devmetrics_session": "dms_forged"}, timeout=10
    )
    assert forged.status_code == 401

    browser = requests.Session()
    link = stack.cli("login-link", "--user", "charlie").stdout.strip()
    assert browser.get(link, timeout=10, allow_redirects=False).status_code == 303
    # His first organization: where he has most say (ADMIN of Startup Inc, MEMBER of TechCorp).
    first = browser.get(f"{metrics}/dashboard?from=2026-11-01", timeout=10, allow_redirects=False)
    assert first.status_code == 302
    assert first.headers["Location"] == "/dashboard/startup-inc?from=2026-11-01"
    techcorp = browser.get(f"{metrics}/dashboard/techcorp?from=2026-11-02&to=2026-11-03")
    assert techcorp.status_code == 200
    assert 'value="2026-11-02"' in techcorp.text and 'value="2026-11-03"' in techcorp.text
    for not_his in ("alice-personal", "no-such-org"):
        assert browser.get(f"{metrics}/dashboard/{not_his}", timeout=10).status_code == 404


def test_charting_library_is_served_by_the_metrics_service(stack):
    response = requests.get(
        f"{stack.url('metrics')}/dashboard/assets/vendor/chartjs/chart.umd.js", timeout=10
    )
    assert response.status_code == 200
    assert "javascript" in response.headers["Content-Type"]
    assert response.text.startswith("/*!\n * Chart.js v4.4.9")
