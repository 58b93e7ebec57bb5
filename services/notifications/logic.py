"""Notifications business logic: alert rules, the events that match them, the delivery log
(no Flask here)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import secrets
from urllib.parse import urlsplit

import peewee as pw

from services.notifications import channels, conditions
from services.notifications.conditions import TRIGGER_FIELDS, TRIGGERS, matches
from shared import audit, crypto
from shared.config import Settings
from shared.database import db
from shared.errors import Conflict, Invalid, NotFound, Unavailable
from shared.messages import EVENT_TYPES, Event
from shared.models import (
    Channel,
    DeliveryStatus,
    NotificationLog,
    NotificationRule,
    Organization,
    utcnow,
)

# EVENT_TYPES: the events other services send (shared/messages.py); the other triggers come
# from the scheduled pass (schedule.py).
SCHEDULED_TRIGGERS = set(TRIGGERS) - EVENT_TYPES
# A rule's recent deliveries in these states hold back new ones during its cooldown; a
# failed one does not (the news never arrived).
COOLING_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.SENT)
RETRYABLE_STATUSES = (DeliveryStatus.FAILED, DeliveryStatus.DEAD)
MAX_TARGET_LENGTH = 2048
EMAIL_RE = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
# One label of a host name as DNS holds it (after IDNA encoding): 1 to 63 letters, digits,
# hyphens (not at either end) or underscores.
HOST_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")

# metric.threshold: the daily figures a rule may watch, per scope (TeamMetric and
# DeveloperMetric columns; durations in seconds, change_failure_rate a fraction 0..1).
THRESHOLD_METRICS = {
    "team": (
        "active_developers",
        "commits",
        "prs_opened",
        "prs_merged",
        "reviews",
        "open_prs",
        "deployments",
        "failed_deployments",
        "incidents_opened",
        "cycle_time_median_s",
        "cycle_time_p90_s",
        "coding_time_median_s",
        "pickup_time_median_s",
        "pickup_time_p90_s",
        "review_time_median_s",
        "review_time_p90_s",
        "deploy_time_median_s",
        "lead_time_median_s",
        "change_failure_rate",
        "time_to_restore_median_s",
    ),
    "developer": (
        "commits",
        "prs_opened",
        "prs_merged",
        "reviews_given",
        "review_comments",
        "cycle_time_median_s",
        "coding_time_median_s",
        "pickup_time_median_s",
        "review_time_median_s",
    ),
}


# --- rules -------------------------------------------------------------------------------


def rules_of(organization):
    return (
        NotificationRule.select()
        .where(NotificationRule.organization == organization)
        .order_by(NotificationRule.name)
    )


def get_rule(organization, rule_id: int) -> NotificationRule:
    rule = rules_of(organization).where(NotificationRule.id == rule_id).first()
    if rule is None:
        raise NotFound("notification rule not found")
    return rule


def _integer(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def params_errors(trigger: str, params) -> dict[str, list[str]]:
    """Problems of a trigger's parameters, as {"params.<name>": [messages]}."""
    if not isinstance(params, dict):
        return {"params": ["an object"]}
    errors: dict[str, list[str]] = {}
    if trigger == "pull_request.stale":
        allowed, required = {"hours"}, {"hours"}
    elif trigger == "metric.threshold":
        allowed = required = {"metric", "scope", "op", "value"}
    elif trigger in ("digest.daily", "digest.weekly"):
        allowed, required = {"hour"}, set()
    else:
        allowed = required = set()
    for name in sorted(set(params) - allowed):
        known = ", ".join(sorted(allowed)) or "none"
        errors[f"params.{name}"] = [f"unknown parameter for {trigger}; known: {known}"]
    for name in sorted(required - set(params)):
        errors[f"params.{name}"] = [f"required for {trigger}"]
    if "hours" in params and not _integer(params["hours"], 1, 24 * 90):
        errors["params.hours"] = ["a whole number of hours from 1 to 2160"]
    if "hour" in params and not _integer(params["hour"], 0, 23):
        errors["params.hour"] = ["an hour of the day from 0 to 23 (the organization's time zone)"]
    if trigger == "metric.threshold":
        scope, metric, op = params.get("scope"), params.get("metric"), params.get("op")
        if "scope" in params and scope not in ("team", "developer"):
            errors["params.scope"] = ["team or developer"]
        elif (
            scope in ("team", "developer")
            and "metric" in params
            and metric not in THRESHOLD_METRICS[scope]
        ):
            errors["params.metric"] = [
                f"unknown {scope} metric {metric!r}; known: " + ", ".join(THRESHOLD_METRICS[scope])
            ]
        if "op" in params and op not in (">", ">=", "<", "<="):
            errors["params.op"] = ["one of > >= < <="]
        value = params.get("value")
        if "value" in params and (
            not isinstance(value, int | float) or isinstance(value, bool) or value < 0
        ):
            errors["params.value"] = ["a number >= 0 in the metric's unit (seconds, or 0..1)"]
    return errors


