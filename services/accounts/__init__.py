"""Accounts service (port 8001): users, organizations, memberships, API keys, audit log."""

from services.accounts import logic
from shared import crypto
from shared.config import Settings
from shared.web.app import create_service_app
from shared.web.auth import IntrospectionClient


def local_token_resolver(ttl_seconds: float):
    """Accounts answers introspection itself rather than calling itself over HTTP. API keys
    go through the same positive-answer cache as the other services use (bcrypt once per key
    per TTL; a revoked key stops within it). Sessions cost no bcrypt and stay uncached, so a
    sign-out or a role change takes effect on accounts' own endpoints at once."""
    api_keys = IntrospectionClient(ttl_seconds, introspect=logic.introspect)

    def resolve_token(token: str, org_ref: str | None) -> dict:
        if token.startswith(crypto.SESSION_PREFIX + "_"):
            return logic.introspect(token, org_ref)
        return api_keys(token, org_ref)

    resolve_token.api_keys = api_keys  # the cache, for tests and benchmarks
    resolve_token.forget_api_key = api_keys.forget_api_key  # a revoked key stops here at once
    return resolve_token


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
        resolve_token=local_token_resolver(Settings.from_env().introspection_cache_seconds),
        description="Users, organizations, memberships and roles, API keys, audit log.",
    )
