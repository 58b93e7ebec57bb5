"""Item 4: a downstream service (metrics, notifications) down for a while: the outbox
worker keeps its messages, retrying with backoff, and once the service returns every
message arrives, and takes effect, exactly once."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from shared import outbox
from shared.crypto import encrypt
from shared.database import db
from shared.models import (
    InboxMessage,
    Job,
    JobStatus,
    NotificationLog,
    NotificationRule,
    Organization,
    Repository,
    utcnow,
)
from tests.helpers import wait_until
from tests.reliability.conftest import REPO_GITHUB_ID, publish_activity_changed
from tests.reliability.report import record

MESSAGES = 4  # each failed attempt costs the worker its HTTP retries (~1.5 s) while down


def _publish_to_metrics(org, repo) -> tuple[list[str], list[str]]:
    ids = publish_activity_changed(org, repo, MESSAGES)
    # The effect: one recompute job per message.
    return ids, [f"message:{i}" for i in ids]


def _publish_to_notifications(org, repo) -> tuple[list[str], list[str]]:
    NotificationRule.create(
        organization=org,
        name="Reliability downstream",
        trigger="pull_request.opened",
        channel="WEBHOOK",
        target="http://127.0.0.1:9/hook",  # never sent: no notify worker runs here
        secret_encrypted=encrypt("downstream-secret"),
    )
    keys = [f"reliability-downstream:{i}" for i in range(MESSAGES)]
    ids = [
        outbox.publish(
            "notifications",
            "event",
            {
                "type": "pull_request.opened",
                "organization_id": org.id,
                "key": key,
                "data": {"repository": repo.full_name, "number": i},
            },
            organization=org,
        )
        for i, key in enumerate(keys)
    ]
    return ids, keys  # the effect: one notification log per event key


def _effects(service: str, keys: list[str]) -> Counter:
    if service == "metrics":
        rows = Job.select(Job.dedupe_key).where(Job.queue == "recompute", Job.dedupe_key.in_(keys))
    else:
        rows = NotificationLog.select(NotificationLog.event_key).where(
            NotificationLog.event_key.in_(keys)
        )
    return Counter(k for (k,) in rows.tuples())


@pytest.mark.parametrize("service", ["metrics", "notifications"])
def test_outbox_messages_arrive_once_after_the_service_returns(rstack, service):
    assert service not in rstack.processes  # down: connection refused
    with rstack.db():
        org = Organization.get(Organization.slug == "techcorp")
        repo = Repository.get(Repository.github_id == REPO_GITHUB_ID)
        with db.atomic():
            publish = _publish_to_metrics if service == "metrics" else _publish_to_notifications
            ids, effect_keys = publish(org, repo)
    mine = (Job.queue == "outbox") & Job.dedupe_key.in_(ids)
    worker = rstack.start_worker("outbox")

    def each_failed_once():
        with rstack.db():
            return Job.select().where(
                mine,
                Job.attempts >= 1,
                Job.last_error.is_null(False),
                Job.status == JobStatus.PENDING,
            ).count() == len(ids)

    wait_until(each_failed_once, timeout=60, interval=0.5, what="every message to fail once")
    with rstack.db():
        assert InboxMessage.select().where(InboxMessage.message_id.in_(ids)).count() == 0
        failed_attempts = sum(j.attempts for j in Job.select().where(mine))
        # Skip the rest of the backoff (it grows to minutes): due again in a moment.
        Job.update(run_at=utcnow() + dt.timedelta(seconds=1)).where(mine).execute()

    rstack.start(service)

    def all_delivered():
        with rstack.db():
            return Job.select().where(mine, Job.status != JobStatus.DONE).count() == 0

    wait_until(all_delivered, timeout=60, interval=0.5, what="every message delivered")
    assert worker.poll() is None
    with rstack.db():
        inbox = Counter(
            m
            for (m,) in InboxMessage.select(InboxMessage.message_id)
            .where(InboxMessage.message_id.in_(ids))
            .tuples()
        )
        effects = _effects(service, effect_keys)
    assert set(inbox) == set(ids) and set(inbox.values()) == {1}
    assert set(effects) == set(effect_keys) and set(effects.values()) == {1}
    record(
        f"4 downstream down: {service}",
        f"{service} stopped while the outbox worker ran, then started: "
        "every message arrived once, its effect once",
        passed=True,
        load=len(ids),
        faults=failed_attempts,
        rows_lost=len(set(ids) - set(inbox)),
        detail=f"{failed_attempts} failed attempts while it was down",
    )