def _looks_private(host: str) -> bool:
    """A host that names a private machine without a DNS lookup (the delivery worker also
    checks what a name resolves to, at every attempt)."""
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not ip.is_global


def _valid_host(host: str) -> bool:
    """An IP address or a name DNS could hold. A name that does not resolve today is valid (it
    may tomorrow: its deliveries are retried); one that never can is refused now."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        name = host.encode("idna").decode("ascii").rstrip(".")
    except UnicodeError:
        return False
    return 0 < len(name) <= 253 and all(HOST_LABEL_RE.match(part) for part in name.split("."))


def target_errors(channel: Channel, target, settings: Settings) -> dict[str, list[str]]:
    if not isinstance(target, str) or not target or len(target) > MAX_TARGET_LENGTH:
        return {"target": [f"1 to {MAX_TARGET_LENGTH} characters"]}
    if channel == Channel.EMAIL:
        ok = EMAIL_RE.match(target) and len(target) <= 254
        return {} if ok else {"target": ["an e-mail address (name@example.com)"]}
    allow_private = settings.notifications_allow_private_targets
    try:
        parts = urlsplit(target)
        host = parts.hostname
        parts.port  # noqa: B018 (raises on a malformed port)
    except ValueError:
        return {"target": ["not a valid URL"]}
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes or not host:
        return {"target": ["an http:// or https:// URL" if allow_private else channels.HTTPS_ONLY]}
    if parts.username or parts.password:
        return {"target": ["credentials in the URL are not allowed"]}
    if not _valid_host(host):
        return {"target": [f"{host!r} is not a valid host name"]}
    if not allow_private and _looks_private(host):
        return {
            "target": [
                "a private, loopback or link-local address is not allowed without "
                f"{channels.ALLOW_PRIVATE_SETTING} (development only)"
            ]
        }
    return {}


def rule_warnings(rule: NotificationRule, settings: Settings | None = None) -> list[str]:
    """What to fix before a saved rule's messages go out as it says (shown on rule reads): a
    setting this deployment lacks (SMTP_HOST for an EMAIL rule), or a target the API refuses
    under the current settings (a rule saved under others, or written with Studio). The rule
    is saved and kept all the same: an organization's admin may write rules before the
    operator configures e-mail, and the deliveries meanwhile are retried (then DEAD, and
    retryable from the delivery log) rather than refused."""
    settings = settings or Settings.from_env()
    found = [
        f"target: {message}"
        for messages in target_errors(rule.channel, rule.target, settings).values()
        for message in messages
    ]
    if rule.channel == Channel.EMAIL and not settings.smtp_host:
        found.append(channels.SMTP_MISSING)
    return found


def _validate(rule_fields: dict, settings: Settings) -> None:
    """The whole rule (after the change) or a 422 naming every problem."""
    trigger = rule_fields["trigger"]
    errors = {
        **conditions.validate(rule_fields["conditions"], trigger),
        **params_errors(trigger, rule_fields["params"]),
        **target_errors(rule_fields["channel"], rule_fields["target"], settings),
    }
    if errors:
        names = ", ".join(sorted(errors))
        raise Invalid(f"invalid notification rule: {names}", errors)


def _name_taken(organization, name: str, except_id: int | None = None) -> None:
    query = rules_of(organization).where(NotificationRule.name == name)
    if except_id is not None:
        query = query.where(NotificationRule.id != except_id)
    if query.exists():
        raise Conflict(f"a notification rule named {name!r} already exists", {"name": ["taken"]})


def new_secret() -> str:
    return secrets.token_hex(32)


def create_rule(organization, fields: dict, *, created_by=None, settings=None):
    """A new rule; returns (rule, webhook signing secret shown once, or None)."""
    settings = settings or Settings.from_env()
    fields = {"conditions": {}, "params": {}, **fields}
    fields["channel"] = Channel(fields["channel"])
    _validate(fields, settings)
    _name_taken(organization, fields["name"])
    secret = new_secret() if fields["channel"] == Channel.WEBHOOK else None
    with db.atomic():
        rule = NotificationRule.create(
            organization=organization,
            created_by=created_by,
            secret_encrypted=crypto.encrypt(secret) if secret else None,
            **fields,
        )
        audit.record(
            "notification_rule.created",
            organization=organization,
            target_type="notification_rule",
            target_id=rule.id,
            metadata={"name": rule.name, "trigger": rule.trigger, "channel": str(rule.channel)},
        )
    return rule, secret


def update_rule(rule: NotificationRule, changes: dict, *, settings=None):
    """Change some fields; the rule as changed must be valid as a whole (a new trigger
    re-checks the conditions). Returns (rule, a new secret when it became a WEBHOOK)."""
    settings = settings or Settings.from_env()
    after = {
        name: getattr(rule, name)
        for name in ("trigger", "conditions", "params", "channel", "target")
    }
    after.update(changes)
    after["channel"] = Channel(after["channel"])
    _validate(after, settings)
    if "name" in changes:
        _name_taken(rule.organization_id, changes["name"], except_id=rule.id)
    secret, secret_encrypted = None, rule.secret_encrypted
    if after["channel"] == Channel.WEBHOOK and not rule.secret_encrypted:
        secret = new_secret()
        secret_encrypted = crypto.encrypt(secret)
    elif after["channel"] != Channel.WEBHOOK:
        secret_encrypted = None
    with db.atomic():
        audit.changed(
            rule,
            {"secret_encrypted": secret_encrypted, **changes},
            "notification_rule.updated",
            organization=rule.organization_id,
            target_type="notification_rule",
            # Names only (a target, a Slack webhook URL, is itself a credential), of the
            # fields asked for: not the secret that follows the channel.
            metadata=lambda c: {"changed": [name for name in c.fields if name in changes]},
            always=True,  # audited even when it changes nothing
        )
    return rule, secret


def delete_rule(rule: NotificationRule) -> None:
    """Remove the rule and (by cascade) its delivery log."""
    with db.atomic():
        audit.record(
            "notification_rule.deleted",
            organization=rule.organization_id,
            target_type="notification_rule",
            target_id=rule.id,
            metadata={"name": rule.name},
        )
        rule.delete_instance()


def rotate_secret(rule: NotificationRule) -> str:
    """A new signing secret (shown once); deliveries from now on are signed with it."""
    if rule.channel != Channel.WEBHOOK:
        raise Conflict(f"only WEBHOOK rules have a signing secret; this one is {rule.channel}")
    secret = new_secret()
    with db.atomic():
        audit.changed(
            rule,
            {"secret_encrypted": crypto.encrypt(secret)},
            "notification_rule.secret_rotated",
            organization=rule.organization_id,
            target_type="notification_rule",
            metadata={},
        )
    return secret


_SAMPLE_VALUES = {
    "repository": "example-org/example-repo",
    "sensitivity": "INTERNAL",
    "title": "Sample: a test message from DevMetrics",
    "author": "octocat",
    "url": "https://github.com/example-org/example-repo/pull/1",
    "reviewer": "hubot",
    "risk_level": "HIGH",
    "provider": "heuristic",
    "environment": "production",
    "sha": "0000000000000000000000000000000000000000",
    "state": "FAILURE",
    "kind": "FAILED_DEPLOYMENT",
    "metric": "pickup_time_median_s",
    "scope": "team",
    "developer": "",
    "op": ">",
    "team": "Example team",
    "organization": "example-org",
    "organization_name": "Example",
    "timezone": "UTC",
}


def sample_payload(rule: NotificationRule) -> dict:
    """A made-up event of the rule's trigger, every field filled, marked as a test."""
    now = utcnow()
    data = {}
    for field, kind in TRIGGER_FIELDS[rule.trigger].items():
        if field in _SAMPLE_VALUES:
            data[field] = _SAMPLE_VALUES[field]
        elif field in ("opened_at", "ready_at"):
            data[field] = now.isoformat()
        elif field in ("date", "period_start", "period_end"):
            data[field] = now.date().isoformat()
        elif kind is bool:
            data[field] = True
        elif kind is str:
            data[field] = "sample"
        else:
            data[field] = {"risk_score": 85, "value": 90000.0, "bound": 86400.0}.get(field, 1)
    return {"type": rule.trigger, "data": data, "test": True}


