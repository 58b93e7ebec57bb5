"""The one way anything is audited: call `record` inside the transaction of the change."""

from __future__ import annotations

from flask import g, has_request_context, request

from shared.models import AuditLog


def record(
    action: str,
    *,
    organization=None,
    target_type: str | None = None,
    target_id=None,
    metadata: dict | None = None,
    actor_user=None,
    actor_api_key=None,
) -> AuditLog:
    """Write one audit entry. In a request, the caller (user or API key), IP and user agent
    come from the request unless given."""
    ip = user_agent = None
    if has_request_context():
        principal = g.get("principal")
        if principal is not None:
            actor_user = actor_user or principal.user_id
            actor_api_key = actor_api_key or principal.key_id
        ip = request.remote_addr
        user_agent = request.headers.get("User-Agent")
    return AuditLog.create(
        organization=organization,
        actor_user=actor_user,
        actor_api_key=actor_api_key,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        ip=(ip or None) and ip.strip()[:45],
        user_agent=user_agent,
        metadata=metadata or {},
    )
