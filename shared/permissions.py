"""Who may do what: API key scopes, role ranks, and the resolved caller (no Flask here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.models import Role

ROLE_RANK = {Role.VIEWER: 1, Role.MEMBER: 2, Role.ADMIN: 3, Role.OWNER: 4}
# Each API key scope and the least role that may exercise it: the one role matrix. Every
# route declares `require(scope=S, role=SCOPE_ROLE[S])` (a test holds them together), and a
# key holds a scope only while its creator's current role reaches SCOPE_ROLE[scope].
SCOPE_ROLE = {
    "metrics:read": Role.VIEWER,
    "activity:read": Role.VIEWER,
    "activity:write": Role.ADMIN,
    "notifications:read": Role.VIEWER,
    "notifications:write": Role.ADMIN,
    "admin": Role.ADMIN,
}
SCOPES = tuple(SCOPE_ROLE)


def scopes_beyond(role: Role | str | None, scopes) -> list[str]:
    """The scopes of `scopes` that `role` may not hold (all of them for a non-member)."""
    rank = ROLE_RANK[Role(role)] if role else 0
    return sorted(s for s in set(scopes) if s not in SCOPE_ROLE or ROLE_RANK[SCOPE_ROLE[s]] > rank)


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
        as a VIEWER-level reader/writer limited by its scopes. (Introspection answers for a
        key only while its creator's current role allows all its scopes: an admin-scope key
        of a person is never more than that person now is.)"""
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
