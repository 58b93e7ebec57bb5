"""The notifications API over real HTTP: rules (roles, validation at save time, secrets
shown once, audit), the test button against a real receiver, events in over the internal
route (once per message id), the delivery log with filters, pagination and retry."""

import datetime as dt
import hashlib
import hmac
import json
import uuid

import pytest
import requests

from shared import crypto
from shared.models import (
    AuditLog,
    NotificationLog,
    NotificationRule,
    Organization,
    Role,
    User,
    UserOrganization,
    utcnow,
)
from tests.helpers import INTERNAL_TOKEN, bound_to, free_port, start_service, stop, wait_ready
from tests.receivers import Answer, HttpReceiver
from tests.services.test_auth import new_key
from tests.services.test_organizations import session_token

RULES = "/api/v1/orgs/{org}/notification-rules"
LOGS = "/api/v1/orgs/{org}/notification-logs"


class Client:
    def __init__(self, base: str, token: str | None):
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def __call__(self, method: str, path: str, org="techcorp", **kwargs):
        url = self.base + path.format(org=org)
        return requests.request(method, url, headers=self.headers, timeout=20, **kwargs)


@pytest.fixture(scope="module")
def notifications(stack):
    """Two more notifications processes on the stack's database: one that refuses http and
    private targets (production) and has no SMTP server configured yet, one that allows them
    (development, loopback receivers) and has one."""
    servers = {}
    for name, allow, smtp_host in (
        ("strict", "false", ""),
        ("permissive", "true", "smtp.example.com"),
    ):
        port = free_port()
        env = {**stack.env, "NOTIFICATIONS_ALLOW_PRIVATE_TARGETS": allow, "SMTP_HOST": smtp_host}
        servers[name] = (start_service("notifications", port, env, stack.log_dir), port)
    try:
        for _, port in servers.values():
            wait_ready(f"http://127.0.0.1:{port}")
        yield {name: f"http://127.0.0.1:{port}" for name, (_, port) in servers.items()}
    finally:
        for process, _ in servers.values():
            stop(process)


@pytest.fixture(scope="module")
def tokens(stack):
    """techcorp: alice OWNER, bob ADMIN, charlie MEMBER, a new VIEWER; eve elsewhere."""
    with bound_to(stack.database_url):
        techcorp = Organization.get(Organization.slug == "techcorp")
        viewer = User.create(github_id=7_700_001, login="nr-viewer", name="V", email="v@x.example")
        UserOrganization.create(user=viewer, organization=techcorp, role=Role.VIEWER)
        eve = User.create(github_id=7_700_002, login="nr-eve", name="E", email="e@x.example")
        other = Organization.create(name="NR Other", slug="nr-other", plan="PRO")
        UserOrganization.create(user=eve, organization=other, role=Role.OWNER)
        return {
            "OWNER": session_token(User.get(User.login == "alice")),
            "ADMIN": session_token(User.get(User.login == "bob")),
            "MEMBER": session_token(User.get(User.login == "charlie")),
            "VIEWER": session_token(viewer),
            "FOREIGN": session_token(eve),
        }


def webhook_rule(name, **extra):
    return {
        "name": name,
        "trigger": "ai_review.completed",
        "conditions": {"all": [{"field": "risk_score", "op": ">=", "value": 70}]},
        "channel": "WEBHOOK",
        "target": "https://hooks.example.com/devmetrics",
        **extra,
    }


def audit_actions(stack, rule_id):
    with bound_to(stack.database_url):
        return [
            a.action
            for a in AuditLog.select()
            .where(AuditLog.target_type == "notification_rule", AuditLog.target_id == str(rule_id))
            .order_by(AuditLog.id)
        ]


