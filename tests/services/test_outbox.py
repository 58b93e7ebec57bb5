"""The transactional outbox between two real services: a message written with the change
reaches the receiver after it was down, exactly once."""

import requests

from shared import jobs, outbox
from shared.database import db
from shared.models import InboxMessage, Job, Organization, Repository
from tests.helpers import INTERNAL_TOKEN, bound_to


def test_outbox_delivers_after_the_receiver_returns_exactly_once(stack):
    stack.stop("metrics")
    try:
        with bound_to(stack.database_url):
            org = Organization.get(Organization.slug == "techcorp")
            with db.atomic():  # the change and its announcement commit together
                message_id = outbox.publish(
                    "metrics",
                    "activity.changed",
                    {
                        "organization_id": org.id,
                        "repository_id": Repository.get(
                            Repository.full_name == "techcorp/api-server"
                        ).id,
                        "dates": ["2026-11-02", "2026-11-03"],
                        "pull_request_ids": [],
                    },
                    organization=org,
                )
        first = stack.cli("worker", "outbox", "--once")
        assert first.returncode == 0, first.stderr
        with bound_to(stack.database_url):
            job = Job.get(Job.dedupe_key == message_id)
            assert (job.status, job.attempts) == ("PENDING", 1)
            assert "metrics" in job.last_error  # names the unreachable service
            assert InboxMessage.select().where(InboxMessage.message_id == message_id).count() == 0
            # Skip the backoff wait: due now.
            Job.update(run_at=job.created_at).where(Job.id == job.id).execute()
    finally:
        stack.start("metrics")

    second = stack.cli("worker", "outbox", "--once")
    assert second.returncode == 0, second.stderr
    third = stack.cli("worker", "outbox", "--once")  # nothing left to send
    assert third.returncode == 0
    with bound_to(stack.database_url):
        job = Job.get(Job.dedupe_key == message_id)
        assert (job.status, job.attempts) == ("DONE", 2)
        inbox = InboxMessage.select().where(InboxMessage.message_id == message_id)
        assert [(m.consumer, m.topic) for m in inbox] == [("metrics", "activity.changed")]
        (recompute,) = Job.select().where(
            Job.queue == "recompute", Job.dedupe_key == f"message:{message_id}"
        )
        assert recompute.payload["dates"] == ["2026-11-02", "2026-11-03"]
        pending_before = jobs.counts("recompute")

    # A redelivery of the same message (say its 200 was lost) changes nothing.
    again = requests.post(
        stack.url("metrics") + "/internal/v1/messages",
        json={
            "id": message_id,
            "topic": "activity.changed",
            "payload": {"organization_id": org.id, "repository_id": 1, "dates": ["2026-11-04"]},
        },
        headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"},
        timeout=5,
    )
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    with bound_to(stack.database_url):
        assert jobs.counts("recompute") == pending_before
        assert InboxMessage.select().where(InboxMessage.message_id == message_id).count() == 1


def test_a_rejected_message_goes_dead_instead_of_retrying_forever(stack):
    with bound_to(stack.database_url), db.atomic():
        message_id = outbox.publish("metrics", "activity.changed", {"dates": "not a list"})
    assert stack.cli("worker", "outbox", "--once").returncode == 0
    with bound_to(stack.database_url):
        job = Job.get(Job.dedupe_key == message_id)
        assert job.status == "DEAD" and "422" in job.last_error
