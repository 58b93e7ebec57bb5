"""Accounts service (port 8001): users, organizations, memberships, API keys, audit log."""

from services.accounts import logic
from shared.web.app import create_service_app


def create_app(config=None):
    from services.accounts.views import audit_blp, auth, internal, keys, me_blp, members, orgs

    return create_service_app(
        "accounts",
        config,
        blueprints=[auth, me_blp, orgs, members, keys, audit_blp, internal],
        # Accounts answers introspection itself rather than calling itself over HTTP.
        resolve_token=logic.introspect,
        description="Users, organizations, memberships and roles, API keys, audit log.",
    )
