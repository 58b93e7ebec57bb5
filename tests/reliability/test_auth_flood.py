"""Item 17.4: random well-formed API keys sent concurrently from one address (each one its own
API rate-limit bucket, and before the fix each one a bcrypt on accounts) must not slow down
another tenant's authenticated reads: their p50 under the attack stays within 2x of the same
client's p50 just before it, measured over hundreds of requests in the same run.

The attack is paced (ATTACKERS threads, each at most PACE requests a second, in a process of
their own), so the offered load is the same before and after the fix: before it, 40 bcrypt
checks a second saturate accounts and activity's threads wait on its introspection; after it,
a key with an unknown prefix costs no bcrypt and, past RATE_LIMIT_AUTH_FAILURES, the address
is answered 429 before accounts is asked. The victim reads from the same address as the
attacker: a valid key keeps working from an address over its failure budget."""

from __future__ import annotations

import multiprocessing
import secrets
import statistics
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest
import requests

from shared import crypto
from shared.models import ApiKey, Organization
from tests.reliability.report import record

pytestmark = pytest.mark.postgres_only

ATTACKERS, PACE = 8, 5.0  # threads, requests a second each: 40 a second offered
IDLE_SECONDS, ATTACK_SECONDS = 5.0, 15.0
AUTH_FAILURES = "20 per minute"  # the default budget


def victim_key(stack) -> str:
    """An activity:read key of startup-inc (the victim tenant), made in its database."""
    plaintext, prefix, key_hash = crypto.new_api_key()
    with stack.db():
        ApiKey.create(
            organization=Organization.get(Organization.slug == "startup-inc"),
            name="auth flood victim",
            prefix=prefix,
            key_hash=key_hash,
            scopes=["activity:read"],
            organization_key=True,  # no creating person (as `devmetrics apikey create` makes)
        )
    return plaintext


def read_for(seconds: float, session: requests.Session, url: str, key: str) -> list[tuple]:
    """The victim: one read after another for `seconds`; (milliseconds, status) each."""
    timings = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            status = session.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
            status = status.status_code
        except requests.RequestException:
            status = None
        timings.append(((time.perf_counter() - started) * 1000, status))
    return timings


def attack_thread(url: str, deadline: float) -> Counter:
    """One attacker: random well-formed keys, at most PACE a second, until `deadline`."""
    answers = Counter()
    session = requests.Session()
    while time.monotonic() < deadline:
        started = time.monotonic()
        key = f"dm_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"
        try:
            response = session.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            answers[response.status_code] += 1
        except requests.RequestException:
            answers[None] += 1
        time.sleep(max(0.0, 1 / PACE - (time.monotonic() - started)))
    return answers


def attack(url: str, seconds: float) -> Counter:
    """ATTACKERS threads for `seconds`, run in a process of their own (spawned), so their
    work never holds the victim's interpreter lock and skews its timings."""
    deadline = time.monotonic() + seconds
    with ThreadPoolExecutor(ATTACKERS) as pool:
        threads = [pool.submit(attack_thread, url, deadline) for _ in range(ATTACKERS)]
        return sum((t.result() for t in threads), Counter())


def test_random_keys_do_not_slow_another_tenant(rstack):
    settings = {"RATE_LIMIT_AUTH_FAILURES": AUTH_FAILURES, "INTROSPECTION_CACHE_SECONDS": 5}
    rstack.start("accounts", **settings)
    rstack.start("activity", **settings)
    base = rstack.url("activity") + "/api/v1/orgs"
    key = victim_key(rstack)
    victim = requests.Session()
    warm = read_for(1.0, victim, f"{base}/startup-inc/repositories", key)
    assert {status for _ms, status in warm} == {200}

    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as attacker:
        attacker.submit(time.sleep, 0).result()  # the process up before anything is timed
        idle = read_for(IDLE_SECONDS, victim, f"{base}/startup-inc/repositories", key)
        attacking = attacker.submit(attack, f"{base}/techcorp/repositories", ATTACK_SECONDS + 1)
        time.sleep(1.0)  # the attack under way before the victim is measured again
        under_attack = read_for(ATTACK_SECONDS, victim, f"{base}/startup-inc/repositories", key)
        attacked = attacking.result(timeout=60)

    p50_idle = statistics.median(ms for ms, _status in idle)
    p50_attack = statistics.median(ms for ms, _status in under_attack)
    victim_statuses = Counter(status for _ms, status in idle + under_attack)
    detail = (
        f"victim p50 {p50_idle:.1f} ms idle ({len(idle)} reads), {p50_attack:.1f} ms under "
        f"attack ({len(under_attack)} reads); attack answers {dict(attacked)}"
    )
    held = (
        p50_attack <= 2 * p50_idle
        and set(victim_statuses) == {200}
        and set(attacked) <= {401, 429}
        and attacked[429] > attacked[401]
    )
    check = (
        f"{ATTACKERS} threads x {PACE:.0f}/s random well-formed keys from one IP for "
        f"{ATTACK_SECONDS:.0f} s: another tenant's p50 (same IP) within 2x of idle"
    )
    if not held:
        record("17.4 auth CPU exhaustion", check, passed=False, detail=detail)
    assert p50_attack <= 2 * p50_idle, detail
    assert set(victim_statuses) == {200}, victim_statuses
    assert set(attacked) <= {401, 429}, attacked
    assert attacked[429] > attacked[401], attacked  # the failure budget engaged
    record(
        "17.4 auth CPU exhaustion",
        check,
        passed=True,
        load=len(idle) + len(under_attack) + sum(attacked.values()),
        bad_inputs=sum(attacked.values()),
        detail=detail,
    )
