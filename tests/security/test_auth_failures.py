"""Item 17.4: unauthenticated CPU exhaustion through bcrypt. Refused bearer tokens spend a
per-IP budget (RATE_LIMIT_AUTH_FAILURES) that is checked before anything that could cost a
bcrypt, on the service the client talks to and on accounts' own routes; a key whose prefix is
unknown costs no bcrypt at all; a refused token is answered from a short negative cache; a
valid key or session keeps working from an address over its budget.

Every scenario comes from its own loopback address (127.0.0.x), as separate clients would,
and is observed through accounts' Prometheus counters: introspection requests and bcrypt
checks (`devmetrics_api_key_bcrypt_checks_total`)."""

from __future__ import annotations

import re
import secrets
import time

import pytest
import requests
from requests.adapters import HTTPAdapter

from shared.config import ConfigError, Settings
from tests.reliability.report import record
from tests.security.conftest import admin_key, session_for, start_stack

BUDGET = 5
CACHE_SECONDS = 1  # INTROSPECTION_CACHE_SECONDS of the security stack
ITEM = "17.4 auth CPU exhaustion"


@pytest.fixture(scope="module")
def guarded(database_factory, tmp_path_factory, fake_github_server):
    stack = start_stack(
        database_factory,
        tmp_path_factory,
        fake_github_server,
        RATE_LIMIT_AUTH_FAILURES=f"{BUDGET} per hour",
    )
    try:
        for name in ("accounts", "activity"):
            stack.start(name)
        yield stack
    finally:
        for name in list(stack.processes):
            stack.stop(name)


class _FromAddress(HTTPAdapter):
    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def client_at(address: str) -> requests.Session:
    """A client whose connections come from `address` (any 127.x.y.z reaches loopback)."""
    session = requests.Session()
    session.mount("http://", _FromAddress(address))
    return session


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def random_key(prefix: str | None = None) -> str:
    """A well-formed API key: `dm_<12 hex>_<secret>`; a random prefix unless given."""
    return f"dm_{prefix or secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def prefix_of(key: str) -> str:
    return key.split("_")[1]


def _counter(stack, pattern: str) -> int:
    text = requests.get(stack.url("accounts") + "/metrics", timeout=10).text
    return int(sum(float(v) for v in re.findall(pattern, text, re.M)))


def introspections(stack) -> int:
    """Introspection requests accounts has answered (other services asking it)."""
    return _counter(
        stack,
        r"^devmetrics_http_requests_total\{[^}]*"
        r'endpoint="/internal/v1/auth/introspect"[^}]*\} ([0-9.e+]+)$',
    )


def refused_bcrypts(stack) -> int:
    """bcrypt checks on accounts that refused the secret (a guess, or the former dummy)."""
    return _counter(
        stack, r'^devmetrics_api_key_bcrypt_checks_total\{result="refused"\} ([0-9.e+]+)$'
    )


def assert_throttled(response):
    assert response.status_code == 429, response.text
    body = response.json()
    assert set(body) == {"code", "status", "message", "errors"} and body["code"] == 429
    assert "failed authentications" in body["message"]
    assert int(response.headers["Retry-After"]) > 0


