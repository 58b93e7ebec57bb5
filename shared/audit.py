"""The one way anything is audited: call `record` (or `changed`, for "change a row, save it,
audit it") inside the transaction of the change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Change:
    """What `changed` did to a row: the given fields' values before and after (as stored on
    the row: a foreign key as its id), and the names of those that changed, sorted."""

    before: dict
    after: dict
    fields: list[str]


def changed(
    row,
    changes: dict,
    action: str,
    *,
    target_type: str,
    target_id=None,
    organization=None,
    metadata: dict | Callable[[Change], dict] | None = None,
    always: bool = False,
    actor_user=None,
    actor_api_key=None,
) -> Change:
    """Change a row and audit it, in one step: set `changes` (field name -> value) on `row`,
    save the fields whose value changed (and `updated_at`, which `save` keeps current), and
    record one entry `action` about `target_type`/`target_id` (default: the row's id).

    The entry's metadata is `{"changed": [the changed field names]}` unless `metadata` says
    otherwise: a dict, or a function of the `Change` (e.g. `{"from": ..., "to": ...}`).
    When nothing changed, nothing is saved or recorded, unless `always` (an action that is
    audited even when it changes nothing, e.g. an update that sets the values already set).
    Call it inside the transaction of the change, like `record`."""
    names = {name: row._meta.combined[name].name for name in changes}
    before = {name: row.__data__.get(names[name]) for name in changes}
    for name, value in changes.items():
        setattr(row, name, value)
    after = {name: row.__data__.get(names[name]) for name in changes}
    change = Change(before, after, sorted(name for name in changes if before[name] != after[name]))
    if not change.fields and not always:
        return change
    only = [names[name] for name in change.fields]
    if "updated_at" in row._meta.fields:
        only.append("updated_at")  # set by save()
    if only:
        row.save(only=only)
    if metadata is None:
        metadata = {"changed": change.fields}
    elif callable(metadata):
        metadata = metadata(change)
    record(
        action,
        organization=organization,
        target_type=target_type,
        target_id=row.get_id() if target_id is None else target_id,
        metadata=metadata,
        actor_user=actor_user,
        actor_api_key=actor_api_key,
    )
    return change
