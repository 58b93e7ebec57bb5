"""Item 12: session cookies (HttpOnly, SameSite, Secure outside development), CSRF refusal
of cookie-authenticated cross-site state changes, security headers on HTML pages."""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.reliability.report import record
from tests.security.conftest import session_for


def session_cookie_of(response) -> str:
    return next(
        c for c in response.headers.getlist("Set-Cookie") if c.startswith("devmetrics_session=")
    )


@pytest.mark.parametrize("environment, secure", [("development", False), ("staging", True)])
def test_session_cookie_flags(seeded, monkeypatch, environment, secure):
    from devmetrics.cli.login_link import create_login_link
    from services.accounts import create_app
    from shared.models import User

    monkeypatch.setenv("DEVMETRICS_ENV", environment)
    monkeypatch.setenv("INTERNAL_API_TOKEN", "test-internal-token-0123456789")
    monkeypatch.delenv("COOKIE_SECURE", raising=False)
    client = create_app({"TESTING": True, "DATABASE": seeded}).test_client()
    link = create_login_link(User.get(User.login == "alice"))
    response = client.get("/api/v1/auth/login-link/" + link)
    assert response.status_code == 303
    cookie = session_cookie_of(response)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert ("; Secure" in cookie) is secure
    record("12 cookies, CSRF, headers", f"session cookie flags ({environment})", passed=True)


def test_production_cookies_are_secure_unless_explicitly_not():
    from shared.config import Settings

    assert Settings.from_env({"DEVMETRICS_ENV": "production"}).cookie_secure is True
    assert Settings.from_env({}).cookie_secure is False  # development: plain http locally
    assert Settings.from_env({"COOKIE_SECURE": "true"}).cookie_secure is True


@pytest.fixture(scope="module")
def browser(secure_stack):
    """A signed-in browser (alice) holding only the session cookie."""
    session = requests.Session()
    session.cookies.set("devmetrics_session", session_for(secure_stack, "alice"))
    return session


def test_cookie_authenticated_cross_site_state_changes_are_refused(secure_stack, browser):
    accounts = secure_stack.url("accounts")
    url = accounts + "/api/v1/orgs"
    refused = [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page"},
        {"Sec-Fetch-Site": "cross-site", "Origin": accounts},
    ]
    for headers in refused:
        name = f"csrf {uuid.uuid4().hex[:8]}"
        response = browser.post(url, json={"name": name}, headers=headers, timeout=10)
        assert response.status_code == 403, (headers, response.text)
        assert response.json()["code"] == 403 and "cross-site" in response.json()["message"]
        mine = browser.get(url, params={"page_size": 100}, timeout=10).json()
        assert name not in {o["name"] for o in mine}
    # Our own pages (any DevMetrics service's origin) may change state with the cookie ...
    for origin in (accounts, secure_stack.url("metrics")):
        made = browser.post(
            url, json={"name": f"ok {uuid.uuid4().hex[:8]}"}, headers={"Origin": origin}, timeout=10
        )
        assert made.status_code == 201, made.text
    # ... and a bearer token is no ambient credential: no origin check.
    token = browser.cookies["devmetrics_session"]
    bearer = requests.post(
        url,
        json={"name": f"bearer {uuid.uuid4().hex[:8]}"},
        headers={"Authorization": f"Bearer {token}", "Origin": "https://evil.example"},
        timeout=10,
    )
    assert bearer.status_code == 201, bearer.text
    # Reading with the cookie from anywhere is still fine (SameSite and CORS guard reads).
    assert browser.get(url, headers={"Origin": "https://evil.example"}, timeout=10).ok
    record(
        "12 cookies, CSRF, headers",
        "cookie-authenticated cross-site POST refused, own origins and bearer allowed",
        passed=True,
        bad_inputs=len(refused),
    )


def test_security_headers_on_html_pages(secure_stack, browser):
    metrics = secure_stack.url("metrics")
    pages = {
        "dashboard (signed in)": browser.get(metrics + "/dashboard/techcorp", timeout=10),
        "dashboard (signed out)": requests.get(metrics + "/dashboard", timeout=10),
    }
    for name in ("accounts", "activity", "metrics", "notifications"):
        pages[f"{name} /docs"] = requests.get(secure_stack.url(name) + "/docs", timeout=10)
    for name, page in pages.items():
        assert page.headers["Content-Type"].startswith("text/html"), name
        csp = page.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp, name
        assert "default-src 'self'" in csp, name
        assert page.headers["X-Frame-Options"] == "DENY", name
        assert page.headers["X-Content-Type-Options"] == "nosniff", name
        assert page.headers["Referrer-Policy"] in ("same-origin", "no-referrer"), name
    # The dashboard runs no inline script: its scripts are same-origin files only.
    dashboard_csp = pages["dashboard (signed in)"].headers["Content-Security-Policy"]
    assert "script-src 'self';" in dashboard_csp and "unsafe-inline" not in dashboard_csp
    api = requests.get(secure_stack.url("accounts") + "/healthz", timeout=10)
    assert api.headers["X-Content-Type-Options"] == "nosniff"
    record("12 cookies, CSRF, headers", "security headers on every HTML page", passed=True)