def send_test(rule: NotificationRule) -> dict:
    """Send a sample message over the rule's channel now: {status, response_code, error}."""
    try:
        from services.notifications import delivery
    except ImportError:
        raise Unavailable("notification delivery is not available in this build") from None
    outcome = delivery.send_now(rule, sample_payload(rule))
    with db.atomic():
        audit.record(
            "notification_rule.tested",
            organization=rule.organization_id,
            target_type="notification_rule",
            target_id=rule.id,
            metadata={"status": str(outcome.get("status"))},
        )
    return outcome


# --- events and the delivery log ---------------------------------------------------------


def create_log(
    rule: NotificationRule, event_key: str, payload: dict, *, now: dt.datetime
) -> NotificationLog | None:
    """Record that `rule` should deliver `payload`: PENDING (due `now`), or SUPPRESSED
    within the rule's cooldown after a delivery that is going or gone out. None when this
    rule already has a log of `event_key` (an event never notifies the same rule twice).
    Call inside the transaction of whatever produced the event."""
    status = DeliveryStatus.PENDING
    if rule.cooldown_seconds:
        since = now - dt.timedelta(seconds=rule.cooldown_seconds)
        recent = NotificationLog.select().where(
            (NotificationLog.rule == rule)
            & (NotificationLog.created_at >= since)
            & NotificationLog.status.in_(COOLING_STATUSES)
        )
        if recent.exists():
            status = DeliveryStatus.SUPPRESSED
    try:
        with db.atomic():
            return NotificationLog.create(
                rule=rule,
                organization=rule.organization_id,
                event_key=event_key[:255],
                status=status,
                payload=payload,
                next_attempt_at=now if status == DeliveryStatus.PENDING else None,
                created_at=now,
            )
    except pw.IntegrityError:  # this rule already has this event
        return None


