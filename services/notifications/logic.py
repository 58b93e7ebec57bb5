"""Notifications business logic (no Flask here)."""

from __future__ import annotations

import datetime as dt

from services.notifications.conditions import matches
from shared.models import (
    DeliveryStatus,
    NotificationLog,
    NotificationRule,
    Organization,
    utcnow,
)
from shared.outbox import MessageRejected

EVENT_TYPES = {
    "pull_request.opened",
    "pull_request.merged",
    "pull_request.review_requested",
    "deployment.failed",
    "incident.opened",
    "ai_review.completed",
}


def rules_of(organization):
    return (
        NotificationRule.select()
        .where(NotificationRule.organization == organization)
        .order_by(NotificationRule.name)
    )


def on_event(payload: dict, message_id: str) -> None:
    """Inbox handler for `event` {type, organization_id, key, data}: one PENDING delivery per
    matching enabled rule, at most one per (rule, event key); within a rule's cooldown the
    match is recorded as SUPPRESSED instead."""
    try:
        kind, org_id, key = payload["type"], int(payload["organization_id"]), str(payload["key"])
        data = dict(payload.get("data") or {})
    except (KeyError, TypeError, ValueError) as exc:
        raise MessageRejected(
            f"an event needs type, organization_id, key and data: {exc}"
        ) from None
    if kind not in EVENT_TYPES:
        raise MessageRejected(f"unknown event type {kind!r}")
    if not Organization.select().where(Organization.id == org_id).exists():
        return
    now = utcnow()
    rules = NotificationRule.select().where(
        (NotificationRule.organization == org_id)
        & (NotificationRule.trigger == kind)
        & (NotificationRule.enabled == True)  # noqa: E712
    )
    for rule in rules:
        if not matches(rule.conditions or {}, data):
            continue
        status = DeliveryStatus.PENDING
        if rule.cooldown_seconds:
            since = now - dt.timedelta(seconds=rule.cooldown_seconds)
            recent = NotificationLog.select().where(
                (NotificationLog.rule == rule)
                & (NotificationLog.created_at >= since)
                & NotificationLog.status.in_([DeliveryStatus.PENDING, DeliveryStatus.SENT])
            )
            if recent.exists():
                status = DeliveryStatus.SUPPRESSED
        (
            NotificationLog.insert(
                rule=rule,
                organization=org_id,
                event_key=key[:255],
                status=status,
                payload={"type": kind, "data": data},
                next_attempt_at=now if status == DeliveryStatus.PENDING else None,
            )
            .on_conflict_ignore()
            .execute()
        )
