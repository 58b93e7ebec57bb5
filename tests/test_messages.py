"""The outbox messages' contracts (shared/messages.py): what a producer builds is what its
consumer reads back, and a payload it cannot apply is rejected naming the field."""

import dataclasses
import datetime as dt

import pytest

from shared import messages
from shared.messages import ActivityChanged, AIReviewRequested, Event, UserEmailsChanged
from shared.models import Job, Organization
from shared.outbox import MessageRejected

EXAMPLES = [
    Event(
        type="pull_request.merged",
        organization_id=3,
        key="pull_request.merged:9",
        data={"repository": "acme/api", "repository_id": 5, "sensitivity": "INTERNAL"},
    ),
    ActivityChanged(
        organization_id=3,
        repository_id=5,
        dates=(dt.date(2026, 5, 3), dt.date(2026, 5, 4)),
        pull_request_ids=(7, 9),
        event_types=("pull_request", "push"),
    ),
    ActivityChanged(organization_id=3, repository_id=5, dates=(dt.date(2026, 5, 4),)),
    AIReviewRequested(organization_id=3, pull_request_id=9, head_sha="a" * 40),
    UserEmailsChanged(user_id=11, emails=("a@example.com", "b@example.com")),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: m.topic)
def test_a_message_reads_back_as_it_was_built(message):
    payload = message.payload()
    assert type(message).from_payload(payload) == message
    destination, topic, sent, organization = message.to_outbox()
    assert (destination, topic, sent) == (message.destination, message.topic, payload)
    assert organization == getattr(message, "organization_id", None)


def test_the_wire_shapes():
    event, changed, quiet, review, emails = (m.payload() for m in EXAMPLES)
    assert event == {
        "type": "pull_request.merged",
        "organization_id": 3,
        "key": "pull_request.merged:9",
        "data": {"repository": "acme/api", "repository_id": 5, "sensitivity": "INTERNAL"},
    }
    assert changed == {
        "organization_id": 3,
        "repository_id": 5,
        "dates": ["2026-05-03", "2026-05-04"],
        "pull_request_ids": [7, 9],
        "event_types": ["pull_request", "push"],
    }
    assert "event_types" not in quiet and quiet["pull_request_ids"] == []
    assert review == {"organization_id": 3, "pull_request_id": 9, "head_sha": "a" * 40}
    assert emails == {"user_id": 11, "emails": ["a@example.com", "b@example.com"]}


def test_a_consumer_normalizes_what_it_reads():
    changed = ActivityChanged.from_payload(
        {
            "organization_id": "3",
            "repository_id": 5,
            "dates": ["2026-05-04", "2026-05-03", "2026-05-04"],
            "pull_request_ids": None,
            "event_types": ["push", "push"],
        }
    )
    assert changed == ActivityChanged(
        organization_id=3,
        repository_id=5,
        dates=(dt.date(2026, 5, 3), dt.date(2026, 5, 4)),
        event_types=("push",),
    )
    assert Event.from_payload(
        {"type": "incident.opened", "organization_id": 3, "key": "k", "data": None}
    ) == Event(type="incident.opened", organization_id=3, key="k", data={})


@pytest.mark.parametrize(
    ("cls", "payload", "named"),
    [
        (ActivityChanged, {"organization_id": 3, "dates": []}, "repository_id is missing"),
        (
            ActivityChanged,
            {"organization_id": 3, "repository_id": 5, "dates": ["yesterday"]},
            "dates is invalid",
        ),
        (
            ActivityChanged,
            {"organization_id": 3, "repository_id": 5, "dates": [], "event_types": [7]},
            "event_types is invalid",
        ),
        (
            AIReviewRequested,
            {"organization_id": 3, "pull_request_id": "x", "head_sha": "a"},
            "pull_request_id is invalid",
        ),
        (
            AIReviewRequested,
            {"organization_id": 3, "pull_request_id": 9, "head_sha": ""},
            "head_sha is invalid",
        ),
        (UserEmailsChanged, {"user_id": 1, "emails": "a@example.com"}, "emails is invalid"),
        (UserEmailsChanged, {"user_id": 1}, "emails is missing"),
        (Event, {"type": "incident.opened", "key": "k"}, "organization_id is missing"),
        (Event, {"type": "digest.daily", "organization_id": 3, "key": "k"}, "unknown event"),
        (Event, {"type": "incident.opened", "organization_id": 3, "key": ""}, "non-empty key"),
        (Event, ["not", "an", "object"], "must be an object"),
    ],
)
def test_a_payload_that_cannot_be_applied_is_rejected_naming_the_field(cls, payload, named):
    with pytest.raises(MessageRejected, match=named) as raised:
        cls.from_payload(payload)
    if isinstance(payload, dict) and named.endswith(("missing", "invalid")):
        assert str(raised.value).startswith(cls.needs)


def test_publishing_queues_the_payload_for_the_destination(tx):
    org = Organization.create(name="Messages", slug="messages-org", plan="FREE")
    event, changed, _, review, emails = (
        dataclasses.replace(m, organization_id=org.id) if hasattr(m, "organization_id") else m
        for m in EXAMPLES
    )
    messages.publish_many([event, changed])
    review_id, emails_id = review.publish(), emails.publish()
    jobs = {job.payload["id"]: job for job in Job.select().where(Job.queue == "outbox")}
    assert jobs[review_id].payload == {
        "id": review_id,
        "destination": "metrics",
        "topic": "ai_review.requested",
        "payload": review.payload(),
    }
    assert jobs[emails_id].organization_id is None  # a person's addresses: no organization's
    assert sorted(
        (job.payload["topic"], job.payload["destination"], job.organization_id)
        for job in jobs.values()
        if job.organization_id is not None
    ) == [
        ("activity.changed", "metrics", org.id),
        ("ai_review.requested", "metrics", org.id),
        ("event", "notifications", org.id),
    ]
    assert [job.payload["payload"] for job in jobs.values() if job.payload["topic"] == "event"] == [
        event.payload()
    ]
