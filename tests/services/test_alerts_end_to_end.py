"""Issue 7's "done when": a rule "AI review risk >= 70 on any repository -> webhook" fires
exactly once per qualifying review, end to end: a signed webhook in at the activity service,
the review by the metrics service, the delivery by the notifications service to a real
receiver on loopback; the delivery log shows it; a failing receiver is retried, then DEAD."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid

import requests

from shared import crypto
from shared.models import (
    AIReview,
    NotificationLog,
    NotificationRule,
    Organization,
    PullRequest,
    Repository,
    User,
    UserOrganization,
    utcnow,
)
from tests.conftest import run_cli
from tests.helpers import WEBHOOK_SAMPLES, bound_to
from tests.receivers import Answer, HttpReceiver
from tests.services.test_auth import new_key
from tests.test_ai_review import TOKEN_FILES

SAMPLES = WEBHOOK_SAMPLES
WEBHOOK_SECRET = "e2e-github-secret"
RULE_SECRET = "e2e-rule-secret"
MAX_ATTEMPTS = 3


def _deliver(stack, payload: dict) -> None:
    body = json.dumps(payload).encode()
    digest = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    response = requests.post(
        stack.url("activity") + "/webhooks/github",
        data=body,
        timeout=10,
        headers={
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": f"sha256={digest}",
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 202, response.text


def _workers(stack, *names: str) -> None:
    env = {
        **stack.env,
        "NOTIFICATIONS_ALLOW_PRIVATE_TARGETS": "true",  # the receiver is on loopback
        "NOTIFICATIONS_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
    }
    for name in names:
        result = run_cli("worker", name, "--once", database_url=stack.database_url, env=env)
        assert result.returncode == 0, result.stderr


def _pipeline(stack) -> None:
    _workers(stack, "events", "outbox", "ai_review", "outbox", "notify")


def _logs(stack, rule_id: int) -> list[NotificationLog]:
    with bound_to(stack.database_url):
        return list(
            NotificationLog.select()
            .where(NotificationLog.rule == rule_id)
            .order_by(NotificationLog.id)
        )


def test_a_risky_review_alerts_a_webhook_exactly_once_and_a_failing_one_goes_dead(
    stack, fake_github
):
    with HttpReceiver() as receiver:
        with bound_to(stack.database_url):
            org = Organization.create(name="Alerts E2E", slug="alerts-e2e", plan="PRO")
            # An admin signed in with GitHub connected it: the review lists the changed files
            # with their token.
            admin = User.create(login="alerts-admin", oauth_token_encrypted=crypto.encrypt("gho_x"))
            UserOrganization.create(user=admin, organization=org, role="ADMIN")
            repo = Repository.create(
                organization=org,
                full_name="alerts-e2e/api",
                github_id=880401,
                webhook_secret_encrypted=crypto.encrypt(WEBHOOK_SECRET),
                verified_at=utcnow(),
                connected_by=admin,
            )
            rule = NotificationRule.create(
                organization=org,
                name="Risky pull requests",
                trigger="ai_review.completed",
                conditions={"all": [{"field": "risk_score", "op": ">=", "value": 70}]},
                channel="WEBHOOK",
                target=receiver.url,
                secret_encrypted=crypto.encrypt(RULE_SECRET),
            )
        opened = json.loads((SAMPLES / "pull_request/opened.payload.json").read_text())
        opened["repository"].update(full_name="alerts-e2e/api", id=880401)
        opened["pull_request"]["id"] = 880401001
        number = opened["number"]
        # Auth, migrations and CI changed, no tests: the heuristic's 72 (tests/test_ai_review).
        fake_github.rest = {"pr_files": {number: TOKEN_FILES}}

        _deliver(stack, opened)
        _pipeline(stack)
        (sent,) = _logs(stack, rule.id)
        assert (sent.status, sent.attempts, sent.response_code) == ("SENT", 1, 200)
        (request,) = receiver.requests
        expected = hmac.new(RULE_SECRET.encode(), request.body, hashlib.sha256).hexdigest()
        assert request.headers["X-DevMetrics-Signature"] == f"sha256={expected}"
        body = json.loads(request.body)
        assert json.dumps(body).count('"risk_score": 72') == 1, body

        # The same webhook again (a redelivery) and a replay: the review exists, nothing more.
        _deliver(stack, opened)
        assert (
            run_cli(
                "events",
                "replay",
                "--repository",
                "alerts-e2e/api",
                database_url=stack.database_url,
            ).returncode
            == 0
        )
        _pipeline(stack)
        assert len(receiver.requests) == 1 and len(_logs(stack, rule.id)) == 1

        # New commits (a new head) get a new review and a new alert: the receiver now fails.
        receiver.script(*[Answer(status=500, body="boom")] * MAX_ATTEMPTS)
        pushed = json.loads(json.dumps(opened))
        pushed["action"] = "synchronize"
        pushed["pull_request"]["head"]["sha"] = "f" * 40
        pushed["pull_request"]["updated_at"] = "2019-05-15T16:00:00Z"
        _deliver(stack, pushed)
        _pipeline(stack)
        for _ in range(MAX_ATTEMPTS - 1):  # skip each backoff wait: due now
            with bound_to(stack.database_url):
                NotificationLog.update(next_attempt_at=NotificationLog.created_at).where(
                    (NotificationLog.rule == rule.id) & (NotificationLog.status == "PENDING")
                ).execute()
            _workers(stack, "notify")
        first, failing = _logs(stack, rule.id)
        assert first.status == "SENT"
        assert (failing.status, failing.attempts, failing.response_code) == ("DEAD", 3, 500)
        assert len(receiver.requests) == 1 + MAX_ATTEMPTS
        deliveries = {r.headers["X-DevMetrics-Delivery"] for r in receiver.requests[1:]}
        assert len(deliveries) == 1  # the same idempotency key on every attempt
        with bound_to(stack.database_url):
            pr = PullRequest.get(PullRequest.repository == repo.id)
            assert AIReview.select().where(AIReview.pull_request == pr.id).count() == 2

        # The delivery log shows both.
        reader = new_key(stack, "alerts-e2e", "notifications:read")
        listed = requests.get(
            stack.url("notifications") + "/api/v1/orgs/alerts-e2e/notification-logs",
            headers={"Authorization": f"Bearer {reader}"},
            timeout=10,
        )
        assert listed.status_code == 200, listed.text
        assert sorted(row["status"] for row in listed.json()) == ["DEAD", "SENT"]
        with bound_to(stack.database_url):
            Organization.delete_by_id(org.id)
            User.delete_by_id(admin.id)
