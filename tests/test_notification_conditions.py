"""Alert rules checked at save time: the condition language per trigger, trigger parameters,
channel targets; and how a matching event becomes a delivery (create_log, on_event)."""

import datetime as dt

import pytest

from services.notifications import logic
from services.notifications.conditions import TRIGGERS, matches, validate
from shared import crypto
from shared.config import Settings
from shared.errors import Conflict, Invalid
from shared.models import AuditLog, NotificationLog, NotificationRule, Organization, utcnow
from shared.outbox import MessageRejected

STRICT = Settings(notifications_allow_private_targets=False)
PERMISSIVE = Settings(notifications_allow_private_targets=True)
RISKY = {
    "all": [
        {"field": "risk_score", "op": ">=", "value": 70},
        {"field": "repository", "op": "in", "value": ["techcorp/api-server", "techcorp/web"]},
    ]
}


def test_every_trigger_of_the_issue_is_known():
    assert set(TRIGGERS) == {
        "ai_review.completed",
        "pull_request.opened",
        "pull_request.merged",
        "pull_request.review_requested",
        "pull_request.stale",
        "deployment.failed",
        "incident.opened",
        "metric.threshold",
        "digest.daily",
        "digest.weekly",
    }


@pytest.mark.parametrize(
    "trigger,condition",
    [
        ("ai_review.completed", {}),
        ("ai_review.completed", RISKY),
        (
            "ai_review.completed",
            {"any": [{"field": "risk_level", "op": "=", "value": "CRITICAL"}, RISKY]},
        ),
        ("pull_request.opened", {"field": "title", "op": "contains", "value": "hotfix"}),
        ("pull_request.review_requested", {"field": "reviewer", "op": "!=", "value": "bot"}),
        ("pull_request.stale", {"field": "age_hours", "op": ">", "value": 48.5}),
        ("deployment.failed", {"field": "production", "op": "=", "value": True}),
        ("incident.opened", {"field": "kind", "op": "in", "value": ["REVERT"]}),
        ("metric.threshold", {"field": "metric", "op": "=", "value": "change_failure_rate"}),
        ("digest.weekly", {}),
    ],
)
def test_valid_conditions_have_no_errors(trigger, condition):
    assert validate(condition, trigger) == {}


@pytest.mark.parametrize(
    "trigger,condition,path,fragment",
    [
        (
            "ai_review.completed",
            {"field": "riskscore", "op": ">=", "value": 70},
            "conditions.field",
            "unknown field 'riskscore' for ai_review.completed",
        ),
        (
            "ai_review.completed",
            {"all": [RISKY, {"field": "risk_score", "op": "=>", "value": 70}]},
            "conditions.all[1].op",
            "unknown operator '=>'",
        ),
        (
            # a field of another trigger is unknown here
            "pull_request.merged",
            {"field": "risk_score", "op": ">", "value": 1},
            "conditions.field",
            "unknown field 'risk_score'",
        ),
        (
            "ai_review.completed",
            {"field": "risk_score", "op": ">=", "value": "high"},
            "conditions.value",
            "risk_score is a number",
        ),
        (
            "ai_review.completed",
            {"field": "repository", "op": "in", "value": "techcorp/web"},
            "conditions.value",
            "'in' takes a list",
        ),
        (
            "ai_review.completed",
            {"field": "risk_score", "op": "contains", "value": 7},
            "conditions.value",
            "'contains' applies to text",
        ),
        (
            "deployment.failed",
            {"field": "production", "op": ">", "value": True},
            "conditions.value",
            "does not apply to production",
        ),
        ("ai_review.completed", {"all": []}, "conditions.all", "non-empty list"),
        (
            "ai_review.completed",
            {"field": "risk_score", "op": ">", "value": 1, "extra": 2},
            "conditions",
            "unknown keys ['extra']",
        ),
        ("ai_review.completed", {"field": "risk_score"}, "conditions", "missing ['op', 'value']"),
        ("ai_review.completed", [RISKY], "conditions", "a condition is an object"),
    ],
)
def test_invalid_conditions_name_the_problem(trigger, condition, path, fragment):
    errors = validate(condition, trigger)
    assert path in errors, errors
    assert any(fragment in message for message in errors[path]), errors


def test_nesting_is_bounded():
    condition = {"field": "risk_score", "op": ">", "value": 1}
    for _ in range(6):
        condition = {"all": [condition]}
    errors = validate(condition, "ai_review.completed")
    assert "nested deeper than 5 levels" in str(errors)


def test_a_validated_condition_matches_as_written():
    data = {"risk_score": 75, "repository": "techcorp/web", "risk_level": "HIGH"}
    assert matches(RISKY, data) is True
    assert matches(RISKY, {**data, "risk_score": 69}) is False
    assert matches(RISKY, {**data, "repository": "techcorp/other"}) is False


TEAM_PICKUP = {"metric": "pickup_time_median_s", "scope": "team", "op": ">", "value": 86400}