def test_random_keys_are_throttled_per_address_before_any_bcrypt(guarded):
    url = guarded.url("activity") + "/api/v1/orgs/techcorp/repositories"
    attacker = client_at("127.0.0.2")
    valid_key = guarded.keys["CI pipeline"]
    assert attacker.get(url, headers=bearer(valid_key), timeout=10).status_code == 200
    asked, bcrypts = introspections(guarded), refused_bcrypts(guarded)

    answers = [
        attacker.get(url, headers=bearer(random_key()), timeout=10).status_code
        for _ in range(BUDGET)
    ]
    assert answers == [401] * BUDGET
    assert introspections(guarded) == asked + BUDGET  # each was asked about once
    assert refused_bcrypts(guarded) == bcrypts  # an unknown prefix costs no bcrypt
    # Over the budget: refused before accounts is asked, also for a known prefix with a
    # guessed secret (the one kind of bad key that would cost a bcrypt).
    assert_throttled(attacker.get(url, headers=bearer(random_key()), timeout=10))
    guess = random_key(prefix_of(valid_key))
    assert_throttled(attacker.get(url, headers=bearer(guess), timeout=10))
    assert introspections(guarded) == asked + BUDGET
    assert refused_bcrypts(guarded) == bcrypts
    record(
        ITEM,
        f"{BUDGET} random well-formed keys from one IP: 401 each with no bcrypt (unknown "
        "prefix), then 429 + Retry-After without asking accounts, also for a known prefix",
        passed=True,
        bad_inputs=BUDGET + 2,
    )

    # Valid credentials from the same address keep working: the key activity found valid
    # before (its cache entry expired, so accounts is asked again) and a session.
    time.sleep(CACHE_SECONDS + 0.2)
    assert attacker.get(url, headers=bearer(valid_key), timeout=10).status_code == 200
    session = session_for(guarded, "alice")
    assert attacker.get(url, headers=bearer(session), timeout=10).status_code == 200
    # A key activity has never seen valid would cost a bcrypt to check: from this address
    # it waits for Retry-After; another address is served with it, and has its own budget.
    fresh = admin_key(guarded)
    assert_throttled(attacker.get(url, headers=bearer(fresh), timeout=10))
    other = client_at("127.0.0.3")
    assert other.get(url, headers=bearer(fresh), timeout=10).status_code == 200
    assert other.get(url, headers=bearer(random_key()), timeout=10).status_code == 401
    record(
        ITEM,
        "from the throttled IP, a key seen valid before (re-verified) and a session are "
        "still served; a never-seen key waits (429); another IP is served",
        passed=True,
        load=4,
    )


def test_a_repeated_bad_key_is_answered_from_the_negative_cache(guarded):
    url = guarded.url("activity") + "/api/v1/orgs/techcorp/repositories"
    client = client_at("127.0.0.4")
    guess = random_key(prefix_of(guarded.keys["CI pipeline"]))  # costs a bcrypt to refuse
    asked, bcrypts = introspections(guarded), refused_bcrypts(guarded)
    tries = BUDGET - 1
    answers = [client.get(url, headers=bearer(guess), timeout=10).status_code for _ in range(tries)]
    assert answers == [401] * tries
    assert introspections(guarded) == asked + 1
    assert refused_bcrypts(guarded) == bcrypts + 1
    record(
        ITEM,
        f"one guessed secret for a real prefix sent {tries} times: 1 introspection and "
        "1 bcrypt, the rest from the negative cache",
        passed=True,
        bad_inputs=tries,
    )


def test_accounts_own_routes_spend_the_same_budget(guarded):
    url = guarded.url("accounts") + "/api/v1/orgs/techcorp"
    client = client_at("127.0.0.5")
    valid_key = guarded.keys["CI pipeline"]
    session = session_for(guarded, "alice")
    assert client.get(url, headers=bearer(valid_key), timeout=10).status_code == 200
    bcrypts = refused_bcrypts(guarded)
    guess = random_key(prefix_of(valid_key))
    answers = [client.get(url, headers=bearer(guess), timeout=10).status_code for _ in range(2)]
    answers += [
        client.get(url, headers=bearer(random_key()), timeout=10).status_code
        for _ in range(BUDGET - 3)
    ]
    answers.append(client.get(url, headers=bearer("dms_not-a-session"), timeout=10).status_code)
    assert answers == [401] * BUDGET
    assert refused_bcrypts(guarded) == bcrypts + 1  # the guess once; its repeat was cached
    assert_throttled(client.get(url, headers=bearer(random_key()), timeout=10))
    assert_throttled(client.get(url, headers=bearer(guess), timeout=10))
    assert refused_bcrypts(guarded) == bcrypts + 1
    assert client.get(url, headers=bearer(valid_key), timeout=10).status_code == 200
    assert client.get(url, headers=bearer(session), timeout=10).status_code == 200
    record(
        ITEM,
        "accounts' own routes: keys, a guessed secret and a bad session spend the IP's "
        "budget, then 429 with no bcrypt; a valid key and session still served",
        passed=True,
        load=3,
        bad_inputs=BUDGET + 2,
    )


def test_the_budget_is_a_setting_and_a_malformed_one_is_refused():
    assert Settings.from_env({}).rate_limit_auth_failures == "20 per minute"
    settings = Settings.from_env({"RATE_LIMIT_AUTH_FAILURES": "3/second"})
    assert settings.rate_limit_auth_failures == "3/second"
    with pytest.raises(ConfigError, match="RATE_LIMIT_AUTH_FAILURES"):
        Settings.from_env({"RATE_LIMIT_AUTH_FAILURES": "many"})
