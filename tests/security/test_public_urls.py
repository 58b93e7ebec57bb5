"""Issue 17 item 14 (first half): every URL the services hand out (the OAuth `redirect_uri`,
the webhook URL of a connected repository) comes from configuration, never from the
request's Host header; production with GitHub sign-in configured refuses to start without
GITHUB_REDIRECT_URI (or ACCOUNTS_PUBLIC_URL)."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import requests

from tests.helpers import stop
from tests.reliability.report import record
from tests.security.conftest import github_sign_in
from tests.security.processes import start_or_refusal

CALLBACK = "/api/v1/auth/github/callback"
FORGED = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}


def redirect_uri_of(response) -> str:
    assert response.status_code == 302, response.text
    return parse_qs(urlsplit(response.headers["Location"]).query)["redirect_uri"][0]


def test_a_forged_host_never_becomes_a_handed_out_url(secure_stack, fake_github_server):
    accounts, activity = secure_stack.url("accounts"), secure_stack.url("activity")
    login = requests.get(
        f"{accounts}/api/v1/auth/github/login", headers=FORGED, allow_redirects=False, timeout=10
    )
    assert redirect_uri_of(login) == accounts + CALLBACK  # ACCOUNTS_URL, not evil.example

    session = github_sign_in(secure_stack, fake_github_server, "host-forger", 9_900_014)[0]
    as_user = {"Authorization": f"Bearer {session}"}
    org = requests.post(
        f"{accounts}/api/v1/orgs", json={"name": "Host Forgers"}, headers=as_user, timeout=10
    )
    assert org.status_code == 201, org.text
    full_name = f"host-forgers/site-{time.time_ns()}"
    previous = fake_github_server.rest.get("repository")
    fake_github_server.rest["repository"] = {
        "id": 9_900_140,
        "full_name": full_name,
        "name": full_name.split("/")[1],
        "private": False,
        "default_branch": "main",
    }
    try:
        connected = requests.post(
            f"{activity}/api/v1/orgs/{org.json()['slug']}/repositories",
            json={"full_name": full_name},
            headers={**as_user, **FORGED},
            timeout=10,
        )
    finally:
        if previous is None:
            fake_github_server.rest.pop("repository", None)
        else:
            fake_github_server.rest["repository"] = previous
    assert connected.status_code == 201, connected.text
    assert connected.json()["webhook_url"] == activity + "/webhooks/github"
    record(
        "17.14 public URLs",
        "forged Host (and X-Forwarded-Host) on the GitHub sign-in start and on connecting a "
        "repository: redirect_uri and webhook URL come from configuration",
        passed=True,
        bad_inputs=2,
    )


def test_production_needs_a_configured_callback_for_github_sign_in(secure_stack, tmp_path):
    production = {
        **secure_stack.env,
        "DEVMETRICS_ENV": "production",  # the stack's env has its own token and key
    }
    production.pop("GITHUB_REDIRECT_URI", None)
    production.pop("ACCOUNTS_PUBLIC_URL", None)
    assert production["GITHUB_CLIENT_ID"]  # GitHub sign-in is configured
    refused = start_or_refusal("accounts", production, tmp_path)
    if refused[0] is None:
        stop(refused[1])
        raise AssertionError("production accounts started without a configured callback")
    code, stdout, stderr = refused
    assert code != 0 and stdout == ""
    assert stderr.splitlines() == [
        "error: GITHUB_REDIRECT_URI (or ACCOUNTS_PUBLIC_URL) must be set when "
        "DEVMETRICS_ENV=production and GitHub sign-in is configured (GITHUB_CLIENT_ID)"
    ]

    public = "https://accounts.devmetrics.example"
    started = start_or_refusal(
        "accounts", {**production, "ACCOUNTS_PUBLIC_URL": public + "/"}, tmp_path
    )
    assert started[0] is None, started
    _, process, port = started
    try:
        login = requests.get(
            f"http://127.0.0.1:{port}/api/v1/auth/github/login",
            headers=FORGED,
            allow_redirects=False,
            timeout=10,
        )
    finally:
        stop(process)
    assert redirect_uri_of(login) == public + CALLBACK
    record(
        "17.14 public URLs",
        "production accounts with GITHUB_CLIENT_ID and no GITHUB_REDIRECT_URI / "
        "ACCOUNTS_PUBLIC_URL refuses to start (one line); with ACCOUNTS_PUBLIC_URL a forged "
        "Host gets the configured redirect_uri",
        passed=True,
        bad_inputs=2,
    )
