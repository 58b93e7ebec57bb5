"""Background work: the job queues (the transactional outbox is the `outbox` queue) and the
record of messages a service has already received, which makes receivers idempotent."""

import peewee as pw

from shared.models.base import BaseModel, EnumField, UTCDateTimeField, utcnow
from shared.models.core import Organization
from shared.models.enums import JobStatus


class Job(BaseModel):
    queue = pw.CharField(max_length=32)
    # Jobs with the same (queue, dedupe_key) are one job: enqueueing again re-arms it.
    dedupe_key = pw.CharField(max_length=255, null=True)
    payload = pw.JSONField(default=dict)
    organization = pw.ForeignKeyField(Organization, null=True, on_delete="CASCADE")
    status = EnumField(JobStatus, default=JobStatus.PENDING)
    attempts = pw.IntegerField(default=0)
    max_attempts = pw.IntegerField(default=10)
    run_at = UTCDateTimeField(default=utcnow)
    locked_by = pw.CharField(max_length=128, null=True)
    locked_until = UTCDateTimeField(null=True)
    last_error = pw.TextField(null=True)
    created_at = UTCDateTimeField(default=utcnow)
    finished_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "jobs"
        indexes = (
            (("queue", "dedupe_key"), True),
            (("queue", "status", "run_at"), False),  # what is due
            (("queue", "status", "locked_until"), False),  # expired leases
        )


class InboxMessage(BaseModel):
    """A message id a service (the consumer) has processed; the effect and this row commit
    together, so a redelivered message is recognised and not applied twice."""

    consumer = pw.CharField(max_length=32)
    message_id = pw.CharField(max_length=64)
    topic = pw.CharField(max_length=64)
    received_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "inbox_messages"
        indexes = (
            (("consumer", "message_id"), True),
            (("received_at",), False),  # retention
        )
