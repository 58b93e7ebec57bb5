"""The delivery worker (`devmetrics worker notify`): sends PENDING notification logs.

Each log is leased (shared.jobs.lease: status SENDING, locked_by/locked_until, attempts + 1),
sent once over its rule's channel, and then recorded: SENT on a 2xx (SMTP accepted); back to
PENDING with exponential backoff and jitter (or the receiver's Retry-After) on 5xx, 429,
timeouts, connection errors, a host name that does not resolve (yet) and SMTP not configured
(yet), until NOTIFICATIONS_MAX_ATTEMPTS, then DEAD; FAILED at once on any other answer and on
a target that must or can never be called (not HTTPS, a private address, an impossible host
name), as a wrong URL is not retried forever. A worker that dies mid-delivery leaves its
SENDING rows to be leased again once the lease expires; receivers deduplicate on
`X-DevMetrics-Delivery`, which stays the same across attempts.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import uuid

from services.notifications import channels
from shared import jobs
from shared.config import Settings
from shared.database import db
from shared.models import DeliveryStatus, NotificationLog, NotificationRule, utcnow
from shared.observability import JOBS

log = logging.getLogger(__name__)

QUEUE = "notify"  # the label of this worker in devmetrics_jobs_total
MAX_RETRY_AFTER_SECONDS = 24 * 3600

# Example event data for `send_now` (the rules API's "send a test message").
SAMPLE_DATA = {
    "pull_request": {
        "repository": "octo-org/example",
        "sensitivity": "INTERNAL",
        "number": 42,
        "title": "Sample pull request",
        "author": "octocat",
        "reviewer": "hubot",
        "risk_score": 75,
        "risk_level": "HIGH",
        "hours": 24,
    },
    "deployment": {"environment": "production", "sha": "0" * 40, "state": "FAILURE"},
    "incident": {"repository": "octo-org/example", "kind": "LABELED_ISSUE", "title": "Sample"},
    "metric": {"metric": "pickup_hours_median", "team": "Sample team", "value": 30, "bound": 24},
}


def backoff_seconds(attempts: int, settings: Settings) -> float:
    """Exponential from NOTIFICATIONS_BACKOFF_SECONDS, capped, with jitter: between half and
    all of it, so receivers that failed together are not retried together."""
    full = min(
        settings.notifications_max_backoff_seconds,
        settings.notifications_backoff_seconds * 2 ** max(0, attempts - 1),
    )
    return random.uniform(full / 2, full)


def _due(now: dt.datetime):
    return (
        (NotificationLog.status == DeliveryStatus.PENDING)
        & (NotificationLog.next_attempt_at.is_null() | (NotificationLog.next_attempt_at <= now))
    ) | ((NotificationLog.status == DeliveryStatus.SENDING) & (NotificationLog.locked_until < now))


def _owned(row: NotificationLog):
    # Another worker may have leased it again after our lease expired: then it is theirs.
    return (
        (NotificationLog.id == row.id)
        & (NotificationLog.status == DeliveryStatus.SENDING)
        & (NotificationLog.locked_by == row.locked_by)
        & (NotificationLog.attempts == row.attempts)
    )


def deliver_batch(worker_id: str, limit: int = 10) -> int:
    """Lease up to `limit` due deliveries and send them; returns how many were leased."""
    settings = Settings.from_env()
    # Lease no more than can be sent (each at most connect + read timeout) before the
    # lease expires, or another worker would send the tail of the batch a second time.
    per_delivery = 2 * settings.notifications_timeout_seconds + 1
    limit = max(1, min(limit, int(settings.notifications_lease_seconds // per_delivery)))
    leased = jobs.lease(
        NotificationLog,
        _due(utcnow()),
        worker_id,
        limit=limit,
        lease_seconds=settings.notifications_lease_seconds,
        running_status=DeliveryStatus.SENDING,
        order_by=(NotificationLog.next_attempt_at, NotificationLog.id),
    )
    for row in leased:
        deliver(row, settings)
    return len(leased)


def deliver(row: NotificationLog, settings: Settings) -> str | None:
    """Send one leased log and record the attempt; returns its new status (None: the lease
    was lost before sending)."""
    now = utcnow()
    with db.atomic():
        started = (
            NotificationLog.update(last_attempt_at=now)
            .where(_owned(row) & (NotificationLog.locked_until > now))
            .execute()
        )
    if not started:
        return None
    rule = NotificationRule.get_by_id(row.rule_id)
    if row.attempts > settings.notifications_max_attempts:
        # The last allowed attempt was cut short (its worker died): give up, keep its error
        # (masked again: a row stored before errors were masked keeps no secret either).
        error = channels.mask_error(rule, row.last_error, settings) or "worker lost"
        attempt = channels.Attempt(False, response_code=row.response_code, error=error)
        return _record(row, attempt, settings, dead=True)
    if not rule.enabled:
        attempt = channels.Attempt(False, error="the rule was disabled before delivery")
    else:  # never raises; its error is masked
        attempt = channels.send(
            rule, row.payload, event_key=row.event_key, delivery=str(row.id), settings=settings
        )
    return _record(row, attempt, settings)


def _record(
    row: NotificationLog, attempt: channels.Attempt, settings: Settings, *, dead: bool = False
) -> str:
    now = utcnow()
    changes = {
        NotificationLog.response_code: attempt.response_code,
        NotificationLog.locked_until: None,
    }
    if attempt.ok:
        status = DeliveryStatus.SENT
        changes.update({NotificationLog.sent_at: now, NotificationLog.last_error: None})
    elif dead or (attempt.retryable and row.attempts >= settings.notifications_max_attempts):
        status = DeliveryStatus.DEAD
    elif attempt.retryable:
        status = DeliveryStatus.PENDING
        if attempt.retry_after is not None:
            delay = min(attempt.retry_after, MAX_RETRY_AFTER_SECONDS)
        else:
            delay = backoff_seconds(row.attempts, settings)
        changes[NotificationLog.next_attempt_at] = now + dt.timedelta(seconds=delay)
    else:
        status = DeliveryStatus.FAILED
    if not attempt.ok:
        changes[NotificationLog.last_error] = (attempt.error or "failed")[:4000]
    changes[NotificationLog.status] = status
    with db.atomic():
        NotificationLog.update(changes).where(_owned(row)).execute()
    JOBS.labels(QUEUE, status.lower()).inc()
    level = (
        logging.INFO if status in (DeliveryStatus.SENT, DeliveryStatus.PENDING) else logging.WARNING
    )
    log.log(
        level,
        "notification delivery",
        extra={
            "log_id": row.id,
            "rule_id": row.rule_id,
            "attempt": row.attempts,
            "status": str(status),
            "response_code": attempt.response_code,
            "error": attempt.error,
        },
    )
    return status


def sample_payload(rule: NotificationRule) -> dict:
    family = rule.trigger.split(".", 1)[0]
    return {"type": rule.trigger, "data": dict(SAMPLE_DATA.get(family, {}))}


def send_now(rule: NotificationRule, payload: dict | None = None) -> dict:
    """Send one message now, outside the log and without retries (the rules API's test
    button): {status SENT|FAILED, response_code, error}."""
    attempt = channels.send(  # never raises; its error is masked
        rule,
        payload or sample_payload(rule),
        event_key="test",
        delivery=f"test-{uuid.uuid4().hex}",
        settings=Settings.from_env(),
    )
    return {
        "status": str(DeliveryStatus.SENT if attempt.ok else DeliveryStatus.FAILED),
        "response_code": attempt.response_code,
        "error": attempt.error,
    }
