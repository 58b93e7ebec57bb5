"""Browser-facing protections, set up once per service app:

- CSRF: a state-changing request (POST, PUT, PATCH, DELETE) authenticated by the session
  cookie alone must come from one of our own pages. Browsers send `Origin` on every such
  cross-origin request (and `Sec-Fetch-Site`), so one naming another origin (or `null`), or
  marked `cross-site`, is refused with 403; a request carrying neither header is not from a
  browser page and cannot have used a victim's cookie. Requests with an `Authorization`
  header (API keys, tokens) carry no ambient credential and are exempt. The cookie is also
  `SameSite=Lax`, which already keeps it off cross-site POSTs in current browsers.
- Security headers: `X-Content-Type-Options: nosniff` everywhere; on HTML pages a strict
  Content-Security-Policy (same-origin scripts, styles, fetches; no framing), X-Frame-Options
  and Referrer-Policy. Swagger UI (/docs) needs its inline bootstrap script and styles.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, request
from flask_smorest import abort

from shared.config import Settings
from shared.web.auth import SESSION_COOKIE

STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def origin_of(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def trusted_origins(settings: Settings, own_url: str) -> set[str]:
    """Our own services' origins, internal and public, and this request's host."""
    urls = [*settings.service_urls.values(), *settings.public_urls.values(), own_url]
    return {origin for origin in map(origin_of, urls) if origin}


def cross_site_reason(method: str, headers, cookies, trusted: set[str]) -> str | None:
    """Why a cookie-authenticated state change must be refused, or None to let it through."""
    if method.upper() not in STATE_CHANGING_METHODS:
        return None
    if headers.get("Authorization") or SESSION_COOKIE not in cookies:
        return None  # no ambient credential in play
    if (headers.get("Sec-Fetch-Site") or "").lower() == "cross-site":
        return "cross-site request refused (Sec-Fetch-Site: cross-site)"
    origin = headers.get("Origin")
    if origin is None and headers.get("Referer"):
        origin = origin_of(headers.get("Referer")) or "null"
    if origin is None:
        return None  # not sent by a browser page
    if origin.lower() not in trusted:
        return f"cross-site request refused (Origin {origin!r} is not a DevMetrics page)"
    return None


def install_browser_protections(app: Flask, settings: Settings) -> None:
    @app.before_request
    def refuse_cross_site_state_changes():
        trusted = trusted_origins(settings, request.host_url)
        reason = cross_site_reason(request.method, request.headers, request.cookies, trusted)
        if reason:
            abort(403, message=reason)

    @app.after_request
    def security_headers(response: Response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if response.mimetype == "text/html":
            docs = request.path == app.config.get("OPENAPI_SWAGGER_UI_PATH", "/docs")
            response.headers.setdefault("Content-Security-Policy", DOCS_CSP if docs else PAGE_CSP)
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Referrer-Policy", "same-origin")
        return response
