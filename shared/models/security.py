"""Security: API keys and the audit log."""

import peewee as pw

from shared.models.base import BaseModel, UTCDateTimeField, utcnow
from shared.models.core import Organization, User


class ApiKey(BaseModel):
    """`dm_<prefix>_<secret>`: looked up by its public prefix, checked with bcrypt.

    A key acts with its creator's current standing: `created_by` is the person whose role
    bounds it (for a key made by a key, that key's creator) and `created_by_key` the key
    that made it, if one did. An `organization_key` (made by `devmetrics apikey create`, or
    by another organization key) has no creating person and is bounded by its scopes only."""

    organization = pw.ForeignKeyField(
        Organization, backref="api_keys", on_delete="CASCADE", index=False
    )
    created_by = pw.ForeignKeyField(User, null=True, on_delete="SET NULL")
    created_by_key = pw.ForeignKeyField("self", null=True, on_delete="SET NULL", backref="minted")
    organization_key = pw.BooleanField(default=False)
    name = pw.CharField(max_length=255)
    prefix = pw.CharField(max_length=32, unique=True)
    key_hash = pw.CharField(max_length=255)
    scopes = pw.JSONField(default=list)
    expires_at = UTCDateTimeField(null=True)
    last_used_at = UTCDateTimeField(null=True)
    revoked_at = UTCDateTimeField(null=True)
    created_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "api_keys"
        indexes = ((("organization", "revoked_at"), False),)


class Session(BaseModel):
    """A signed-in browser or client. Only the SHA-256 of the token is stored."""

    user = pw.ForeignKeyField(User, backref="sessions", on_delete="CASCADE", index=False)
    token_digest = pw.CharField(max_length=64, unique=True)
    created_at = UTCDateTimeField(default=utcnow)
    expires_at = UTCDateTimeField()
    revoked_at = UTCDateTimeField(null=True)
    last_seen_at = UTCDateTimeField(null=True)
    ip = pw.CharField(max_length=45, null=True)
    user_agent = pw.TextField(null=True)

    class Meta:
        table_name = "sessions"
        indexes = (
            (("user", "revoked_at"), False),
            (("expires_at",), False),  # purge of expired sessions
        )


class LoginLink(BaseModel):
    """A one-time sign-in URL for local use (`devmetrics login-link`); only the SHA-256 of
    its token is stored."""

    user = pw.ForeignKeyField(User, on_delete="CASCADE", index=False)
    token_digest = pw.CharField(max_length=64, unique=True)
    created_at = UTCDateTimeField(default=utcnow)
    expires_at = UTCDateTimeField()
    used_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "login_links"


class AuditLog(BaseModel):
    """Append-only (a PostgreSQL trigger refuses UPDATE and DELETE, except the referential
    actions of a deleted organization, user or key, and the retention job)."""

    organization = pw.ForeignKeyField(Organization, null=True, on_delete="CASCADE", index=False)
    actor_user = pw.ForeignKeyField(User, null=True, on_delete="SET NULL", index=False)
    actor_api_key = pw.ForeignKeyField(ApiKey, null=True, on_delete="SET NULL")
    action = pw.CharField(max_length=100)
    target_type = pw.CharField(max_length=64, null=True)
    target_id = pw.CharField(max_length=64, null=True)
    ip = pw.CharField(max_length=45, null=True)
    user_agent = pw.TextField(null=True)
    metadata = pw.JSONField(default=dict)
    created_at = UTCDateTimeField(default=utcnow)

    class Meta:
        table_name = "audit_logs"
        indexes = (
            (("organization", "created_at"), False),
            (("organization", "action", "created_at"), False),
            (("actor_user", "created_at"), False),
            (("target_type", "target_id"), False),
            (("created_at",), False),  # retention deletes by age across orgs
        )