def test_roles_read_and_change_rules(stack, notifications, tokens):
    base = notifications["strict"]
    as_ = {role: Client(base, token) for role, token in tokens.items()}
    for role in ("MEMBER", "VIEWER"):
        refused = as_[role]("post", RULES, json=webhook_rule(f"by {role}"))
        assert refused.status_code == 403, refused.text
    assert as_["FOREIGN"]("post", RULES, json=webhook_rule("foreign")).status_code == 404
    assert as_["FOREIGN"]("get", RULES).status_code == 404

    created = as_["ADMIN"]("post", RULES, json=webhook_rule("Risky reviews", cooldown_seconds=60))
    assert created.status_code == 201, created.text
    rule = created.json()
    secret = rule["secret"]
    assert len(secret) == 64 and rule["has_secret"] is True
    # The URL target shows only its host; the secret is never shown again.
    assert rule["target"] == "https://hooks.example.com/…"
    for role in ("OWNER", "ADMIN", "MEMBER", "VIEWER"):
        listed = as_[role]("get", RULES)
        assert listed.status_code == 200
        mine = [r for r in listed.json() if r["id"] == rule["id"]]
        assert len(mine) == 1 and "secret" not in mine[0]
        assert mine[0]["conditions"] == webhook_rule("")["conditions"]
    with bound_to(stack.database_url):
        stored = NotificationRule.get_by_id(rule["id"])
        assert secret not in stored.secret_encrypted
        assert crypto.decrypt(stored.secret_encrypted) == secret
        assert stored.created_by.login == "bob" and stored.cooldown_seconds == 60

    path = RULES + f"/{rule['id']}"
    assert as_["VIEWER"]("patch", path, json={"enabled": False}).status_code == 403
    changed = as_["OWNER"]("patch", path, json={"enabled": False, "cooldown_seconds": 0})
    assert changed.status_code == 200 and changed.json()["enabled"] is False
    assert changed.json()["secret"] is None  # still the same secret, not shown

    rotated = as_["ADMIN"]("post", path + "/rotate-secret")
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret != secret
    with bound_to(stack.database_url):
        assert crypto.decrypt(NotificationRule.get_by_id(rule["id"]).secret_encrypted) == (
            new_secret
        )
    to_email = as_["ADMIN"](
        "patch", path, json={"channel": "EMAIL", "target": "oncall@techcorp.example"}
    )
    assert to_email.status_code == 200 and to_email.json()["has_secret"] is False
    assert to_email.json()["target"] == "oncall@techcorp.example"
    assert as_["ADMIN"]("post", path + "/rotate-secret").status_code == 409

    assert as_["MEMBER"]("delete", path).status_code == 403
    assert as_["ADMIN"]("delete", path).status_code == 204
    assert as_["VIEWER"]("get", path).status_code == 404
    assert audit_actions(stack, rule["id"]) == [
        "notification_rule.created",
        "notification_rule.updated",
        "notification_rule.secret_rotated",
        "notification_rule.updated",
        "notification_rule.deleted",
    ]


def test_api_keys_need_the_notifications_scopes(stack, notifications):
    reader = Client(notifications["strict"], new_key(stack, "techcorp", "notifications:read"))
    writer = Client(notifications["strict"], new_key(stack, "techcorp", "notifications:write"))
    assert reader("get", RULES).status_code == 200
    assert reader("post", RULES, json=webhook_rule("by reader")).status_code == 403
    made = writer("post", RULES, json=webhook_rule("By a key", channel="SLACK"))
    assert made.status_code == 201, made.text
    assert made.json()["secret"] is None and made.json()["has_secret"] is False
    assert writer("delete", RULES + f"/{made.json()['id']}").status_code == 204


def test_invalid_rules_are_422_naming_the_problem_at_save_time(stack, notifications, tokens):
    admin = Client(notifications["strict"], tokens["ADMIN"])
    cases = [
        (
            webhook_rule("x", conditions={"field": "risk", "op": ">=", "value": 70}),
            "conditions.field",
            "unknown field 'risk' for ai_review.completed",
        ),
        (
            webhook_rule(
                "x",
                conditions={"any": [{"field": "risk_score", "op": "like", "value": 70}]},
            ),
            "conditions.any[0].op",
            "unknown operator 'like'",
        ),
        (webhook_rule("x", trigger="pull_request.stale"), "params.hours", "required"),
        (
            webhook_rule(
                "x",
                trigger="metric.threshold",
                conditions={},
                params={"metric": "pickup", "scope": "team", "op": ">", "value": 86400},
            ),
            "params.metric",
            "unknown team metric 'pickup'",
        ),
        (webhook_rule("x", target="http://hooks.example.com/x"), "target", "https://"),
        (webhook_rule("x", target="https://192.168.1.10/x"), "target", "private"),
        # A name no DNS can hold (an empty label) is refused now; one that merely does not
        # resolve yet is accepted (its deliveries are retried).
        (webhook_rule("x", target="https://hooks..example.com/x"), "target", "valid host name"),
        (webhook_rule("x", channel="EMAIL", target="not-an-address"), "target", "e-mail"),
    ]
    for body, field, fragment in cases:
        response = admin("post", RULES, json=body)
        assert response.status_code == 422, (body, response.text)
        errors = response.json()["errors"]
        assert field in errors and fragment in errors[field][0], (field, errors)
    # Marshmallow-level refusals name the field too.
    for body, field in [
        (webhook_rule("x", trigger="push"), "trigger"),
        (webhook_rule("x", channel="SMS"), "channel"),
        (webhook_rule("x", colour="red"), "colour"),
        (webhook_rule("x", cooldown_seconds=-1), "cooldown_seconds"),
        ({"trigger": "incident.opened"}, "name"),
    ]:
        response = admin("post", RULES, json=body)
        assert response.status_code == 422
        assert field in response.json()["errors"]["json"], response.text
    with bound_to(stack.database_url):
        assert not NotificationRule.select().where(NotificationRule.name == "x").exists()

    first = admin("post", RULES, json=webhook_rule("Twice"))
    assert first.status_code == 201
    assert admin("post", RULES, json=webhook_rule("Twice")).status_code == 409
    # A change is validated against the rule as it would be: a new trigger without the
    # fields its conditions use is refused, and nothing changes.
    path = RULES + f"/{first.json()['id']}"
    moved = admin("patch", path, json={"trigger": "deployment.failed"})
    assert moved.status_code == 422 and "conditions.all[0].field" in moved.json()["errors"]
    assert admin("get", path).json()["trigger"] == "ai_review.completed"
    admin("delete", path)


