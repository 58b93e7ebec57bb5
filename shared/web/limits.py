"""Rate limits (Flask-Limiter), set up once per service app:

- the public API (`/api/...`, sign-in excepted): per API key or session token, all routes of a
  service sharing one budget (`RATE_LIMIT_API`);
- sign-in (`/api/v1/auth/github/...`, `/api/v1/auth/login-link/...`): per client IP
  (`RATE_LIMIT_SIGN_IN`);
- webhook signature failures: per client IP, counted only when a delivery's signature is
  missing or wrong (`RATE_LIMIT_WEBHOOK_FAILURES`). A delivery is checked before it is
  counted, so a valid signed delivery is never throttled, even from an IP over its budget.
- failed authentications: per client IP, counted only when a presented bearer token is
  refused (`RATE_LIMIT_AUTH_FAILURES`). An IP over that budget is refused before any check
  that could cost a bcrypt (shared/web/auth.py `authenticate` says which); a valid key or
  session never spends it.
- exports (CSV answers, costlier than a page): per API key or session, a smaller budget of
  their own on top of the API's (`RATE_LIMIT_EXPORTS`), counted by the view once it knows
  it answers an export (`count_export`); and a few at once per process, one per
  organization (`take_export_slot`), so that streaming exports never hold all of a
  worker's threads (gthread: 4) and other requests, other tenants' first, always find one.

An exceeded limit is a 429 in the usual error shape with `Retry-After` (seconds); responses
under the API or sign-in limit carry `X-RateLimit-Limit/-Remaining/-Reset`, and no response
but a 429 or 503 carries `Retry-After` (`limit_headers`). Counters
live in memory per process by default (`RATE_LIMIT_STORAGE_URI=memory://`): with several
gunicorn workers each counts its own share, so the effective limit is up to
workers x limit; `redis://host:6379` (needs the `redis` package) shares them exactly.
A storage outage lets requests through rather than failing them (swallow_errors)."""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial

from flask import Flask, Response, current_app, request
from flask_limiter import ApplicationLimit, Limiter
from flask_smorest import abort
from limits import parse_many

from shared.config import Settings
from shared.web.auth import bearer_token

SIGN_IN_PREFIXES = ("/api/v1/auth/github/", "/api/v1/auth/login-link/")
EXPORTS_AT_ONCE = 2  # per process: half of gunicorn's 4 threads stay for everything else
EXPORTS_AT_ONCE_PER_ORG = 1  # per process and organization
EXPORT_RETRY_SECONDS = 5


def client_ip() -> str:
    # The connecting address: behind a reverse proxy, configure it to pass the client's
    # address (e.g. werkzeug's ProxyFix) or every client shares the proxy's budget.
    return request.remote_addr or "unknown"


def caller_identity() -> str:
    """Whose API budget a request spends: a digest of its bearer token or session cookie
    (never the token itself, which would otherwise sit in the limiter's storage), else the
    client IP for requests without one (they are answered 401 anyway)."""
    token = bearer_token(cookie=True)
    if token:
        return "token:" + hashlib.sha256(token.encode()).hexdigest()[:32]
    return "ip:" + client_ip()


def is_sign_in() -> bool:
    return request.path.startswith(SIGN_IN_PREFIXES)


def is_public_api() -> bool:
    return request.path.startswith("/api/") and not is_sign_in()


def install_rate_limits(app: Flask, settings: Settings) -> Limiter:
    limiter = Limiter(
        key_func=client_ip,
        app=app,
        application_limits=[
            ApplicationLimit(
                settings.rate_limit_api,
                key_function=caller_identity,
                exempt_when=lambda: not is_public_api(),
                error_message=f"rate limit exceeded: {settings.rate_limit_api} per API key",
                scope="api",
            ),
            ApplicationLimit(
                settings.rate_limit_sign_in,
                key_function=client_ip,
                exempt_when=lambda: not is_sign_in(),
                error_message=f"too many sign-in attempts from this address "
                f"(limit: {settings.rate_limit_sign_in})",
                scope="sign-in",
            ),
        ],
        # Its headers are ours (`limit_headers`): Flask-Limiter's put `Retry-After` on every
        # response under a limit, 200s included, and overwrote a 503's with its window's.
        headers_enabled=False,
        strategy="fixed-window",
        storage_uri=settings.rate_limit_storage_uri,
        swallow_errors=True,
        enabled=settings.rate_limit_enabled,
    )
    extensions = app.extensions["devmetrics"]
    extensions["limiter"] = limiter
    app.after_request(partial(limit_headers, limiter))
    extensions["webhook_failures"] = Budget(
        extensions,
        settings.rate_limit_webhook_failures,
        "webhook-signature-failures",
        "webhook signature failures",
    )
    # Checked and spent by `authenticate` (shared/web/auth.py).
    extensions["auth_failures"] = Budget(
        extensions, settings.rate_limit_auth_failures, "auth-failures", "failed authentications"
    )
    extensions["exports"] = Budget(  # spent by `count_export`
        extensions,
        settings.rate_limit_exports,
        "exports",
        "exports",
        key_of=caller_identity,
        whose="",
    )
    return limiter


