"""Item 11: rate limits on a stack started with low ones: per API key on the public API, per
IP on sign-in and on webhook signature failures; 429 with Retry-After in the error shape;
valid signed deliveries never throttled."""

from __future__ import annotations

import json

import pytest
import requests

from shared.config import ConfigError, Settings
from tests.helpers import bound_to, free_port
from tests.reliability.report import record
from tests.security.conftest import (
    admin_key,
    count_events,
    real_payload,
    start_stack,
    webhook_headers,
)

API_LIMIT, SIGN_IN_LIMIT, FAILURE_LIMIT, EXPORT_LIMIT = 5, 4, 3, 2


@pytest.fixture(scope="module")
def limited(database_factory, tmp_path_factory, fake_github_server):
    stack = start_stack(
        database_factory,
        tmp_path_factory,
        fake_github_server,
        RATE_LIMIT_API=f"{API_LIMIT} per hour",
        RATE_LIMIT_SIGN_IN=f"{SIGN_IN_LIMIT} per hour",
        RATE_LIMIT_WEBHOOK_FAILURES=f"{FAILURE_LIMIT} per hour",
        RATE_LIMIT_EXPORTS=f"{EXPORT_LIMIT} per hour",
    )
    try:
        for name in ("accounts", "activity", "metrics"):
            stack.start(name)
        yield stack
    finally:
        for name in list(stack.processes):
            stack.stop(name)


def assert_throttled(response):
    assert response.status_code == 429, response.text
    body = response.get_json() if hasattr(response, "get_json") else response.json()
    assert set(body) == {"code", "status", "message", "errors"} and body["code"] == 429
    assert int(response.headers["Retry-After"]) > 0


def test_public_api_is_limited_per_api_key(limited):
    url = limited.url("activity") + "/api/v1/orgs/techcorp/repositories"
    first = {"Authorization": f"Bearer {limited.keys['CI pipeline']}"}
    other = {"Authorization": f"Bearer {limited.keys['Read-only dashboard']}"}
    answers = [requests.get(url, headers=first, timeout=10).status_code for _ in range(API_LIMIT)]
    assert answers == [200] * API_LIMIT
    assert_throttled(requests.get(url, headers=first, timeout=10))
    # Another key has its own budget (its answer is the usual 404 for another org's route).
    assert requests.get(url, headers=other, timeout=10).status_code == 404
    # Health and docs are not the public API: never limited.
    assert requests.get(limited.url("activity") + "/healthz", timeout=10).status_code == 200
    record("11 rate limits", "per API key on the public API", passed=True, load=API_LIMIT + 2)


def test_sign_in_is_limited_per_ip(limited):
    url = limited.url("accounts") + "/api/v1/auth/github/login"
    answers = [
        requests.get(url, allow_redirects=False, timeout=10).status_code
        for _ in range(SIGN_IN_LIMIT)
    ]
    assert answers == [302] * SIGN_IN_LIMIT
    assert_throttled(requests.get(url, allow_redirects=False, timeout=10))
    callback = limited.url("accounts") + "/api/v1/auth/github/callback?code=x&state=y"
    assert_throttled(requests.get(callback, timeout=10))  # the same budget for the IP
    record("11 rate limits", "per IP on sign-in", passed=True, load=SIGN_IN_LIMIT + 2)


def test_webhook_signature_failures_are_limited_but_valid_deliveries_never(limited):
    url = limited.url("activity") + "/webhooks/github"
    body = json.dumps(real_payload("push")).encode()
    forged = {**webhook_headers("push", body), "X-Hub-Signature-256": "sha256=" + "0" * 64}
    answers = [
        requests.post(url, data=body, headers=forged, timeout=10).status_code
        for _ in range(FAILURE_LIMIT)
    ]
    assert answers == [401] * FAILURE_LIMIT
    before = count_events(limited)
    assert_throttled(requests.post(url, data=body, headers=forged, timeout=10))
    # The same address, over its failure budget, still delivers validly signed events.
    valid = 3 * FAILURE_LIMIT
    for _ in range(valid):
        response = requests.post(url, data=body, headers=webhook_headers("push", body), timeout=10)
        assert response.status_code == 202, response.text
    assert count_events(limited) == before + valid
    record(
        "11 rate limits",
        "per IP on webhook signature failures; valid deliveries never throttled",
        passed=True,
        load=valid,
        bad_inputs=FAILURE_LIMIT + 1,
    )