@pytest.mark.parametrize(
    "trigger,params,expected",
    [
        ("pull_request.stale", {"hours": 24}, {}),
        ("pull_request.stale", {}, {"params.hours": "required for pull_request.stale"}),
        ("pull_request.stale", {"hours": 0}, {"params.hours": "from 1 to 2160"}),
        ("pull_request.stale", {"hours": True}, {"params.hours": "from 1 to 2160"}),
        ("metric.threshold", TEAM_PICKUP, {}),
        ("metric.threshold", {**TEAM_PICKUP, "metric": "change_failure_rate", "value": 0.15}, {}),
        ("metric.threshold", {**TEAM_PICKUP, "metric": "reviews_given", "scope": "developer"}, {}),
        ("digest.daily", {}, {}),
        ("digest.daily", {"hour": 9}, {}),
        ("digest.weekly", {"hour": 24}, {"params.hour": "from 0 to 23"}),
        ("ai_review.completed", {"hours": 3}, {"params.hours": "unknown parameter"}),
        ("incident.opened", [], {"params": "an object"}),
    ],
)
def test_trigger_parameters(trigger, params, expected):
    errors = logic.params_errors(trigger, params)
    assert sorted(errors) == sorted(expected)
    for name, fragment in expected.items():
        assert fragment in errors[name][0]


def test_threshold_parameters_name_each_problem():
    errors = logic.params_errors(
        "metric.threshold",
        {"metric": "change_failure_rate", "scope": "developer", "op": "=", "value": -1, "x": 1},
    )
    assert sorted(errors) == ["params.metric", "params.op", "params.value", "params.x"]
    assert "unknown developer metric 'change_failure_rate'" in errors["params.metric"][0]
    missing = logic.params_errors("metric.threshold", {"scope": ["team"]})
    assert missing["params.scope"] == ["team or developer"]
    assert missing["params.metric"] == ["required for metric.threshold"]


@pytest.mark.parametrize(
    "channel,target,settings,ok",
    [
        ("SLACK", "https://hooks.slack.com/services/T0/B0/x", STRICT, True),
        ("WEBHOOK", "https://example.com/hook", STRICT, True),
        ("WEBHOOK", "http://example.com/hook", STRICT, False),
        ("WEBHOOK", "http://127.0.0.1:9/hook", PERMISSIVE, True),
        ("WEBHOOK", "https://127.0.0.1/hook", STRICT, False),
        ("WEBHOOK", "https://10.1.2.3/hook", STRICT, False),
        ("WEBHOOK", "https://[::1]/hook", STRICT, False),
        ("WEBHOOK", "https://169.254.169.254/latest", STRICT, False),
        ("SLACK", "https://localhost/hook", STRICT, False),
        ("WEBHOOK", "https://user:pw@example.com/hook", STRICT, False),
        ("WEBHOOK", "ftp://example.com/hook", PERMISSIVE, False),
        ("WEBHOOK", "https://example.com:99999/hook", STRICT, False),
        ("SLACK", "oncall@techcorp.example", STRICT, False),
        ("EMAIL", "oncall@techcorp.example", STRICT, True),
        ("EMAIL", "oncall", STRICT, False),
        ("EMAIL", "https://example.com/hook", STRICT, False),
    ],
)
def test_channel_targets(channel, target, settings, ok):
    errors = logic.target_errors(logic.Channel(channel), target, settings)
    assert (errors == {}) is ok, errors
    if not ok:
        assert list(errors) == ["target"]


def test_create_validates_everything_at_once_and_keeps_the_secret_encrypted(seeded):
    org = Organization.get(Organization.slug == "techcorp")
    with pytest.raises(Invalid) as caught:
        logic.create_rule(
            org,
            {
                "name": "Broken",
                "trigger": "pull_request.stale",
                "conditions": {"field": "nope", "op": "~", "value": 1},
                "channel": "WEBHOOK",
                "target": "http://example.com/x",
            },
            settings=STRICT,
        )
    assert sorted(caught.value.errors) == [
        "conditions.field",
        "conditions.op",
        "params.hours",
        "target",
    ]
    assert not NotificationRule.select().where(NotificationRule.name == "Broken").exists()

    rule, secret = logic.create_rule(
        org,
        {
            "name": "Risky",
            "trigger": "ai_review.completed",
            "conditions": RISKY,
            "channel": "WEBHOOK",
            "target": "https://example.com/hook",
        },
        settings=STRICT,
    )
    assert len(secret) == 64 and secret not in rule.secret_encrypted
    assert crypto.decrypt(NotificationRule.get_by_id(rule.id).secret_encrypted) == secret
    with pytest.raises(Conflict):
        logic.create_rule(
            org,
            {"name": "Risky", "trigger": "incident.opened", "channel": "EMAIL", "target": "a@b.co"},
            settings=STRICT,
        )
    # Changing the trigger re-checks the existing conditions against the new trigger.
    with pytest.raises(Invalid) as caught:
        logic.update_rule(rule, {"trigger": "pull_request.merged"}, settings=STRICT)
    assert "conditions.all[0].field" in caught.value.errors
    rule, new = logic.update_rule(
        rule, {"channel": "EMAIL", "target": "dev@techcorp.example"}, settings=STRICT
    )
    assert new is None and rule.secret_encrypted is None
    rule, new = logic.update_rule(
        rule, {"channel": "WEBHOOK", "target": "https://example.com/h"}, settings=STRICT
    )
    assert crypto.decrypt(rule.secret_encrypted) == new
    actions = [
        a.action
        for a in AuditLog.select()
        .where(AuditLog.target_type == "notification_rule", AuditLog.target_id == str(rule.id))
        .order_by(AuditLog.id)
    ]
    assert actions == [
        "notification_rule.created",
        "notification_rule.updated",
        "notification_rule.updated",
    ]


