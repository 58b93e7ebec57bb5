"""The real `devmetrics worker notify` process: killed with SIGKILL in the middle of a
delivery (the receiver hangs), its delivery is picked up by another run once the lease ends,
with the same idempotency key."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from shared import migrations
from shared.crypto import encrypt
from shared.models import NotificationLog, NotificationRule, Organization, utcnow
from tests.conftest import DEVMETRICS, ROOT, run_cli
from tests.helpers import bound_to, wait_until
from tests.receivers import Answer, HttpReceiver

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