def test_exports_are_limited_per_api_key_apart_from_the_api(limited):
    """Item 17.8: CSV exports, of every CSV route, spend a smaller budget of their own
    (RATE_LIMIT_EXPORTS) on top of the API's; JSON answers of the same routes do not."""
    metrics = limited.url("metrics") + "/api/v1/orgs/techcorp"
    first, other = admin_key(limited), admin_key(limited)  # each its own budgets

    def get(key, path, **params):
        return requests.get(
            metrics + path, params=params, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )

    exports = [get(first, "/metrics/dora", format="csv"), get(first, "/ai-reviews", format="csv")]
    assert [r.status_code for r in exports] == [200] * EXPORT_LIMIT
    assert all(r.headers["Content-Type"].startswith("text/csv") for r in exports)
    refused = get(first, "/metrics/developers", format="csv")
    assert_throttled(refused)
    assert "export" in refused.json()["message"]
    # The same key still reads JSON (its API budget is apart), another key still exports.
    assert get(first, "/metrics/developers").status_code == 200
    assert get(other, "/metrics/team", format="csv").status_code == 200
    record(
        "17.8 CSV exports",
        "exports counted per API key against RATE_LIMIT_EXPORTS: 429 with Retry-After past "
        "it, JSON of the same key and other keys' exports unaffected",
        passed=True,
        load=EXPORT_LIMIT + 3,
        bad_inputs=1,
    )


def test_limits_are_settings_and_malformed_ones_are_refused():
    settings = Settings.from_env({"RATE_LIMIT_API": "10/second", "RATE_LIMIT_ENABLED": "false"})
    assert settings.rate_limit_api == "10/second" and settings.rate_limit_enabled is False
    defaults = Settings.from_env({})
    assert defaults.rate_limit_storage_uri == "memory://" and defaults.rate_limit_enabled
    with pytest.raises(ConfigError, match="RATE_LIMIT_SIGN_IN"):
        Settings.from_env({"RATE_LIMIT_SIGN_IN": "lots"})
    assert defaults.rate_limit_exports == "10 per minute"
    with pytest.raises(ConfigError, match="RATE_LIMIT_EXPORTS"):
        Settings.from_env({"RATE_LIMIT_EXPORTS": "many"})


def test_retry_after_is_sent_with_refusals_only(monkeypatch):
    """Item 18.6: an answer under the API limit says the caller's budget (X-RateLimit-*) and
    carries no Retry-After; a 503 keeps its own (1 s, not the limit's window); a 429 of the
    limit says when its window resets."""
    from services.accounts import create_app

    monkeypatch.setenv("RATE_LIMIT_API", "3 per day")
    with bound_to(f"postgresql://postgres@127.0.0.1:{free_port()}/down") as database:
        client = create_app({"TESTING": True, "DATABASE": database}).test_client()
        anonymous = client.get("/api/v1/me")
        assert anonymous.status_code == 401
        assert "Retry-After" not in anonymous.headers
        assert anonymous.headers["X-RateLimit-Limit"] == "3"
        assert anonymous.headers["X-RateLimit-Remaining"] == "2"
        key = {"Authorization": f"Bearer dm_{'a' * 12}_{'b' * 32}"}
        down = client.get("/api/v1/me", headers=key)  # the key's lookup meets no database
        assert down.status_code == 503, down.get_json()
        assert down.headers["Retry-After"] == "1"
        assert down.headers["X-RateLimit-Limit"] == "3"
        for _ in range(2):
            assert client.get("/api/v1/me").status_code == 401
        over = client.get("/api/v1/me")
        assert_throttled(over)
        assert int(over.headers["Retry-After"]) <= 24 * 3600 + 1  # the window's reset
        assert over.headers["X-RateLimit-Remaining"] == "0"
