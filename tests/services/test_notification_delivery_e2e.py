"""The real `devmetrics worker notify` process: killed with SIGKILL in the middle of a
delivery (the receiver hangs), its delivery is picked up by another run once the lease ends,
with the same idempotency key. And, behind the real notifications service configured as in
production (https and public addresses only, no SMTP server yet), what is retried and what
is not (issue 18, item 7): a host name that does not resolve is retried with backoff, then
DEAD; a private address and an http:// target fail at once (the latter naming the setting
that allows it); an e-mail rule saved before SMTP is configured keeps its deliveries
pending, and they go out once it is."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import uuid

import pytest
import requests

from shared import migrations
from shared.crypto import encrypt
from shared.models import (
    NotificationLog,
    NotificationRule,
    Organization,
    Role,
    User,
    UserOrganization,
    utcnow,
)
from tests.conftest import DEVMETRICS, ROOT, run_cli
from tests.helpers import INTERNAL_TOKEN, bound_to, free_port, service_env, wait_until
from tests.receivers import Answer, HttpReceiver, SmtpReceiver
from tests.services.conftest import Stack
from tests.services.test_organizations import session_token

LEASE_SECONDS = 6


@pytest.fixture
def delivery_db(fresh_database_url):
    with bound_to(fresh_database_url) as database:
        migrations.migrate(database)
        yield fresh_database_url


def worker_env(database_url: str) -> dict:
    return {
        "DATABASE_URL": database_url,
        "NOTIFICATIONS_ALLOW_PRIVATE_TARGETS": "true",
        "NOTIFICATIONS_TIMEOUT_SECONDS": "30",  # longer than the test: only the kill ends it
        "NOTIFICATIONS_LEASE_SECONDS": str(LEASE_SECONDS),
    }


def status_of(log_id: int) -> NotificationLog:
    return NotificationLog.get_by_id(log_id)


def test_a_worker_killed_mid_delivery_leaves_it_to_the_next_run(delivery_db):
    with HttpReceiver() as receiver:
        receiver.script(Answer(hang=True))  # then 200
        org = Organization.create(name="Acme", slug="acme")
        rule = NotificationRule.create(
            organization=org,
            name="Risky reviews",
            trigger="ai_review.completed",
            channel="WEBHOOK",
            target=receiver.url,
            secret_encrypted=encrypt("s3cret"),
        )
        log = NotificationLog.create(
            rule=rule,
            organization=org,
            event_key="review:1",
            payload={"type": "ai_review.completed", "data": {"risk_score": 80, "number": 3}},
            next_attempt_at=utcnow(),
        )
        env = {**os.environ, **worker_env(delivery_db)}
        first = subprocess.Popen(
            [str(DEVMETRICS), "worker", "notify"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            assert receiver.arrived.wait(30), "the worker never reached the receiver"
            inflight = status_of(log.id)
            assert (inflight.status, inflight.attempts) == ("SENDING", 1)
            assert inflight.locked_by.endswith(f":{first.pid}:notify")
        finally:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(10)
        assert first.returncode == -signal.SIGKILL

        # Within the lease nobody else takes it...
        idle = run_cli("worker", "notify", "--once", database_url=delivery_db, env=env)
        assert idle.returncode == 0, idle.stderr
        assert status_of(log.id).status == "SENDING" and len(receiver.requests) == 1

        # ...after it, the next run delivers it.
        wait_until(
            lambda: status_of(log.id).locked_until < utcnow(),
            timeout=LEASE_SECONDS + 5,
            what="the lease to expire",
        )
        ran = run_cli("worker", "notify", "--once", database_url=delivery_db, env=env)
        assert ran.returncode == 0, ran.stderr
        done = status_of(log.id)
        assert (done.status, done.attempts, done.response_code) == ("SENT", 2, 200)
        assert done.sent_at is not None
        first_try, second_try = receiver.requests
        assert first_try.headers["X-DevMetrics-Delivery"] == str(log.id)
        assert second_try.headers["X-DevMetrics-Delivery"] == str(log.id)
        assert json.loads(second_try.body)["event_key"] == "review:1"


# --- what is retried, behind the service as production runs it (issue 18, item 7) ---------

ORG = "hooks-inc"
RULES = f"/api/v1/orgs/{ORG}/notification-rules"
LOGS = f"/api/v1/orgs/{ORG}/notification-logs"
PRIVATE_REFUSED = "refused: private address"
SMTP_MISSING = "SMTP_HOST is not set: e-mails cannot be sent"
ALLOW_PRIVATE = "NOTIFICATIONS_ALLOW_PRIVATE_TARGETS=true"
BACKOFF_SECONDS = 30
UNRESOLVABLE_HOST = "hooks.devmetrics.invalid"  # RFC 6761: `.invalid` never resolves


@pytest.fixture(scope="module")
def production(database_factory, tmp_path_factory):
    """accounts and notifications on a database of their own (the notify worker sends every
    due delivery it finds, so no other test's), with the production defaults: no
    NOTIFICATIONS_ALLOW_PRIVATE_TARGETS, no SMTP_HOST; an organization and its ADMIN."""
    url = database_factory.new_url()
    ports = {"accounts": free_port(), "notifications": free_port()}
    env = service_env(
        url,
        ports,
        NOTIFICATIONS_ALLOW_PRIVATE_TARGETS="false",
        SMTP_HOST="",
        NOTIFICATIONS_MAX_ATTEMPTS=3,
        NOTIFICATIONS_BACKOFF_SECONDS=BACKOFF_SECONDS,
        NOTIFICATIONS_MAX_BACKOFF_SECONDS=600,
        NOTIFICATIONS_TIMEOUT_SECONDS=2,
        INTROSPECTION_CACHE_SECONDS=1,
    )
    stack = Stack(url, ports, env, tmp_path_factory.mktemp("notify-logs"))
    migrated = stack.cli("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    with bound_to(url):
        org = Organization.create(name="Hooks Inc", slug=ORG)
        admin = User.create(github_id=8_800_001, login="hooks-admin", email="a@hooks.example")
        UserOrganization.create(user=admin, organization=org, role=Role.ADMIN)
        stack.org_id = org.id
        stack.headers = {"Authorization": f"Bearer {session_token(admin)}"}
    try:
        stack.start("accounts")
        stack.start("notifications")
        yield stack
    finally:
        for name in list(stack.processes):
            stack.stop(name)


def api(stack, method: str, path: str, **kwargs) -> requests.Response:
    url = stack.url("notifications") + path
    return requests.request(method, url, headers=stack.headers, timeout=20, **kwargs)


def create_rule(stack, name: str, channel: str, target: str, trigger: str) -> dict:
    body = {"name": name, "trigger": trigger, "channel": channel, "target": target}
    made = api(stack, "post", RULES, json=body)
    assert made.status_code == 201, made.text
    return made.json()


def insert_rule(stack, name: str, channel: str, target: str, trigger: str) -> int:
    """A rule the API refuses under these settings: stored while they were others (a name
    that resolved to a public address then, a development setup), or written with Studio."""
    with bound_to(stack.database_url):
        return NotificationRule.create(
            organization=stack.org_id,
            name=name,
            trigger=trigger,
            channel=channel,
            target=target,
            secret_encrypted=encrypt("rule-secret") if channel == "WEBHOOK" else None,
        ).id


def send_event(stack, kind: str, data: dict) -> dict[int, int]:
    """One event in through the service's internal route: {rule id: its delivery's id}."""
    answer = requests.post(
        stack.url("notifications") + "/internal/v1/events",
        json={
            "id": uuid.uuid4().hex,
            "type": kind,
            "organization_id": stack.org_id,
            "key": f"{kind}:{uuid.uuid4().hex}",
            "data": data,
        },
        headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"},
        timeout=20,
    )
    assert answer.status_code == 200, answer.text
    with bound_to(stack.database_url):
        rows = NotificationLog.select().where(NotificationLog.id.in_(answer.json()["logs"]))
        return {row.rule_id: row.id for row in rows}


def run_worker(stack, **env) -> str:
    """One pass of the real notify worker; its output (JSON log lines)."""
    done = run_cli(
        "worker",
        "notify",
        "--once",
        database_url=stack.database_url,
        env={**stack.env, **{k: str(v) for k, v in env.items()}},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def delivery(stack, log_id: int) -> dict:
    read = api(stack, "get", f"{LOGS}/{log_id}")
    assert read.status_code == 200, read.text
    return read.json()


def make_due(stack, log_id: int) -> None:
    with bound_to(stack.database_url):
        NotificationLog.update(next_attempt_at=utcnow() - dt.timedelta(seconds=1)).where(
            NotificationLog.id == log_id
        ).execute()


def scheduled_delay(row: dict, finished: dt.datetime) -> tuple[float, float]:
    """Bounds of the delay the worker scheduled: it counts from the end of the attempt, which
    lies between the attempt's start and the moment the worker pass returned."""
    next_at = dt.datetime.fromisoformat(row["next_attempt_at"])
    started = dt.datetime.fromisoformat(row["last_attempt_at"])
    return (next_at - finished).total_seconds(), (next_at - started).total_seconds()


