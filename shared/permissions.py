"""Who may do what: API key scopes, role ranks, and the resolved caller (no Flask here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.models import Role

ROLE_RANK = {Role.VIEWER: 1, Role.MEMBER: 2, Role.ADMIN: 3, Role.OWNER: 4}
SCOPES = (
    "metrics:read",
    "activity:read",
    "activity:write",
    "notifications:read",
    "notifications:write",
    "admin",
)


@dataclass(frozen=True)
class Principal:
    kind: str  # "api_key" or "session"
    org_id: int | None
    org_slug: str | None = None
    user_id: int | None = None
    key_id: int | None = None
    role: str | None = None  # the user's role in org_id (sessions)
    scopes: tuple[str, ...] = field(default_factory=tuple)  # what an API key may do

    @classmethod
    def from_introspection(cls, data: dict) -> Principal:
        org = data.get("organization") or {}
        return cls(
            kind=data["kind"],
            org_id=org.get("id"),
            org_slug=org.get("slug"),
            user_id=data.get("user_id"),
            key_id=data.get("key_id"),
            role=data.get("role"),
            scopes=tuple(data.get("scopes") or ()),
        )

    def allows(self, scope: str | None, role: Role) -> bool:
        if self.kind == "api_key":
            return scope is None or scope in self.scopes or "admin" in self.scopes
        return ROLE_RANK.get(Role(self.role), 0) >= ROLE_RANK[role] if self.role else False
