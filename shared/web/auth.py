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
from typing import NoReturn

from flask import current_app, g, request
from flask_smorest import abort

from shared import crypto
from shared.http import ServiceClient, ServiceUnavailable
from shared.models import Organization, Role
from shared.permissions import Principal

# How long a refused token is answered "inactive" without asking accounts again: a repeated
# bad key costs nothing. Short, since nothing turns a refused token valid on purpose.
REFUSED_CACHE_SECONDS = 5.0
INACTIVE = {"active": False}


class IntrospectionClient:
    """Asks accounts who a token is. Positive answers are cached for a few seconds so bcrypt
    is not paid per request; a revoked key therefore stops working within that TTL. Refusals
    are cached too, for REFUSED_CACHE_SECONDS, by token digest alone (a refused token is
    refused for every organization), in their own bounded cache so a flood of bad tokens
    never evicts a good answer. `introspect(token, org_ref)` replaces the HTTP call (accounts
    answers for itself)."""

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
        # Entries outlive their TTL until evicted: an expired one is asked again, and it
        # vouches that the token was valid (`trusted`).
        self._cache: OrderedDict[str, tuple[float, dict]] = OrderedDict()
        self._refused: OrderedDict[str, float] = OrderedDict()  # token digest -> expiry
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

    @staticmethod
    def _keys(token: str, org_ref: str | None) -> tuple[str, str]:
        return (
            hashlib.sha256(f"{org_ref}\0{token}".encode()).hexdigest(),
            hashlib.sha256(token.encode()).hexdigest(),
        )

    def known(self, token: str, org_ref: str | None) -> dict | None:
        """The answer without asking accounts: inactive for a token refused within the last
        REFUSED_CACHE_SECONDS, a positive answer within its TTL, else None."""
        key, digest = self._keys(token, org_ref)
        now = time.monotonic()
        with self._lock:
            refused_until = self._refused.get(digest)
            if refused_until is not None and refused_until > now:
                return INACTIVE
            hit = self._cache.get(key)
            if hit and hit[0] > now:
                return hit[1]
        return None

    def trusted(self, token: str, org_ref: str | None) -> bool:
        """Whether accounts may be asked about this token even for an address over its
        failure budget: a session (a SHA-256 lookup there, never a bcrypt) or a token it
        found valid before (its entry has expired: asking again costs what any valid key
        costs, one bcrypt per TTL; accounts still refuses it if revoked since)."""
        if crypto.is_session_token(token):
            return True
        key, _digest = self._keys(token, org_ref)
        with self._lock:
            return key in self._cache

    def _remember(self, token: str, org_ref: str | None, data: dict) -> None:
        key, digest = self._keys(token, org_ref)
        now = time.monotonic()
        with self._lock:
            if data.get("active"):
                self._refused.pop(digest, None)
                self._cache[key] = (now + self.ttl, data)  # kept even with a TTL of 0
                self._cache.move_to_end(key)
                while len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
            else:
                self._cache.pop(key, None)  # no longer vouched for
                self._refused[digest] = now + REFUSED_CACHE_SECONDS
                self._refused.move_to_end(digest)
                while len(self._refused) > self.max_entries:
                    self._refused.popitem(last=False)

    def __call__(self, token: str, org_ref: str | None) -> dict:
        hit = self.known(token, org_ref)
        if hit is not None:
            return hit
        data = self.introspect(token, org_ref)
        self._remember(token, org_ref, data)
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


def authenticate(token: str, org_ref: str | None) -> dict:
    """Accounts' answer for a presented token, spending the client IP's failed-auth budget
    (`RATE_LIMIT_AUTH_FAILURES`, shared/web/limits.py) when it is refused: 401, or 429 past
    the budget. What costs no bcrypt comes first (the resolver's cached answers, sessions,
    tokens found valid before), so a valid key or session keeps working from an address
    over its budget; only a check that could cost a bcrypt (a key this service has not
    seen valid) is refused up front for such an address."""
    extensions = current_app.extensions["devmetrics"]
    resolve, failures = extensions["resolve_token"], extensions["auth_failures"]
    if len(token) > MAX_TOKEN_LENGTH:  # no real token is this long
        return _refused(failures)
    # A resolver without these (a plain function) has no cache: every answer is asked for.
    data = resolve.known(token, org_ref) if hasattr(resolve, "known") else None
    if data is None:
        if not (hasattr(resolve, "trusted") and resolve.trusted(token, org_ref)):
            failures.check()  # before accounts (and its bcrypt) is asked
        try:
            data = resolve(token, org_ref)
        except ServiceUnavailable:
            abort(503, message="authentication service unavailable, retry shortly")
    if not data.get("active"):
        return _refused(failures)
    return data


def _refused(failures) -> NoReturn:
    failures.spend()  # 429 past the budget
    abort(401, message="invalid, expired or revoked token")


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
            org_ref = kwargs.get(org_param)
            data = authenticate(token, org_ref)
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
