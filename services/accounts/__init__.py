"""Accounts service (port 8001): users, organizations, memberships, API keys, audit log."""

from services.accounts import logic
from shared import crypto
from shared.config import Settings
from shared.web.app import create_service_app
from shared.web.auth import IntrospectionClient


class LocalTokenResolver:
    """Accounts answers introspection itself rather than calling itself over HTTP. API keys
    go through the same cache as the other services use (bcrypt once per key per TTL; a
    revoked key stops within it; a refused key is answered from the cache for a few seconds).
    Sessions cost no bcrypt and stay uncached, so a sign-out or a role change takes effect on
    accounts' own endpoints at once. `known`/`trusted` as for IntrospectionClient, which
    `require` consults before the failed-auth budget."""

    def __init__(self, ttl_seconds: float):
        self.api_keys = IntrospectionClient(ttl_seconds, introspect=logic.introspect)

    def known(self, token: str, org_ref: str | None) -> dict | None:
        if crypto.is_session_token(token):  # a SHA-256 lookup: always cheap enough to answer
            return logic.introspect(token, org_ref)
        return self.api_keys.known(token, org_ref)

    def trusted(self, token: str, org_ref: str | None) -> bool:
        return self.api_keys.trusted(token, org_ref)

    def forget_api_key(self, key_id: int) -> None:
        self.api_keys.forget_api_key(key_id)  # a revoked key stops here at once

    def __call__(self, token: str, org_ref: str | None) -> dict:
        if crypto.is_session_token(token):
            return logic.introspect(token, org_ref)
        return self.api_keys(token, org_ref)


def create_app(config=None):
    from services.accounts.views import (
        audit_blp,
        auth,
        internal,
        invitations,
        keys,
        me_blp,
        members,
        orgs,
    )

    return create_service_app(
        "accounts",
        config,
        blueprints=[auth, me_blp, orgs, members, invitations, keys, audit_blp, internal],
        resolve_token=LocalTokenResolver(Settings.from_env().introspection_cache_seconds),
        description="Users, organizations, memberships and roles, API keys, audit log.",
    )
