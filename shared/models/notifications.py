"""Notifications: alert rules and the log of every delivery attempt."""

import peewee as pw

from shared.models.base import BaseModel, EnumField, UTCDateTimeField, utcnow
from shared.models.core import Organization, User
from shared.models.enums import Channel, DeliveryStatus


class NotificationRule(BaseModel):
    organization = pw.ForeignKeyField(
        Organization, backref="notification_rules", on_delete="CASCADE", index=False
    )
    name = pw.CharField(max_length=255)
    trigger = pw.CharField(max_length=64)
    conditions = pw.JSONField(default=dict)
    channel = EnumField(Channel)
    target = pw.TextField()  # Slack webhook URL, HTTPS endpoint or e-mail address
    # Fernet ciphertext of the per-rule HMAC secret for WEBHOOK deliveries.
    secret_encrypted = pw.TextField(null=True)
    enabled = pw.BooleanField(default=True)
    cooldown_seconds = pw.IntegerField(default=0)
    # Trigger parameters: stale `hours`; threshold `metric`, `scope`, `op`, `value`; digest `hour`.
    params = pw.JSONField(default=dict)
    created_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL")
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "notification_rules"
        indexes = (
            (("organization", "name"), True),
            (("organization", "trigger", "enabled"), False),
        )


class NotificationLog(BaseModel):
    rule = pw.ForeignKeyField(NotificationRule, backref="logs", on_delete="CASCADE", index=False)
    organization = pw.ForeignKeyField(Organization, on_delete="CASCADE", index=False)
    event_key = pw.CharField(max_length=255)
    status = EnumField(DeliveryStatus, default=DeliveryStatus.PENDING)
    payload = pw.JSONField(default=dict)
    attempts = pw.IntegerField(default=0)
    last_error = pw.TextField(null=True)
    response_code = pw.IntegerField(null=True)
    next_attempt_at = UTCDateTimeField(null=True)
    last_attempt_at = UTCDateTimeField(null=True)
    sent_at = UTCDateTimeField(null=True)
    locked_by = pw.CharField(max_length=128, null=True)
    locked_until = UTCDateTimeField(null=True)
    created_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "notification_logs"
        indexes = (
            (("rule", "event_key"), True),
            (("rule", "created_at"), False),  # cooldown: the rule's latest delivery
            (("status", "next_attempt_at"), False),
            (("organization", "created_at"), False),
        )