def _rule(org, name, trigger="ai_review.completed", **extra):
    return NotificationRule.create(
        organization=org,
        name=name,
        trigger=trigger,
        channel="WEBHOOK",
        target="https://example.com/hook",
        **extra,
    )


def test_create_log_is_once_per_event_key_and_the_cooldown_suppresses(seeded):
    org = Organization.get(Organization.slug == "techcorp")
    rule = _rule(org, "Cooling", cooldown_seconds=600)
    now = utcnow()
    payload = {"type": "ai_review.completed", "data": {"risk_score": 80}}
    first = logic.create_log(rule, "k1", payload, now=now)
    assert first.status == "PENDING" and first.next_attempt_at == now
    assert logic.create_log(rule, "k1", payload, now=now) is None
    second = logic.create_log(rule, "k2", payload, now=now + dt.timedelta(seconds=599))
    assert second.status == "SUPPRESSED" and second.next_attempt_at is None
    third = logic.create_log(rule, "k3", payload, now=now + dt.timedelta(seconds=601))
    assert third.status == "PENDING"
    # A failed delivery did not reach anyone: it does not hold the next one back.
    NotificationLog.update(status="DEAD").where(NotificationLog.rule == rule).execute()
    fourth = logic.create_log(rule, "k4", payload, now=now + dt.timedelta(seconds=602))
    assert fourth.status == "PENDING"


EVENTS = {
    "pull_request.opened": {"repository": "techcorp/web", "number": 7, "title": "Add"},
    "pull_request.merged": {"repository": "techcorp/web", "number": 7, "title": "Add"},
    "pull_request.review_requested": {"repository": "techcorp/web", "reviewer": "bob"},
    "deployment.failed": {"repository": "techcorp/web", "production": True},
    "incident.opened": {"repository": "techcorp/web", "kind": "REVERT"},
    "ai_review.completed": {"repository": "techcorp/web", "risk_score": 90},
}


@pytest.mark.parametrize("trigger", sorted(EVENTS))
def test_each_event_trigger_notifies_its_matching_rules(seeded, trigger):
    org = Organization.get(Organization.slug == "techcorp")
    NotificationRule.delete().execute()
    mine = _rule(
        org,
        "Mine",
        trigger,
        conditions={"field": "repository", "op": "=", "value": "techcorp/web"},
    )
    _rule(org, "Other repo", trigger, conditions={"field": "repository", "op": "=", "value": "x/y"})
    _rule(org, "Off", trigger, enabled=False)
    other_trigger = "incident.opened" if trigger != "incident.opened" else "deployment.failed"
    _rule(org, "Other trigger", other_trigger)
    event = {"type": trigger, "organization_id": org.id, "key": f"{trigger}:1"}
    created = logic.on_event({**event, "data": EVENTS[trigger]}, "m1")
    assert [(log.rule_id, str(log.status)) for log in created] == [(mine.id, "PENDING")]
    assert created[0].payload == {"type": trigger, "data": EVENTS[trigger]}
    assert logic.on_event({**event, "data": EVENTS[trigger]}, "m2") == []


def test_scheduled_triggers_and_bad_events_are_refused_from_outside(seeded):
    org = Organization.get(Organization.slug == "techcorp")
    with pytest.raises(MessageRejected, match="unknown event type 'digest.daily'"):
        logic.on_event({"type": "digest.daily", "organization_id": org.id, "key": "d"}, "m")
    with pytest.raises(MessageRejected, match="needs type, organization_id"):
        logic.on_event({"type": "incident.opened", "key": "d"}, "m")


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_the_test_buttons_sample_carries_every_field_of_its_trigger(seeded, trigger):
    from services.notifications import channels
    from services.notifications.conditions import TRIGGER_FIELDS

    rule = _rule(Organization.get(Organization.slug == "techcorp"), "Sample", trigger)
    sample = logic.sample_payload(rule)
    assert sample["type"] == trigger and sample["test"] is True
    assert set(sample["data"]) == set(TRIGGER_FIELDS[trigger])
    # Each value has its field's type: every valid `=` condition can be tried on it.
    for field in TRIGGER_FIELDS[trigger]:
        condition = {"field": field, "op": "=", "value": sample["data"][field]}
        assert validate(condition, trigger) == {}, field
        assert matches(condition, sample["data"]) is True
    assert channels.render(rule, sample)  # the delivery side renders it
