"""The one way a DevMetrics service becomes a Flask app: every cross-cutting concern
(database, errors, OpenAPI and /docs, health, metrics, logs, request ids, auth plumbing,
the internal message inbox) is set up here; each service only adds its blueprints."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import IO

import peewee as pw
from flask import Flask, Request, Response, g, jsonify, request, send_from_directory
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream

from shared import migrations
from shared.config import Settings
from shared.database import db, init_db
from shared.errors import DomainError
from shared.observability import (
    REQUEST_ID_HEADER,
    clear_request_id,
    configure_logging,
    metrics_payload,
    observe_request,
    redact_target,
    set_request_id,
)
from shared.startup import check_service_settings
from shared.web.api import Api, nul_refusal
from shared.web.auth import IntrospectionClient
from shared.web.inbox import make_inbox_blueprint
from shared.web.limits import install_rate_limits
from shared.web.security import install_browser_protections

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub caps webhook payloads at 25 MB


class BoundedStream(LimitedStream):
    """A body without a Content-Length (chunked), read up to `limit` bytes and refused with
    a 413 past it. werkzeug's wrapper for such a body stops silently at the limit, unable
    to tell a body of exactly `limit` bytes from a longer one, so a longer body was read cut
    short and refused as malformed (400), or even taken: this one reads one byte further
    to tell."""

    def __init__(self, stream: IO[bytes], limit: int):
        super().__init__(stream, limit + 1, is_max=True)
        self.max_length = limit

    def readinto(self, buffer) -> int | None:
        size = super().readinto(buffer)
        if self.tell() > self.max_length:
            raise RequestEntityTooLarge()
        return size


class ServiceRequest(Request):
    @cached_property
    def stream(self) -> IO[bytes]:
        limit = self.max_content_length
        streamed = self.content_length is None and "wsgi.input_terminated" in self.environ
        if streamed and limit is not None and not self.shallow:
            return BoundedStream(self.environ["wsgi.input"], limit)
        return super().stream


class ServiceFlask(Flask):
    request_class = ServiceRequest

    def log_exception(self, exc_info) -> None:
        # Flask's own line, with the path as the logs may show it (no login-link token).
        self.logger.error(
            f"Exception on {redact_target(request.path)} [{request.method}]", exc_info=exc_info
        )


def create_service_app(
    service: str,
    config: dict | None = None,
    *,
    blueprints: Iterable = (),
    message_handlers: dict[str, Callable] | None = None,
    resolve_token: Callable | None = None,
    description: str = "",
) -> Flask:
    settings = Settings.from_env()
    # No service starts on a missing or public secret outside development (gunicorn's master
    # runs the same checks first, for one clear line instead of a worker's traceback).
    check_service_settings(settings)
    app = ServiceFlask(f"devmetrics.{service}")
    app.config.update(
        SERVICE_NAME=service,
        DATABASE_URL=settings.database_url,
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        API_TITLE=f"DevMetrics {service} service",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL="/docs/assets/",  # served from this app: /docs works offline
        API_SPEC_OPTIONS={
            "info": {"description": description or f"DevMetrics {service} service"},
            "components": {
                "securitySchemes": {
                    "bearerAuth": {
                        "type": "http",
                        "scheme": "bearer",
                        "description": "An API key (dm_...) or a session token",
                    }
                }
            },
            "security": [{"bearerAuth": []}],
        },
        READINESS_CACHE_SECONDS=5.0,
    )
    app.config.update(config or {})
    if not app.config.get("TESTING"):
        configure_logging(service, settings.log_level)

    # The tests hand in their (already migrated, transaction-wrapped) database.
    if app.config.get("DATABASE") is not None:
        db.initialize(app.config["DATABASE"])
    else:
        init_db(app.config["DATABASE_URL"])

    app.extensions["devmetrics"] = {
        "settings": settings,
        "resolve_token": resolve_token or IntrospectionClient(settings.introspection_cache_seconds),
    }

    _register_request_hooks(app, service)
    install_browser_protections(app, settings)  # CSRF refusal, security headers
    install_rate_limits(app, settings)
    _register_platform_routes(app)

    api = Api(app)
    api.register_blueprint(make_inbox_blueprint(service, message_handlers or {}))
    for blueprint in blueprints:
        api.register_blueprint(blueprint)
    app.extensions["devmetrics"]["api"] = api
    return app


def start_request(request_id_header: str | None) -> tuple[str, float]:
    """What every request begins with: its id (adopted or minted) and its start time."""
    return set_request_id(request_id_header), time.perf_counter()


def release_connection() -> None:
    """What every request ends with: the connection back to the pool (a test's surrounding
    transaction keeps its connection) and no request id left behind."""
    if not db.is_closed() and not db.in_transaction():
        db.close()
    clear_request_id()


# Errors -> (body, status, headers), as plain callables: the Flask error handlers below and
# the activity service's webhook fast path (a bare WSGI layer) answer with the same ones.
ErrorAnswer = tuple[dict, int, dict]


def domain_error_answer(exc: DomainError) -> ErrorAnswer:
    body = {
        "code": exc.status,
        "status": HTTP_STATUS_CODES.get(exc.status, "Error"),
        "message": exc.message,
        "errors": exc.errors,
    }
    return body, exc.status, {}


def value_not_storable_answer(exc: pw.DataError) -> ErrorAnswer:
    # e.g. a NUL character or a number beyond the column's range: the caller's input.
    log.warning("value refused by the database: %s", " ".join(str(exc).split()))
    body = {
        "code": 422,
        "status": "Unprocessable Entity",
        "message": "a value cannot be stored (a NUL character, or a number out of range)",
        "errors": {},
    }
    return body, 422, {}


def number_out_of_range_answer(exc: OverflowError) -> ErrorAnswer:
    # An id or number in the request too large for any column (SQLite refuses to bind it).
    body = {
        "code": 422,
        "status": "Unprocessable Entity",
        "message": "a number in the request is out of range",
        "errors": {},
    }
    return body, 422, {}


def conflicting_write_answer(exc: pw.IntegrityError) -> ErrorAnswer:
    log.warning("write refused by a constraint: %s", " ".join(str(exc).split()))
    body = {
        "code": 409,
        "status": "Conflict",
        "message": "this conflicts with existing data (a duplicate, say)",
        "errors": {},
    }
    return body, 409, {}


def database_unavailable_answer(exc: pw.DatabaseError) -> ErrorAnswer:
    log.error("database unavailable: %s", " ".join(str(exc).split()))
    body = {
        "code": 503,
        "status": "Service Unavailable",
        "message": "database unavailable, retry shortly",
        "errors": {},
    }
    return body, 503, {"Retry-After": "1"}


ERROR_ANSWERS: dict[type[BaseException], Callable[..., ErrorAnswer]] = {
    DomainError: domain_error_answer,
    pw.DataError: value_not_storable_answer,
    OverflowError: number_out_of_range_answer,
    pw.IntegrityError: conflicting_write_answer,
    pw.OperationalError: database_unavailable_answer,
    pw.InterfaceError: database_unavailable_answer,
}


def error_answer(exc: BaseException) -> ErrorAnswer | None:
    """The answer for an error, chosen like Flask chooses a handler (the nearest class in
    the exception's MRO), or None when none applies (an internal error)."""
    for cls in type(exc).__mro__:
        answer = ERROR_ANSWERS.get(cls)
        if answer is not None:
            return answer(exc)
    return None


def _register_request_hooks(app: Flask, service: str) -> None:
    @app.before_request
    def begin_request():
        g.request_id, g.started = start_request(request.headers.get(REQUEST_ID_HEADER))
        # No connection up front: peewee connects on the first query, so /healthz answers
        # (and /readyz explains) even while the database is down.

    @app.before_request
    def refuse_nul_characters():
        # Before authentication and any query: a NUL would reach the database as a value.
        refusal = nul_refusal(
            request.view_args, request.args.items(multi=True), request.headers.items()
        )
        if refusal is not None:
            raise refusal

    @app.after_request
    def finish_request(response: Response):
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        observe_request(service, request.method, endpoint, response.status_code, elapsed)
        return response

    @app.teardown_request
    def end_request(exc):
        release_connection()

    for error_class, answer in ERROR_ANSWERS.items():
        app.register_error_handler(error_class, _as_flask_handler(answer))


def _as_flask_handler(answer: Callable[..., ErrorAnswer]) -> Callable:
    def handler(exc):
        body, status, headers = answer(exc)
        return jsonify(body), status, headers

    handler.__name__ = answer.__name__
    return handler


def _register_platform_routes(app: Flask) -> None:
    state = {"checked_at": 0.0, "ready": (False, "not checked")}

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "service": app.config["SERVICE_NAME"]}

    @app.get("/readyz")
    def readyz():
        now = time.monotonic()
        if now - state["checked_at"] > app.config["READINESS_CACHE_SECONDS"]:
            state["ready"] = _readiness()
            state["checked_at"] = now
        ready, reason = state["ready"]
        body = {"status": "ready" if ready else "not ready", "service": app.config["SERVICE_NAME"]}
        if not ready:
            body["reason"] = reason
        return body, 200 if ready else 503

    @app.get("/metrics")
    def prometheus_metrics():
        payload, content_type = metrics_payload()
        return Response(payload, content_type=content_type)

    @app.get("/docs/assets/<path:filename>")
    def swagger_assets(filename):
        return send_from_directory(str(swagger_ui_path), filename, max_age=3600)


def _readiness() -> tuple[bool, str]:
    try:
        db.execute_sql("SELECT 1")
    except (pw.OperationalError, pw.InterfaceError) as exc:
        return False, f"database unreachable: {' '.join(str(exc).split())}"
    pending = migrations.pending_names(db.obj)
    if pending is None:
        return False, "database not migrated: run `devmetrics db migrate`"
    if pending:
        return False, f"{len(pending)} pending migration(s): {', '.join(pending)}"
    return True, ""