def on_event(payload: dict, message_id: str) -> list[NotificationLog]:
    """Inbox handler for `event` {type, organization_id, key, data}: one log per matching
    enabled rule of the organization (see create_log); returns the new logs."""
    event = Event.from_payload(payload)
    kind, org_id, key, data = event.type, event.organization_id, event.key, event.data
    if not Organization.select().where(Organization.id == org_id).exists():
        return []  # deleted since: nothing to notify
    now = utcnow()
    rules = (
        NotificationRule.select()
        .where(
            (NotificationRule.organization == org_id)
            & (NotificationRule.trigger == kind)
            & (NotificationRule.enabled == True)  # noqa: E712
        )
        .order_by(NotificationRule.id)
    )
    created = []
    for rule in rules:
        if matches(rule.conditions or {}, data):
            log = create_log(rule, key, {"type": kind, "data": data}, now=now)
            if log is not None:
                created.append(log)
    return created


def logs_of(organization, filters: dict, rule: NotificationRule | None = None):
    """The organization's (or one rule's) deliveries, newest first, filtered by status,
    channel, rule and a time range on when they were created ([from, to))."""
    query = (
        NotificationLog.select(NotificationLog, NotificationRule)
        .join(NotificationRule)
        .where(NotificationLog.organization == organization)
    )
    if rule is not None:
        query = query.where(NotificationLog.rule == rule)
    if filters.get("rule") is not None:
        query = query.where(NotificationLog.rule == filters["rule"])
    if filters.get("status"):
        query = query.where(NotificationLog.status == filters["status"])
    if filters.get("channel"):
        query = query.where(NotificationRule.channel == filters["channel"])
    if filters.get("from"):
        query = query.where(NotificationLog.created_at >= filters["from"])
    if filters.get("to"):
        query = query.where(NotificationLog.created_at < filters["to"])
    return query.order_by(NotificationLog.created_at.desc(), NotificationLog.id.desc())


def get_log(organization, log_id: int) -> NotificationLog:
    log = logs_of(organization, {}).where(NotificationLog.id == log_id).first()
    if log is None:
        raise NotFound("notification log not found")
    return log


def retry_log(log: NotificationLog) -> NotificationLog:
    """Deliver a FAILED or DEAD log again, now, with a fresh set of attempts."""
    if log.status not in RETRYABLE_STATUSES:
        raise Conflict(f"only FAILED or DEAD deliveries can be retried; this one is {log.status}")
    now = utcnow()
    with db.atomic():
        updated = (
            NotificationLog.update(
                status=DeliveryStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                locked_by=None,
                locked_until=None,
            )
            .where((NotificationLog.id == log.id) & NotificationLog.status.in_(RETRYABLE_STATUSES))
            .execute()
        )
        if not updated:  # retried by someone else meanwhile
            raise Conflict("this delivery is no longer FAILED or DEAD")
        audit.record(
            "notification_log.retried",
            organization=log.organization_id,
            target_type="notification_log",
            target_id=log.id,
            metadata={"rule_id": log.rule_id, "from": str(log.status)},
        )
    return get_log(log.organization_id, log.id)
