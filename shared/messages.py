"""The messages the services send each other through the outbox, one class per topic: the
producer builds one and sends `to_outbox()` (or `publish()`); the consumer's inbox handler
reads the payload with `from_payload`, which raises MessageRejected naming the field that
is missing or invalid (the inbox answers 422 and the sender gives up on it).

    topic                destination     producer                        consumer
    event                notifications   activity (changes), metrics     notifications on_event
                                         (incident.opened,
                                         ai_review.completed)
    activity.changed     metrics         activity (changes)              metrics on_activity_changed
    ai_review.requested  metrics         activity (changes)              metrics on_review_requested
    user_emails.changed  activity        accounts                        activity authors

`payload()` is the JSON of the wire (its keys and values are the contract: a change must
be one both sides can read while an old and a new version run side by side).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from shared import outbox
from shared.outbox import MessageRejected

# The event types other services send to the notifications service (topic "event"); its
# other triggers come from its own scheduled pass.
EVENT_TYPES = frozenset(
    {
        "pull_request.opened",
        "pull_request.merged",
        "pull_request.review_requested",
        "deployment.failed",
        "incident.opened",
        "ai_review.completed",
    }
)

_MISSING = object()


class _Invalid(Exception):
    def __init__(self, name: str, reason: str):
        super().__init__(f"{name} {reason}")


def _field(payload: Mapping, name: str, convert: Callable[[Any], Any], default=_MISSING):
    """`convert(payload[name])`, or `default` when absent (when there is one); a missing or
    unconvertible value raises _Invalid naming the field."""
    if name not in payload:
        if default is _MISSING:
            raise _Invalid(name, "is missing")
        return default
    try:
        return convert(payload[name])
    except (KeyError, TypeError, ValueError) as exc:
        raise _Invalid(name, f"is invalid: {exc}") from None


def _same(value):
    return value


class Message:
    """A message of one topic to one service. Subclasses are dataclasses with `topic`,
    `destination`, `payload()` and `_parse(payload)`; `needs` heads the rejection message."""

    topic: ClassVar[str]
    destination: ClassVar[str]
    needs: ClassVar[str]

    def payload(self) -> dict:
        raise NotImplementedError

    @classmethod
    def _parse(cls, payload: Mapping) -> Self:
        raise NotImplementedError

    @classmethod
    def from_payload(cls, payload) -> Self:
        """The message of a received payload, validated and normalized; MessageRejected
        (naming the missing or invalid field) when it cannot be applied."""
        if not isinstance(payload, Mapping):
            raise MessageRejected(f"{cls.needs}: the payload must be an object")
        try:
            return cls._parse(payload)
        except _Invalid as exc:
            raise MessageRejected(f"{cls.needs}: {exc}") from None

    @property
    def organization(self) -> int | None:
        """The organization the outbox job belongs to (None: no organization's)."""
        return getattr(self, "organization_id", None)

    def to_outbox(self) -> tuple[str, str, dict, int | None]:
        """(destination, topic, payload, organization): one message of outbox.publish_many."""
        return self.destination, self.topic, self.payload(), self.organization

    def publish(self) -> str:
        """Queue it in the outbox (inside the transaction of the change); its message id."""
        return outbox.publish(
            self.destination, self.topic, self.payload(), organization=self.organization
        )


def publish_many(messages: Iterable[Message]) -> None:
    outbox.publish_many(message.to_outbox() for message in messages)


def repository_fields(repo) -> dict:
    """What every event about a repository carries in its data (rules match on them)."""
    return {
        "repository": repo.full_name,
        "repository_id": repo.id,
        "sensitivity": str(repo.sensitivity),
    }


@dataclass(frozen=True)
class Event(Message):
    """Something alert rules match on: {type, organization_id, key, data}. `key` names the
    event (a rule is notified once per key); `data` is what conditions compare."""

    topic: ClassVar[str] = "event"
    destination: ClassVar[str] = "notifications"
    needs: ClassVar[str] = "an event needs type, organization_id, key and data"

    type: str
    organization_id: int
    key: str
    data: dict = field(default_factory=dict)

    def payload(self) -> dict:
        return {
            "type": self.type,
            "organization_id": self.organization_id,
            "key": self.key,
            "data": self.data,
        }

    @classmethod
    def _parse(cls, payload: Mapping) -> Self:
        event = cls(
            type=_field(payload, "type", _same),
            organization_id=_field(payload, "organization_id", int),
            key=_field(payload, "key", str),
            data=_field(payload, "data", lambda data: dict(data or {}), {}),
        )
        if event.type not in EVENT_TYPES:
            raise MessageRejected(
                f"unknown event type {event.type!r}; known: {sorted(EVENT_TYPES)}"
            )
        if not event.key:
            raise MessageRejected("an event needs a non-empty key")
        return event


def _event_types(value) -> tuple[str, ...] | None:
    if value is None:  # as if absent
        return None
    if not all(isinstance(t, str) for t in value):
        raise ValueError("must be strings")
    return tuple(sorted(set(value)))


def _dates(value) -> tuple[dt.date, ...]:
    return tuple(sorted({dt.date.fromisoformat(day) for day in value}))


def _ids(value) -> tuple[int, ...]:
    return tuple(sorted({int(i) for i in value or []}))


@dataclass(frozen=True)
class ActivityChanged(Message):
    """Activity changed a repository's data on these days (and these pull requests): the
    metrics service recomputes them. `event_types`: the webhook events behind the change,
    when every part of it came from one (the metrics service may narrow its work by them)."""

    topic: ClassVar[str] = "activity.changed"
    destination: ClassVar[str] = "metrics"
    needs: ClassVar[str] = (
        "activity.changed needs organization_id, repository_id, ISO dates and pull_request_ids"
    )

    organization_id: int
    repository_id: int
    dates: tuple[dt.date, ...] = ()
    pull_request_ids: tuple[int, ...] = ()
    event_types: tuple[str, ...] | None = None

    def payload(self) -> dict:
        return {
            "organization_id": self.organization_id,
            "repository_id": self.repository_id,
            "dates": [day.isoformat() for day in self.dates],
            "pull_request_ids": list(self.pull_request_ids),
            **({"event_types": list(self.event_types)} if self.event_types is not None else {}),
        }

    @classmethod
    def _parse(cls, payload: Mapping) -> Self:
        return cls(
            organization_id=_field(payload, "organization_id", int),
            repository_id=_field(payload, "repository_id", int),
            dates=_field(payload, "dates", _dates),
            pull_request_ids=_field(payload, "pull_request_ids", _ids, ()),
            event_types=_field(payload, "event_types", _event_types, None),
        )


def _head_sha(value) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 64:
        raise ValueError("must be a commit sha")
    return value


@dataclass(frozen=True)
class AIReviewRequested(Message):
    """Review this pull request at this head commit (one review per head and provider)."""

    topic: ClassVar[str] = "ai_review.requested"
    destination: ClassVar[str] = "metrics"
    needs: ClassVar[str] = "ai_review.requested needs organization_id, pull_request_id and head_sha"

    organization_id: int
    pull_request_id: int
    head_sha: str

    def payload(self) -> dict:
        return {
            "organization_id": self.organization_id,
            "pull_request_id": self.pull_request_id,
            "head_sha": self.head_sha,
        }

    @classmethod
    def _parse(cls, payload: Mapping) -> Self:
        return cls(
            organization_id=_field(payload, "organization_id", int),
            pull_request_id=_field(payload, "pull_request_id", int),
            head_sha=_field(payload, "head_sha", _head_sha),
        )


def _emails(value) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
        raise TypeError("must be a list of strings")
    return tuple(value)


@dataclass(frozen=True)
class UserEmailsChanged(Message):
    """A person's commit addresses (or their claims on them) changed in accounts: activity
    re-attributes those addresses' commits. No organization's: a person spans several."""

    topic: ClassVar[str] = "user_emails.changed"
    destination: ClassVar[str] = "activity"
    needs: ClassVar[str] = "user_emails.changed needs emails, a list of addresses"

    user_id: int | None
    emails: tuple[str, ...]

    def payload(self) -> dict:
        return {"user_id": self.user_id, "emails": list(self.emails)}

    @classmethod
    def _parse(cls, payload: Mapping) -> Self:
        # The user id is informative (the addresses are what is re-attributed): not checked.
        return cls(user_id=payload.get("user_id"), emails=_field(payload, "emails", _emails))