def limit_headers(limiter: Limiter, response: Response) -> Response:
    """A response under a limit (the public API, sign-in) says where its caller stands:
    `X-RateLimit-Limit`, `-Remaining` and `-Reset` (epoch seconds). `Retry-After` belongs to
    refusals only: a 429 of that limit gets it (seconds until the window resets); every
    other 429 or 503 brings its own, and nothing else has one."""
    if not limiter.enabled:
        return response
    try:
        current = limiter.current_limit
        if current is None:
            return response
        reset_at = current.reset_at
        headers = {
            "X-RateLimit-Limit": str(current.limit.amount),
            "X-RateLimit-Remaining": str(current.remaining),
            "X-RateLimit-Reset": str(reset_at),
        }
    except Exception:  # storage unreachable: no figures to give (the limit fails open)
        return response
    response.headers.update(headers)
    if response.status_code == 429 and "Retry-After" not in response.headers:
        response.headers["Retry-After"] = str(max(1, math.ceil(reset_at - time.time())))
    return response


class Budget:
    """A budget of one kind of event per key (`limit`, in the `limits` notation), counted in
    the limiter's storage under (`scope`, key): with `redis://` one budget per key for every
    worker and service. Past it, a 429 with Retry-After in the usual error shape. The key
    defaults to `key_of()` of the current request: the client IP unless told otherwise. A
    storage outage fails open."""

    def __init__(
        self,
        extensions: dict,
        limit: str,
        scope: str,
        what: str,
        key_of: Callable[[], str] = client_ip,
        whose: str = " from this address",
    ):
        self.extensions = extensions  # the app's `app.extensions["devmetrics"]`
        self.limit = limit
        self.scope = scope
        self.what = what  # for the message: "too many <what><whose>"
        self.key_of = key_of
        self.whose = whose

    def _hits(self, key: str | None, *, spend: bool) -> None:
        settings: Settings = self.extensions["settings"]
        if not settings.rate_limit_enabled:
            return
        strategy = self.extensions["limiter"].limiter
        identifiers = (self.scope, key or self.key_of())
        for limit in parse_many(self.limit):
            try:
                allowed = (strategy.hit if spend else strategy.test)(limit, *identifiers)
                reset_at = strategy.get_window_stats(limit, *identifiers).reset_time
            except Exception:  # storage unreachable: fail open, like the other limits
                continue
            if not allowed:
                retry_after = max(1, int(reset_at - time.time()) + 1)
                abort(
                    429,
                    message=f"too many {self.what}{self.whose} "
                    f"(limit: {self.limit}); retry in {retry_after} s",
                    headers={"Retry-After": str(retry_after)},
                )

    def check(self, key: str | None = None) -> None:
        """Raise the 429 if the key has nothing left; spends nothing."""
        self._hits(key, spend=False)

    def spend(self, key: str | None = None) -> None:
        """Count one; raise the 429 if that goes past the budget."""
        self._hits(key, spend=True)


def count_export() -> None:
    """Called when a request is answered with an export: spend one of the caller's exports
    (per API key or session); past the budget, answer 429 (with Retry-After)."""
    current_app.extensions["devmetrics"]["exports"].spend()


class ConcurrencyLimit:
    """At most `total` holders at once in this process, and at most `per_key` per key."""

    def __init__(self, total: int, per_key: int):
        self.total, self.per_key = total, per_key
        self._held: Counter = Counter()
        self._lock = threading.Lock()

    def acquire(self, key) -> str | None:
        """None when taken, else what is full: "key" or "total"."""
        with self._lock:
            if self._held[key] >= self.per_key:
                return "key"
            if sum(self._held.values()) >= self.total:
                return "total"
            self._held[key] += 1
            return None

    def release(self, key) -> None:
        with self._lock:
            self._held[key] -= 1
            if self._held[key] <= 0:
                del self._held[key]


EXPORT_SLOTS = ConcurrencyLimit(EXPORTS_AT_ONCE, EXPORTS_AT_ONCE_PER_ORG)


def take_export_slot(organization_id: int) -> Callable[[], None]:
    """One of this process's export slots for the organization, until the returned
    function is called (calling it again does nothing). When none is free: 429 (another
    export of the organization is running) or 503 (the process's slots are taken), both
    with Retry-After."""
    full = EXPORT_SLOTS.acquire(organization_id)
    if full is not None:
        status, message = (
            (429, "another export of this organization is running")
            if full == "key"
            else (503, "too many exports are running")
        )
        abort(
            status,
            message=f"{message}; retry in {EXPORT_RETRY_SECONDS} s",
            headers={"Retry-After": str(EXPORT_RETRY_SECONDS)},
        )
    once = threading.Lock()

    def release() -> None:
        if once.acquire(blocking=False):
            EXPORT_SLOTS.release(organization_id)

    return release


def count_webhook_signature_failure() -> None:
    """Called after a delivery failed its signature check: spend one of the client IP's
    failures; past the budget, answer 429 (with Retry-After) instead of 401."""
    spend_webhook_signature_failure(current_app.extensions["devmetrics"], client_ip())


def spend_webhook_signature_failure(extensions: dict, ip: str) -> None:
    """`count_webhook_signature_failure` as a plain callable (no request context), for the
    activity service's webhook fast path: `extensions` is the app's
    `app.extensions["devmetrics"]`. Raises the 429 HTTPException when over the budget."""
    extensions["webhook_failures"].spend(ip)
