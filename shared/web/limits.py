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

An exceeded limit is a 429 in the usual error shape with `Retry-After` (seconds). Counters
live in memory per process by default (`RATE_LIMIT_STORAGE_URI=memory://`): with several
gunicorn workers each counts its own share, so the effective limit is up to
workers x limit; `redis://host:6379` (needs the `redis` package) shares them exactly.
A storage outage lets requests through rather than failing them (swallow_errors)."""

from __future__ import annotations

import hashlib
import time

from flask import Flask, current_app, request
from flask_limiter import ApplicationLimit, Limiter
from flask_smorest import abort
from limits import parse_many

from shared.config import Settings
from shared.web.auth import bearer_token

SIGN_IN_PREFIXES = ("/api/v1/auth/github/", "/api/v1/auth/login-link/")


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
        headers_enabled=True,
        retry_after="delta-seconds",
        strategy="fixed-window",
        storage_uri=settings.rate_limit_storage_uri,
        swallow_errors=True,
        enabled=settings.rate_limit_enabled,
    )
    extensions = app.extensions["devmetrics"]
    extensions["limiter"] = limiter
    extensions["webhook_failures"] = FailureBudget(
        extensions,
        settings.rate_limit_webhook_failures,
        "webhook-signature-failures",
        "webhook signature failures",
    )
    # Checked and spent by `authenticate` (shared/web/auth.py).
    extensions["auth_failures"] = FailureBudget(
        extensions, settings.rate_limit_auth_failures, "auth-failures", "failed authentications"
    )
    return limiter


class FailureBudget:
    """A per-client-IP budget of one kind of failure (`limit`, in the `limits` notation),
    counted in the limiter's storage under (`scope`, IP): with `redis://` one budget per IP
    for every worker and service. Past it, a 429 with Retry-After in the usual error shape.
    `ip` defaults to the current request's client IP. A storage outage fails open."""

    def __init__(self, extensions: dict, limit: str, scope: str, what: str):
        self.extensions = extensions  # the app's `app.extensions["devmetrics"]`
        self.limit = limit
        self.scope = scope
        self.what = what  # for the message: "too many <what> from this address"

    def _hits(self, ip: str | None, *, spend: bool) -> None:
        settings: Settings = self.extensions["settings"]
        if not settings.rate_limit_enabled:
            return
        strategy = self.extensions["limiter"].limiter
        identifiers = (self.scope, ip or client_ip())
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
                    message=f"too many {self.what} from this address "
                    f"(limit: {self.limit}); retry in {retry_after} s",
                    headers={"Retry-After": str(retry_after)},
                )

    def check(self, ip: str | None = None) -> None:
        """Raise the 429 if the IP has no failure left; spends nothing."""
        self._hits(ip, spend=False)

    def spend(self, ip: str | None = None) -> None:
        """Count one failure; raise the 429 if that goes past the budget."""
        self._hits(ip, spend=True)


def count_webhook_signature_failure() -> None:
    """Called after a delivery failed its signature check: spend one of the client IP's
    failures; past the budget, answer 429 (with Retry-After) instead of 401."""
    spend_webhook_signature_failure(current_app.extensions["devmetrics"], client_ip())


def spend_webhook_signature_failure(extensions: dict, ip: str) -> None:
    """`count_webhook_signature_failure` as a plain callable (no request context), for the
    activity service's webhook fast path: `extensions` is the app's
    `app.extensions["devmetrics"]`. Raises the 429 HTTPException when over the budget."""
    extensions["webhook_failures"].spend(ip)
