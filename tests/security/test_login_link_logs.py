"""Issue 17 item 13: a login link's token (a URL path segment) and the GitHub callback's
`code` and `state` (its query) never reach a log line, neither gunicorn's access log nor the
service's own JSON log; and a link is spent by the first request that reaches it: a sign-in,
or a refusal for a `next` that is not ours (the link is then void, so a refused request never
leaves a usable token behind, wherever its URL was logged)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from shared.observability import redact_query, redact_target, redact_text
from tests.helpers import wait_until
from tests.reliability.report import record

LINK_PATH = "/api/v1/auth/login-link/"


def new_link(stack, login: str) -> tuple[str, str]:
    """(URL without query, token) of a fresh link made by `devmetrics login-link`."""
    made = stack.cli("login-link", "--user", login)
    assert made.returncode == 0, made.stderr
    url = made.stdout.strip().split("?")[0]
    return url, url.rsplit("/", 1)[1]


def access_lines(log: str, path: str) -> list[str]:
    return [line for line in log.splitlines() if '"access":true' in line and path in line]


def test_login_link_tokens_and_oauth_codes_never_reach_a_log(secure_stack, fake_github_server):
    accounts = secure_stack.url("accounts")
    dashboard = secure_stack.url("metrics") + "/dashboard"
    before = len(secure_stack.log("accounts"))

    # A link refused for its `next`: 422, and the link is void afterwards.
    refused_url, refused_token = new_link(secure_stack, "charlie")
    refused = requests.get(
        refused_url, params={"next": "https://evil.example/"}, allow_redirects=False, timeout=10
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"] == {"next": ["not ours"]}
    again = requests.get(refused_url, params={"next": dashboard}, allow_redirects=False)
    assert again.status_code == 400, again.text  # void: no session from a refused link
    assert "devmetrics_session" not in again.cookies

    # A link used as meant: signed in once, refused after.
    good_url, good_token = new_link(secure_stack, "charlie")
    signed_in = requests.get(good_url, params={"next": dashboard}, allow_redirects=False)
    assert signed_in.status_code == 303 and signed_in.cookies.get("devmetrics_session")
    assert requests.get(good_url, allow_redirects=False, timeout=10).status_code == 400

    # A variant path that does not reach the route (another case): the token stays usable,
    # so it must not be logged either.
    variant_url, variant_token = new_link(secure_stack, "charlie")
    variant = variant_url.replace("login-link", "LOGIN-LINK")
    assert requests.get(variant, allow_redirects=False, timeout=10).status_code == 404

    # GitHub's callback: code and state in the query.
    fake_github_server.add_user("log-keeper-code-7d41", "log-keeper", 9_900_013, "Log Keeper")
    browser = requests.Session()
    start = browser.get(f"{accounts}/api/v1/auth/github/login", allow_redirects=False)
    state = parse_qs(urlsplit(start.headers["Location"]).query)["state"][0]
    done = browser.get(
        f"{accounts}/api/v1/auth/github/callback",
        params={"code": "log-keeper-code-7d41", "state": state},
        timeout=10,
    )
    assert done.status_code == 200, done.text

    def all_logged(log: str) -> bool:
        # The requests were logged, without their secrets (gunicorn writes an access line
        # just after its response, so the last ones may still be on their way).
        return (
            len(access_lines(log, LINK_PATH + "REDACTED")) >= 4
            and len(access_lines(log, "/api/v1/auth/LOGIN-LINK/REDACTED")) == 1
            and bool(access_lines(log, "code=REDACTED&state=REDACTED"))
        )

    wait_until(
        lambda: all_logged(secure_stack.log("accounts")[before:]), timeout=10, what="access lines"
    )
    log = secure_stack.log("accounts")[before:]
    secrets = {
        "refused link": refused_token,
        "used link": good_token,
        "variant link": variant_token,
        "oauth code": "log-keeper-code-7d41",
        "oauth state": state,
    }
    leaked = [name for name, secret in secrets.items() if secret in log]
    assert not leaked, leaked
    # The variant's token was never spent: it still signs in (at the real path).
    assert requests.get(variant_url, allow_redirects=False, timeout=10).status_code == 303
    record(
        "17.13 login-link tokens",
        "login links (good next, bad next, a variant path) and a GitHub callback on gunicorn: "
        "no token, code or state in the access or service log; a bad-next link is void",
        passed=True,
        bad_inputs=3,
    )


@pytest.mark.parametrize(
    "target, expected",
    [
        (LINK_PATH + "tok_EN-1?next=x", LINK_PATH + "REDACTED?next=x"),
        ("//api/v1/auth//Login-Link//tok", "//api/v1/auth//Login-Link//REDACTED"),
        ("/api/v1/auth/login%2Dlink%2Ftok", "/api/v1/auth/login%2Dlink%2FREDACTED"),
        (
            "/api/v1/auth/github/callback?code=c&state=s&%63ode=c&x=1",
            "/api/v1/auth/github/callback?code=REDACTED&state=REDACTED&%63ode=REDACTED&x=1",
        ),
        ("/api/v1/orgs/techcorp/pull-requests?state=open", None),  # a filter, kept
    ],
)
def test_redaction_of_targets(target, expected):
    assert redact_target(target) == (expected or target)
    assert redact_text(f"<Request 'http://h{target}' [GET]>") == (
        f"<Request 'http://h{expected or target}' [GET]>"
    )
    path, _, query = target.partition("?")
    assert redact_query(path, query) == (expected or target).partition("?")[2]