def test_http_targets_are_accepted_only_where_private_targets_are_allowed(notifications, tokens):
    body = webhook_rule("Loopback", target="http://127.0.0.1:9/hook")
    strict = Client(notifications["strict"], tokens["ADMIN"])
    assert strict("post", RULES, json=body).status_code == 422
    permissive = Client(notifications["permissive"], tokens["ADMIN"])
    created = permissive("post", RULES, json=body)
    assert created.status_code == 201, created.text
    permissive("delete", RULES + f"/{created.json()['id']}")


def test_an_http_target_is_refused_naming_the_setting_that_allows_it(notifications, tokens):
    strict = Client(notifications["strict"], tokens["ADMIN"])
    for channel, target in (
        ("WEBHOOK", "http://hooks.example.com/devmetrics"),
        ("SLACK", "http://hooks.slack.example/services/T0/B0/x"),
        ("WEBHOOK", "http://127.0.0.1:9/hook"),
    ):
        body = webhook_rule("Plain http", channel=channel, target=target)
        refused = strict("post", RULES, json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["message"] == "invalid notification rule: target"
        (message,) = refused.json()["errors"]["target"]
        assert "https://" in message and "NOTIFICATIONS_ALLOW_PRIVATE_TARGETS=true" in message
    created = strict("post", RULES, json=webhook_rule("Goes plain"))
    assert created.status_code == 201, created.text
    path = RULES + f"/{created.json()['id']}"
    moved = strict("patch", path, json={"target": "http://hooks.example.com/devmetrics"})
    assert moved.status_code == 422, moved.text
    assert "NOTIFICATIONS_ALLOW_PRIVATE_TARGETS=true" in moved.json()["errors"]["target"][0]
    assert strict("get", path).json()["target"] == "https://hooks.example.com/…"
    assert "Plain http" not in [rule["name"] for rule in strict("get", RULES).json()]
    strict("delete", path)


SMTP_WARNING = "SMTP_HOST is not set: e-mails cannot be sent"


def test_an_email_rule_saved_before_smtp_is_configured_carries_a_warning(notifications, tokens):
    # Saved, not refused: an organization's admin may write rules before the operator sets
    # SMTP up (and an API client's provisioning must not depend on it); every read says why
    # its e-mails cannot go out yet, for as long as that is so.
    strict = Client(notifications["strict"], tokens["ADMIN"])  # no SMTP_HOST
    viewer = Client(notifications["strict"], tokens["VIEWER"])
    configured = Client(notifications["permissive"], tokens["ADMIN"])  # SMTP_HOST set
    body = webhook_rule("On-call e-mail", channel="EMAIL", target="oncall@techcorp.example")
    created = strict("post", RULES, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["warnings"] == [SMTP_WARNING]
    rule_id = created.json()["id"]
    path = RULES + f"/{rule_id}"
    assert viewer("get", path).json()["warnings"] == [SMTP_WARNING]
    (listed,) = [rule for rule in viewer("get", RULES).json() if rule["id"] == rule_id]
    assert listed["warnings"] == [SMTP_WARNING]
    changed = strict("patch", path, json={"cooldown_seconds": 600})
    assert changed.status_code == 200 and changed.json()["warnings"] == [SMTP_WARNING]
    # Where SMTP is configured the same rule has nothing to warn about, as have other channels.
    assert configured("get", path).json()["warnings"] == []
    hook = strict("post", RULES, json=webhook_rule("Not e-mail"))
    assert hook.status_code == 201 and hook.json()["warnings"] == []
    as_webhook = strict(
        "patch", path, json={"channel": "WEBHOOK", "target": "https://hooks.example.com/x"}
    )
    assert as_webhook.status_code == 200 and as_webhook.json()["warnings"] == []
    for made in (rule_id, hook.json()["id"]):
        strict("delete", RULES + f"/{made}")


def test_the_test_button_sends_a_signed_sample_and_returns_the_outcome(
    stack, notifications, tokens
):
    admin = Client(notifications["permissive"], tokens["ADMIN"])
    viewer = Client(notifications["permissive"], tokens["VIEWER"])
    with HttpReceiver() as receiver:
        created = admin("post", RULES, json=webhook_rule("Test me", target=receiver.url))
        assert created.status_code == 201, created.text
        rule_id, secret = created.json()["id"], created.json()["secret"]
        path = RULES + f"/{rule_id}/test"
        assert viewer("post", path).status_code == 403
        outcome = admin("post", path)
        assert outcome.status_code == 200, outcome.text
        assert outcome.json() == {"status": "SENT", "response_code": 200, "error": None}
        assert len(receiver.requests) == 1
        received = receiver.requests[0]
        expected = "sha256=" + hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
        assert received.headers["X-DevMetrics-Signature"] == expected
        assert received.headers["X-DevMetrics-Delivery"]
        assert "ai_review.completed" in received.body.decode()

        receiver.script(Answer(400, body="no such hook"))
        failed = admin("post", path).json()
        assert failed["status"] == "FAILED" and failed["response_code"] == 400
        assert len(receiver.requests) == 2  # a test is one attempt, never retried
    with bound_to(stack.database_url):
        assert not NotificationLog.select().where(NotificationLog.rule == rule_id).exists()
    assert audit_actions(stack, rule_id)[-2:] == [
        "notification_rule.tested",
        "notification_rule.tested",
    ]
    admin("delete", RULES + f"/{rule_id}")


def post_event(stack, body, token=INTERNAL_TOKEN):
    return requests.post(
        stack.url("notifications") + "/internal/v1/events",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def test_events_in_match_rules_once_per_message_and_per_event_key(stack, tokens):
    # In an organization of its own, so no other rule (the seed's) gets deliveries.
    owner = Client(stack.url("notifications"), tokens["FOREIGN"])
    rule = owner("post", RULES, org="nr-other", json=webhook_rule("Events in")).json()
    with bound_to(stack.database_url):
        org_id = Organization.get(Organization.slug == "nr-other").id
    event = {
        "id": str(uuid.uuid4()),
        "type": "ai_review.completed",
        "organization_id": org_id,
        "key": f"ai_review.completed:{uuid.uuid4()}",
        "data": {"risk_score": 88, "repository": "techcorp/api-server", "number": 3},
    }
    assert post_event(stack, event, token=tokens["OWNER"]).status_code == 401
    first = post_event(stack, event)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "processed"
    log_ids = first.json()["logs"]
    again = post_event(stack, event)  # the same message again: applied once
    assert again.json() == {"id": event["id"], "status": "duplicate", "logs": []}
    replay = post_event(stack, {**event, "id": str(uuid.uuid4())})  # same event, new message
    assert replay.json()["status"] == "processed" and replay.json()["logs"] == []
    low = post_event(
        stack, {**event, "id": str(uuid.uuid4()), "key": "low", "data": {"risk_score": 10}}
    )
    with bound_to(stack.database_url):
        mine = list(NotificationLog.select().where(NotificationLog.organization == org_id))
        assert [log.id for log in mine] == log_ids
        assert len(mine) == 1 and mine[0].rule_id == rule["id"] and mine[0].status == "PENDING"
        assert mine[0].payload == {"type": event["type"], "data": event["data"]}
        assert not (
            NotificationLog.select()
            .where((NotificationLog.rule == rule["id"]) & (NotificationLog.event_key == "low"))
            .exists()
        )
    assert low.status_code == 200
    bad = post_event(stack, {**event, "id": str(uuid.uuid4()), "type": "digest.daily"})
    assert bad.status_code == 422 and "unknown event type" in bad.json()["message"]
    assert post_event(stack, {"type": "incident.opened"}).status_code == 422
    owner("delete", RULES + f"/{rule['id']}", org="nr-other")


def test_delivery_log_filters_pages_and_retries(stack, tokens):
    admin = Client(stack.url("notifications"), tokens["ADMIN"])
    viewer = Client(stack.url("notifications"), tokens["VIEWER"])
    hook = admin("post", RULES, json=webhook_rule("Log hook")).json()
    mail = admin(
        "post",
        RULES,
        json=webhook_rule("Log mail", channel="EMAIL", target="dev@techcorp.example"),
    ).json()
    base = utcnow().replace(microsecond=0) - dt.timedelta(days=2)
    rows = [
        # rule, key, status, hours after base
        (hook, "h1", "SENT", 0),
        (hook, "h2", "FAILED", 1),
        (hook, "h3", "DEAD", 2),
        (mail, "m1", "SENT", 3),
        (mail, "m2", "PENDING", 4),
    ]
    ids = {}
    with bound_to(stack.database_url):
        for rule, key, status, hours in rows:
            ids[key] = NotificationLog.create(
                rule=rule["id"],
                organization=Organization.get(Organization.slug == "techcorp"),
                event_key=key,
                status=status,
                attempts=3 if status in ("FAILED", "DEAD") else 1,
                last_error="503 Service Unavailable" if status == "DEAD" else None,
                payload={"type": "ai_review.completed", "data": {"risk_score": 90}},
                created_at=base + dt.timedelta(hours=hours),
            ).id

    def keys(path, **params):
        response = viewer("get", path, params=params)
        assert response.status_code == 200, response.text
        return [log["event_key"] for log in response.json()]

    window = {"from": base.isoformat(), "to": (base + dt.timedelta(hours=5)).isoformat()}
    assert keys(LOGS, **window) == ["m2", "m1", "h3", "h2", "h1"]
    assert keys(LOGS, status="SENT", **window) == ["m1", "h1"]
    assert keys(LOGS, channel="EMAIL", **window) == ["m2", "m1"]
    assert keys(LOGS, rule=hook["id"]) == ["h3", "h2", "h1"]
    hour_1 = (base + dt.timedelta(hours=1)).isoformat()
    hour_3 = (base + dt.timedelta(hours=3)).isoformat()
    assert keys(LOGS, **{"from": hour_1, "to": hour_3}) == ["h3", "h2"]
    assert keys(RULES + f"/{mail['id']}/logs") == ["m2", "m1"]
    assert keys(RULES + f"/{hook['id']}/logs", status="DEAD") == ["h3"]
    page = viewer("get", LOGS, params={**window, "page": 2, "page_size": 2})
    assert [log["event_key"] for log in page.json()] == ["h3", "h2"]
    assert json.loads(page.headers["X-Pagination"])["total"] == 5
    one = viewer("get", LOGS + f"/{ids['h3']}").json()
    assert one["rule_name"] == "Log hook" and one["channel"] == "WEBHOOK"
    assert one["attempts"] == 3 and one["last_error"] == "503 Service Unavailable"
    bad = viewer("get", LOGS, params={"status": "LOST"})
    assert bad.status_code == 422 and "status" in bad.json()["errors"]["query"]
    backwards = viewer("get", LOGS, params={"from": hour_3, "to": hour_1})
    assert backwards.status_code == 422

    assert viewer("post", LOGS + f"/{ids['h3']}/retry").status_code == 403
    for key in ("h2", "h3"):
        retried = admin("post", LOGS + f"/{ids[key]}/retry")
        assert retried.status_code == 200, retried.text
        assert retried.json()["status"] == "PENDING" and retried.json()["attempts"] == 0
    for key in ("h1", "m2", "h2"):  # SENT, PENDING, and h2 again (now PENDING)
        assert admin("post", LOGS + f"/{ids[key]}/retry").status_code == 409
    with bound_to(stack.database_url):
        again = NotificationLog.get_by_id(ids["h3"])
        assert again.next_attempt_at is not None and again.locked_by is None
        retries = (
            AuditLog.select()
            .where(AuditLog.action == "notification_log.retried")
            .where(AuditLog.target_id.in_([str(ids["h2"]), str(ids["h3"])]))
            .count()
        )
        assert retries == 2
    foreign = Client(stack.url("notifications"), tokens["FOREIGN"])
    assert foreign("get", LOGS + f"/{ids['h1']}", org="nr-other").status_code == 404
    for rule in (hook, mail):
        admin("delete", RULES + f"/{rule['id']}")