def test_a_host_that_does_not_resolve_is_retried_with_backoff_then_dead(production):
    stack = production
    token = secrets.token_hex(12)
    target = f"https://{UNRESOLVABLE_HOST}/services/T0{token}/B0{token}/{token}"
    unresolvable = create_rule(stack, "Unresolvable", "SLACK", target, "incident.opened")
    assert unresolvable["target"] == f"https://{UNRESOLVABLE_HOST}/…"
    assert unresolvable["warnings"] == []  # accepted: a name may resolve tomorrow
    private = insert_rule(
        stack, "Private", "WEBHOOK", f"https://localhost:{free_port()}/hook", "incident.opened"
    )
    logs = send_event(stack, "incident.opened", {"repository": "hooks/api", "kind": "REVERT"})
    assert set(logs) == {unresolvable["id"], private}
    log_id = logs[unresolvable["id"]]

    output = run_worker(stack)
    finished = utcnow()
    first = delivery(stack, log_id)
    assert (first["status"], first["attempts"], first["response_code"]) == ("PENDING", 1, None)
    assert f"target host {UNRESOLVABLE_HOST} does not resolve" in first["last_error"]
    low, high = scheduled_delay(first, finished)
    assert high >= BACKOFF_SECONDS / 2 and low <= BACKOFF_SECONDS  # jittered down to half
    # A name resolving to a private address is no DNS failure: refused at once, unnamed.
    refused = delivery(stack, logs[private])
    assert (refused["status"], refused["attempts"], refused["last_error"]) == (
        "FAILED",
        1,
        PRIVATE_REFUSED,
    )

    output += run_worker(stack)  # not due before its backoff
    assert delivery(stack, log_id)["attempts"] == 1

    make_due(stack, log_id)
    output += run_worker(stack)
    finished = utcnow()
    second = delivery(stack, log_id)
    assert (second["status"], second["attempts"]) == ("PENDING", 2)
    low, high = scheduled_delay(second, finished)
    assert high >= BACKOFF_SECONDS and low <= 2 * BACKOFF_SECONDS  # doubled

    make_due(stack, log_id)
    output += run_worker(stack)
    dead = delivery(stack, log_id)
    assert (dead["status"], dead["attempts"]) == ("DEAD", 3)  # NOTIFICATIONS_MAX_ATTEMPTS
    assert dead["last_error"].startswith(f"target host {UNRESOLVABLE_HOST} does not resolve")
    make_due(stack, log_id)
    output += run_worker(stack)
    assert delivery(stack, log_id)["attempts"] == 3
    assert delivery(stack, logs[private])["attempts"] == 1

    # Every attempt was logged, and the target's secret path is in no error or log line.
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    attempts = [line for line in lines if line.get("log_id") == log_id]
    assert [line["status"] for line in attempts] == ["PENDING", "PENDING", "DEAD"]
    answers = api(stack, "get", LOGS).text + api(stack, "get", RULES).text
    for text in (output, answers, stack.log("notifications")):
        assert token not in text


