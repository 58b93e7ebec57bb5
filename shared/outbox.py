"""The transactional outbox: a message to another service is a row written in the same
transaction as the change it announces, delivered later by `devmetrics worker outbox`."""

from __future__ import annotations

import uuid

from shared import jobs
from shared.config import SERVICES
from shared.http import ServiceClient, ServiceUnavailable
from shared.models import Job, utcnow
from shared.sql import insert_rows

QUEUE = "outbox"


class PermanentFailure(RuntimeError):
    """Retrying cannot help (the receiver rejected the message); the job goes DEAD."""


class MessageRejected(ValueError):
    """A receiving handler's verdict that a message can never be applied (answered 422)."""


MAX_ATTEMPTS = 20


def _message(destination: str, topic: str, payload: dict) -> dict:
    if destination not in SERVICES:
        raise ValueError(f"unknown service {destination!r}")
    return {"destination": destination, "topic": topic, "payload": payload, "id": uuid.uuid4().hex}


def publish(destination: str, topic: str, payload: dict, *, organization=None) -> str:
    """Queue `payload` for `destination`'s inbox; call inside the transaction of the change.
    Returns the message id, which the receiver uses to apply it exactly once."""
    message = _message(destination, topic, payload)
    jobs.enqueue(
        QUEUE,
        message,
        dedupe_key=message["id"],
        organization=organization,
        max_attempts=MAX_ATTEMPTS,
    )
    return message["id"]


def publish_many(messages) -> None:
    """`publish` for many (destination, topic, payload, organization) messages, in one INSERT
    per 500: a fresh message id is its own dedupe key, so nothing can conflict, and a batch
    needs no statement (and savepoint) per message."""
    now = utcnow()
    rows = []
    for destination, topic, payload, organization in messages:
        message = _message(destination, topic, payload)
        rows.append(jobs.job_row(QUEUE, message, message["id"], organization, now, MAX_ATTEMPTS))
    insert_rows(Job, rows)


def deliver(job: Job) -> None:
    """Outbox worker handler: POST the message to its destination's inbox."""
    message = job.payload
    client = ServiceClient(message["destination"])
    try:
        response = client.post(
            "/internal/v1/messages",
            json={"id": message["id"], "topic": message["topic"], "payload": message["payload"]},
        )
    except ServiceUnavailable as exc:
        raise RuntimeError(str(exc)) from exc
    if response.status_code in (200, 201, 202):
        return
    detail = f"{message['destination']} answered {response.status_code}: {response.text[:300]}"
    if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
        raise PermanentFailure(detail)
    raise RuntimeError(detail)
