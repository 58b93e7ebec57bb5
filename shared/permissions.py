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

    @property
    def effective_role(self) -> Role:
        """A user's role in the org; an API key counts as ADMIN with the admin scope, else
        as a VIEWER-level reader/writer limited by its scopes."""
        if self.kind == "api_key":
            return Role.ADMIN if "admin" in self.scopes else Role.VIEWER
        return Role(self.role) if self.role else Role.VIEWER

    def allows(self, scope: str | None, role: Role | None) -> bool:
        """Keys by scope (admin covers all); users by their role in the route's org
        (`role=None`: a route outside any organization, open to any signed-in user)."""
        if self.kind == "api_key":
            return scope is None or scope in self.scopes or "admin" in self.scopes
        if role is None:
            return True
        return bool(self.role) and ROLE_RANK[Role(self.role)] >= ROLE_RANK[role]
