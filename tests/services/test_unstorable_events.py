"""Values GitHub never sends (issue 18 item 5): an event carrying a value no column can hold
fails the same way on every attempt, so it is DEAD at once with the reason, listed by
`GET .../events?status=DEAD` and counted in `devmetrics_events_dead_total`; its neighbours
in the batch are processed, and transient failures keep their retries. Payloads are the
real samples of tests/fixtures/github/webhooks with one field edited, delivered signed through
`POST /webhooks/github`."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess

import psycopg2
import pytest
import requests

from services.activity import processing
from shared.models import Commit, Event, EventStatus, PullRequest
from shared.observability import metrics_registry
from shared.sql import is_postgres
from tests.conftest import DEVMETRICS, ROOT
from tests.helpers import free_port, stop, wait_until
from tests.services import test_webhooks
from tests.services.conftest import connect_verified
from tests.services.test_auth import new_key
from tests.services.test_metrics_pipeline import _send
from tests.services.test_webhooks import SAMPLES, deliver

activity = test_webhooks.activity  # the samples' repositories connected, in-process app

PAST_32_BITS = 2**32  # an int4 column (pull_requests.number) cannot hold it
PAST_64_BITS = 2**63  # nor can an int8 one (pull_requests.github_id)


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


def opened(**fields) -> dict:
    """pull_request/opened (PR #2 of Codertocat/Hello-World) with these fields of its pull
    request edited."""
    payload = sample("pull_request/opened.payload.json")
    payload["pull_request"].update(fields)
    return payload


def pushed() -> dict:
    return next(
        payload
        for payload in (json.loads(p.read_text()) for p in sorted((SAMPLES / "push").glob("*")))
        if payload["commits"]
    )


def send(client, event: str, payload: dict) -> None:
    response = deliver(client, event, json.dumps(payload).encode())
    assert response.status_code == 202, response.json


def dead_count(reason: str) -> float:
    found = metrics_registry().get_sample_value("devmetrics_events_dead_total", {"reason": reason})
    return found or 0.0


def number_of(event: Event) -> int | None:
    return (event.payload.get("pull_request") or {}).get("number")


def test_a_pull_request_number_past_32_bits_is_dead_at_once_and_its_batch_processed(activity):
    before = dead_count("unstorable")
    push = pushed()
    send(activity, "push", push)
    bad = opened(number=PAST_32_BITS, id=191568743 + 1)  # another pull request's id
    send(activity, "pull_request", bad)
    send(activity, "pull_request_review", sample("pull_request_review/submitted.payload.json"))
    send(activity, "pull_request", opened())  # PR #2 as GitHub sent it

    # One batch: the fast path fails on the bad event, then each event on its own.
    assert processing.process_batch("test-worker", limit=200) == 4

    statuses = {(e.event_type, number_of(e)): e.status for e in Event.select()}
    assert statuses == {
        ("push", None): EventStatus.PROCESSED,
        ("pull_request", PAST_32_BITS): EventStatus.DEAD,
        ("pull_request_review", 2): EventStatus.PROCESSED,
        ("pull_request", 2): EventStatus.PROCESSED,
    }
    dead = Event.get(Event.status == EventStatus.DEAD)
    assert dead.attempts == 1 and dead.next_attempt_at is None
    assert dead.last_error == (
        f"permanent: value out of range for pull_requests.number: {PAST_32_BITS}"
    )
    assert dead_count("unstorable") == before + 1
    assert [pr.number for pr in PullRequest.select()] == [2]
    assert Commit.select().count() == len(push["commits"])
    # Nothing due: it is not leased again.
    assert processing.process_batch("test-worker", limit=200) == 0


def test_an_id_past_64_bits_is_dead_at_once(activity):
    before = dead_count("unstorable")
    send(activity, "pull_request", opened(id=PAST_64_BITS))

    assert processing.process_batch("test-worker", limit=200) == 1

    (event,) = Event.select()
    assert (event.status, event.attempts, event.next_attempt_at) == (EventStatus.DEAD, 1, None)
    assert event.last_error == (
        f"permanent: value out of range for pull_requests.github_id: {PAST_64_BITS}"
    )
    assert dead_count("unstorable") == before + 1
    assert PullRequest.select().count() == 0


@pytest.fixture
def pull_requests_locked(tx):
    """Writes to pull_requests wait on another session's lock and give up after a short lock
    timeout (PostgreSQL); on SQLite, whose locks are the whole file's (held by the test's own
    open transaction), the database refuses those writes at the driver (an authorizer)."""
    if is_postgres():
        params = tx.connect_params
        other = psycopg2.connect(dbname=tx.database, **params)
        other.autocommit = False
        other.cursor().execute("LOCK TABLE pull_requests IN EXCLUSIVE MODE")
        tx.execute_sql("SET lock_timeout = '200ms'")
        try:
            yield
        finally:
            tx.execute_sql("SET lock_timeout = 0")
            other.rollback()
            other.close()
        return
    connection = tx.connection()

    def authorizer(action, table, *_):
        if action in (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE) and table == "pull_requests":
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    connection.set_authorizer(authorizer)
    try:
        yield
    finally:
        connection.set_authorizer(None)


def test_a_transient_failure_keeps_its_retries(activity, pull_requests_locked):
    before = {reason: dead_count(reason) for reason in ("unstorable", "retries_exhausted")}
    send(activity, "pull_request", opened())

    assert processing.process_batch("test-worker", limit=200) == 1

    (event,) = Event.select()
    assert (event.status, event.attempts) == (EventStatus.FAILED, 1)
    assert event.next_attempt_at is not None and event.next_attempt_at > event.received_at
    assert not event.last_error.startswith("permanent")
    assert ("lock timeout" if is_postgres() else "not authorized") in event.last_error
    assert {reason: dead_count(reason) for reason in before} == before


def test_a_transient_failure_is_dead_when_its_attempts_run_out(activity, pull_requests_locked):
    before = dead_count("retries_exhausted")
    send(activity, "pull_request", opened())
    Event.update(attempts=processing.MAX_ATTEMPTS - 1).execute()  # its last attempt is next

    assert processing.process_batch("test-worker", limit=200) == 1

    (event,) = Event.select()
    assert (event.status, event.attempts) == (EventStatus.DEAD, processing.MAX_ATTEMPTS)
    assert not event.last_error.startswith("permanent")
    assert dead_count("retries_exhausted") == before + 1


# Through the running services and a real events worker ---------------------------------


def scrape(port: int) -> str:
    return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


def dead_total(text: str, reason: str) -> float:
    found = re.search(rf'^devmetrics_events_dead_total{{reason="{reason}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_an_unstorable_event_is_listed_dead_counted_and_replayable(stack, fake_github):
    admin = new_key(stack, "techcorp", "admin")
    writer = new_key(stack, "techcorp", "activity:write")
    repo = connect_verified(stack, fake_github, "techcorp", "techcorp/unstorable", 880050)
    where = {"full_name": repo["full_name"], "id": repo["github_id"]}
    port = free_port()
    worker = subprocess.Popen(
        [str(DEVMETRICS), "worker", "events", "--metrics-port", str(port), "--poll", "0.2"],
        env={**stack.env, "DATABASE_URL": stack.database_url},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: stopped alone (helpers.stop)
    )
    api = stack.url("activity") + "/api/v1/orgs/techcorp"
    auth = {"Authorization": f"Bearer {admin}"}

    def listed(status: str) -> list[dict]:
        params = {"repository": repo["id"], "status": status}
        response = requests.get(f"{api}/events", params=params, headers=auth, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    try:
        wait_until(lambda: scrape(port), what="the worker's /metrics")
        before = dead_total(scrape(port), "unstorable")
        bad = opened(number=PAST_32_BITS, id=880051)
        good = opened(id=880052)
        for payload in (bad, good):
            payload["repository"].update(where)
        _send(stack, repo["webhook_secret"], "pull_request", bad)
        _send(stack, repo["webhook_secret"], "pull_request", good)

        wait_until(lambda: listed("DEAD") and listed("PROCESSED"), what="both processed")
        (dead,) = listed("DEAD")
        assert (dead["attempts"], dead["event_type"]) == (1, "pull_request")
        assert dead["last_error"] == (
            f"permanent: value out of range for pull_requests.number: {PAST_32_BITS}"
        )
        assert dead["payload"]["pull_request"]["number"] == PAST_32_BITS
        assert [e["payload"]["pull_request"]["number"] for e in listed("PROCESSED")] == [2]
        assert listed("FAILED") == []
        assert dead_total(scrape(port), "unstorable") == before + 1
    finally:
        stop(worker, signal.SIGTERM)

    # An operator can still queue it again (here it fails the same way: it stays DEAD).
    replayed = stack.cli("events", "replay", "--status", "DEAD", "--repository", repo["full_name"])
    assert (
        replayed.returncode == 0 and replayed.stdout.strip() == "1 event(s) queued for processing"
    )
    (again,) = listed("PENDING")
    assert (again["id"], again["attempts"], again["last_error"]) == (dead["id"], 0, None)
    requests.delete(
        f"{api}/repositories/{repo['id']}",
        headers={"Authorization": f"Bearer {writer}"},
        timeout=10,
    )