def test_an_email_rule_saved_before_smtp_is_configured_sends_once_it_is(production):
    stack = production
    rule = create_rule(stack, "On-call", "EMAIL", "oncall@hooks.example", "deployment.failed")
    assert rule["warnings"] == [SMTP_MISSING]
    logs = send_event(stack, "deployment.failed", {"environment": "production"})
    log_id = logs[rule["id"]]

    run_worker(stack)  # SMTP_HOST not set
    finished = utcnow()
    waiting = delivery(stack, log_id)
    assert (waiting["status"], waiting["attempts"], waiting["last_error"]) == (
        "PENDING",
        1,
        SMTP_MISSING,
    )
    low, high = scheduled_delay(waiting, finished)
    assert high >= BACKOFF_SECONDS / 2 and low <= BACKOFF_SECONDS

    # The operator configures SMTP (and restarts the worker): the retry goes out.
    with SmtpReceiver() as smtp:
        make_due(stack, log_id)
        run_worker(
            stack, SMTP_HOST="127.0.0.1", SMTP_PORT=smtp.port, SMTP_FROM="alerts@hooks.example"
        )
        (mail,) = smtp.messages
    sent = delivery(stack, log_id)
    assert (sent["status"], sent["attempts"], sent["response_code"], sent["last_error"]) == (
        "SENT",
        2,
        250,
        None,
    )
    assert mail["to"] == ["oncall@hooks.example"]
    assert mail["message"]["Subject"] == "[DevMetrics] Deployment to production failed"


def test_an_http_target_fails_at_once_naming_the_setting_that_allows_it(production):
    stack = production
    with HttpReceiver() as receiver:
        token = secrets.token_hex(12)
        target = f"{receiver.url}?token={token}"
        body = {"name": "Plain", "trigger": "pull_request.opened", "channel": "WEBHOOK"}
        refused = api(stack, "post", RULES, json={**body, "target": target})
        assert refused.status_code == 422, refused.text
        assert ALLOW_PRIVATE in refused.json()["errors"]["target"][0]
        # Saved in a development setup that allowed it, now run as in production.
        rule_id = insert_rule(stack, "Plain", "WEBHOOK", target, "pull_request.opened")
        (warning,) = api(stack, "get", f"{RULES}/{rule_id}").json()["warnings"]
        assert warning.startswith("target: an https:// URL") and ALLOW_PRIVATE in warning
        logs = send_event(stack, "pull_request.opened", {"repository": "hooks/api", "number": 1})
        output = run_worker(stack)
        failed = delivery(stack, logs[rule_id])
        assert (failed["status"], failed["attempts"]) == ("FAILED", 1)
        assert failed["last_error"].startswith("target must be an https:// URL")
        assert ALLOW_PRIVATE in failed["last_error"]
        assert receiver.requests == []
    assert token not in output + json.dumps(failed)
