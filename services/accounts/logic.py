"""Accounts business logic: API keys and token introspection (no Flask here)."""

from __future__ import annotations

import datetime as dt

from shared import audit, crypto
from shared.database import db
from shared.models import ApiKey, Organization, utcnow
from shared.permissions import SCOPES

LAST_USED_RESOLUTION = dt.timedelta(minutes=1)  # at most one write a minute per key
INACTIVE = {"active": False}


class InvalidScopes(ValueError):
    pass


def create_api_key(
    organization: Organization,
    name: str,
    scopes: list[str],
    *,
    created_by=None,
    expires_at: dt.datetime | None = None,
) -> tuple[ApiKey, str]:
    """A new key; the plaintext is returned here once and never stored."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise InvalidScopes(
            f"unknown scope(s): {', '.join(unknown)}" if unknown else "at least one scope"
        )
    plaintext, prefix, key_hash = crypto.new_api_key()
    with db.atomic():
        key = ApiKey.create(
            organization=organization,
            name=name,
            created_by=created_by,
            prefix=prefix,
            key_hash=key_hash,
            scopes=sorted(set(scopes)),
            expires_at=expires_at,
        )
        audit.record(
            "api_key.created",
            organization=organization,
            target_type="api_key",
            target_id=key.id,
            actor_user=created_by,
            metadata={"name": name, "scopes": key.scopes, "prefix": prefix},
        )
    return key, plaintext


def introspect(token: str, org_ref: str | None = None) -> dict:
    """Who `token` is: an active API key (its org and scopes), or inactive.

    Unknown, malformed, revoked and expired tokens get the same answer. Session tokens are
    issued by the GitHub sign-in (accounts issue) and answered here as well once it lands.
    """
    prefix = crypto.split_api_key(token)
    if prefix is None:
        return INACTIVE
    key = (
        ApiKey.select(ApiKey, Organization)
        .join(Organization)
        .where(ApiKey.prefix == prefix)
        .first()
    )
    if key is None:
        crypto.check_api_key(token, crypto.DUMMY_HASH)  # same cost as a real miss
        return INACTIVE
    now = utcnow()
    if not crypto.check_api_key(token, key.key_hash):
        return INACTIVE
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now):
        return INACTIVE
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        with db.atomic():
            ApiKey.update(last_used_at=now).where(ApiKey.id == key.id).execute()
    return {
        "active": True,
        "kind": "api_key",
        "key_id": key.id,
        "user_id": key.created_by_id,
        "organization": {"id": key.organization.id, "slug": key.organization.slug},
        "role": None,
        "scopes": list(key.scopes),
    }
