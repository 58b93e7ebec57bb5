"""Events from activity reach the notifications service through the outbox and become one
PENDING delivery per matching rule (conditions, cooldown, once per event key)."""

import hashlib
import hmac
import json
import uuid

import pytest
import requests

from services.notifications.conditions import matches
from services.notifications.logic import on_event
from shared.models import NotificationLog, NotificationRule, Organization
from shared.outbox import MessageRejected
from tests.helpers import WEBHOOK_SAMPLES, bound_to
from tests.services.conftest import connect_verified
from tests.services.test_auth import new_key

SAMPLES = WEBHOOK_SAMPLES


@pytest.mark.parametrize(
    "condition,expected",
    [
        ({}, True),
        ({"field": "risk_score", "op": ">=", "value": 70}, True),
        ({"field": "risk_score", "op": ">", "value": 80}, False),
        ({"field": "repository", "op": "in", "value": ["a/b", "c/d"]}, True),
        ({"field": "title", "op": "contains", "value": "fix"}, True),
        ({"field": "missing", "op": "=", "value": 1}, False),
        ({"field": "risk_score", "op": ">", "value": "text"}, False),
        (
            {
                "all": [
                    {"field": "risk_score", "op": ">=", "value": 70},
                    {"field": "repository", "op": "!=", "value": "a/b"},
                ]
            },
            False,
        ),
        (
            {
                "any": [
                    {"field": "risk_score", "op": "<", "value": 10},
                    {"field": "repository", "op": "=", "value": "a/b"},
                ]
            },
            True,
        ),
    ],
)
def test_condition_language(condition, expected):
    data = {"risk_score": 75, "repository": "a/b", "title": "A fix for it"}
    assert matches(condition, data) is expected


def test_matching_rules_get_one_delivery_per_event_and_cooldown_suppresses(seeded):
    org = Organization.get(Organization.slug == "techcorp")
    risky = NotificationRule.get(NotificationRule.name == "High-risk pull requests")
    quiet = NotificationRule.create(
        organization=org,
        name="Quiet",
        trigger="ai_review.completed",
        channel="WEBHOOK",
        target="https://example.test/hook",
        cooldown_seconds=3600,
    )
    NotificationRule.create(
        organization=org,
        name="Off",
        trigger="ai_review.completed",
        channel="WEBHOOK",
        target="https://example.test/off",
        enabled=False,
    )
    event = {
        "type": "ai_review.completed",
        "organization_id": org.id,
        "key": "review:1",
        "data": {"risk_score": 90, "repository": "techcorp/api-server"},
    }
    on_event(event, "m1")
    on_event(event, "m2")  # the same event again (a replay): nothing new
    logs = {
        (log.rule_id, log.event_key): str(log.status)
        for log in NotificationLog.select().where(NotificationLog.event_key == "review:1")
    }
    assert logs == {(risky.id, "review:1"): "PENDING", (quiet.id, "review:1"): "PENDING"}

    on_event({**event, "key": "review:2"}, "m3")  # another event within Quiet's cooldown
    second = {
        log.rule_id: str(log.status)
        for log in NotificationLog.select().where(NotificationLog.event_key == "review:2")
    }
    assert second == {risky.id: "PENDING", quiet.id: "SUPPRESSED"}
    low = {**event, "key": "review:3", "data": {"risk_score": 20}}
    on_event(low, "m4")  # below the High-risk rule's bound; Quiet has no condition
    assert (
        NotificationLog.select()
        .where(NotificationLog.event_key == "review:3", NotificationLog.rule == risky)
        .count()
        == 0
    )
    with pytest.raises(MessageRejected, match="unknown event type"):
        on_event({**event, "type": "nonsense"}, "m5")


def test_a_merged_pull_request_reaches_a_rule_end_to_end_once(stack, fake_github):
    writer = new_key(stack, "techcorp", "activity:write")
    headers = {"Authorization": f"Bearer {writer}"}
    base = stack.url("activity") + "/api/v1/orgs/techcorp/repositories"
    repo = connect_verified(stack, fake_github, "techcorp", "techcorp/notify-me", 880001)
    with bound_to(stack.database_url):
        rule = NotificationRule.create(
            organization=Organization.get(Organization.slug == "techcorp"),
            name="Merged",
            trigger="pull_request.merged",
            channel="WEBHOOK",
            target="https://example.test/merged",
        )
    payload = json.loads((SAMPLES / "pull_request/closed.payload.json").read_text())
    payload["repository"].update(full_name="techcorp/notify-me", id=880001)
    payload["pull_request"].update(merged=True, merged_at="2019-05-15T15:21:18Z")
    body = json.dumps(payload).encode()
    signature = (
        "sha256=" + hmac.new(repo["webhook_secret"].encode(), body, hashlib.sha256).hexdigest()
    )
    delivered = requests.post(
        stack.url("activity") + "/webhooks/github",
        data=body,
        timeout=10,
        headers={
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": signature,
            "Content-Type": "application/json",
        },
    )
    assert delivered.status_code == 202
    for _ in range(2):  # the second round is a replay: it must not notify again
        assert stack.cli("worker", "events", "--once").returncode == 0
        assert stack.cli("worker", "outbox", "--once").returncode == 0
        assert stack.cli("events", "replay", "--repository", "techcorp/notify-me").returncode == 0
    with bound_to(stack.database_url):
        logs = list(NotificationLog.select().where(NotificationLog.rule == rule.id))
        assert len(logs) == 1 and logs[0].status == "PENDING"
        assert logs[0].payload["data"]["repository"] == "techcorp/notify-me"
        assert logs[0].payload["data"]["number"] == payload["number"]
    requests.delete(f"{base}/{repo['id']}", headers=headers, timeout=10)
