"""Who is calling: bearer tokens resolved through accounts' introspection, and one decorator
that checks organization, scope and role for every endpoint of every service."""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import wraps

from flask import current_app, g, request
from flask_smorest import abort

from shared.http import ServiceClient, ServiceUnavailable
from shared.models import Organization, Role
from shared.permissions import Principal


class IntrospectionClient:
    """Asks accounts who a token is. Positive answers are cached for a few seconds so bcrypt
    is not paid per request; a revoked key therefore stops working within that TTL.
    `introspect(token, org_ref)` replaces the HTTP call (accounts answers for itself)."""

    def __init__(
        self,
        ttl_seconds: float,
        client: ServiceClient | None = None,
        max_entries=10_000,
        introspect: Callable[[str, str | None], dict] | None = None,
    ):
        self.ttl = ttl_seconds
        self.client = client or (None if introspect else ServiceClient("accounts"))
        self.introspect = introspect or self._ask_accounts
        self.max_entries = max_entries
        self._cache: OrderedDict[str, tuple[float, dict]] = OrderedDict()
        self._lock = threading.Lock()

    def _ask_accounts(self, token: str, org_ref: str | None) -> dict:
        response = self.client.post(
            "/internal/v1/auth/introspect", json={"token": token, "org": org_ref}
        )
        if response.status_code != 200:
            raise ServiceUnavailable(f"accounts introspection answered {response.status_code}")
        return response.json()

    def forget_api_key(self, key_id: int) -> None:
        """Drop this process's cached answers for a key (accounts, on revoking it; other
        processes stop accepting it when their entries expire)."""
        with self._lock:
            for cache_key, (_expires, data) in list(self._cache.items()):
                if data.get("kind") == "api_key" and data.get("key_id") == key_id:
                    del self._cache[cache_key]

    def __call__(self, token: str, org_ref: str | None) -> dict:
        key = hashlib.sha256(f"{org_ref}\0{token}".encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit and hit[0] > now:
                return hit[1]
        data = self.introspect(token, org_ref)
        if data.get("active") and self.ttl > 0:
            with self._lock:
                self._cache[key] = (now + self.ttl, data)
                while len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
        return data


SESSION_COOKIE = "devmetrics_session"
MAX_TOKEN_LENGTH = 512


def bearer_token(*, cookie: bool = False) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    # A browser signed in through GitHub carries its session in a SameSite cookie.
    return request.cookies.get(SESSION_COOKIE) if cookie else None


def require(
    scope: str | None = None,
    role: Role | None = Role.VIEWER,
    org_param: str = "org",
    api_keys: bool = True,
):
    """Authenticate the caller; for routes with an `org` path parameter, answer 404 unless
    the caller belongs to that organization, then check the scope (keys) or role (users).
    `api_keys=False` reserves the route to signed-in people."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            token = bearer_token(cookie=True)
            if token is None:
                abort(401, message="missing bearer token (Authorization: Bearer <token>)")
            if len(token) > MAX_TOKEN_LENGTH:  # no real token is this long
                abort(401, message="invalid, expired or revoked token")
            org_ref = kwargs.get(org_param)
            try:
                data = current_app.extensions["devmetrics"]["resolve_token"](token, org_ref)
            except ServiceUnavailable:
                abort(503, message="authentication service unavailable, retry shortly")
            if not data.get("active"):
                abort(401, message="invalid, expired or revoked token")
            principal = Principal.from_introspection(data)
            if org_ref is not None:
                org = Organization.by_ref(org_ref)
                # Another org's resources are "not found", never "forbidden".
                if org is None or org.id != principal.org_id:
                    abort(404, message="organization not found")
                g.org = org
            if principal.kind == "api_key" and not api_keys:
                abort(403, message="this endpoint is for signed-in users, not API keys")
            if not principal.allows(scope, role):
                needed = f"scope {scope!r}" if principal.kind == "api_key" else f"role {role}"
                abort(403, message=f"this token lacks {needed}")
            g.principal = principal
            return view(*args, **kwargs)

        wrapper._devmetrics_auth = {"scope": scope, "role": str(role)}
        return wrapper

    return decorator


def internal_only(view):
    """`/internal/...` routes: only the service token (compared in constant time)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        token = bearer_token() or ""
        expected = current_app.extensions["devmetrics"]["settings"].require_internal_token()
        if not hmac.compare_digest(token.encode(), expected.encode()):
            abort(401, message="internal route: service token required")
        return view(*args, **kwargs)

    return wrapper
