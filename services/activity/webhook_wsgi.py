"""A lean WSGI layer in front of the activity app for `POST /webhooks/github`, the hottest
route (GitHub delivers every event through it): it skips werkzeug's request/response
objects, Flask's dispatch, Flask-Limiter's hooks (every application limit is exempt for
webhooks) and flask-smorest's response machinery, and answers exactly what the Flask view
(services/activity/views.py GitHubWebhook, still declared for /openapi.json and /docs)
answers: the same `logic.receive_webhook`, the same DeliveryResultSchema output and error
answers (shared/web/app.py's mapping, flask-smorest's for HTTP errors), the same request id,
Prometheus metrics, signature-failure limit and per-request connection release.

Anything unusual goes to Flask unchanged (it decides as it always did): another path or
method, a body without a plain Content-Length (chunked), or a request carrying cookies
(the CSRF check of shared/web/security.py only concerns cookie-authenticated requests)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from urllib.parse import parse_qsl

from flask import Flask
from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import (
    ClientDisconnected,
    HTTPException,
    InternalServerError,
    RequestEntityTooLarge,
)
from werkzeug.http import HTTP_STATUS_CODES

from services.activity import logic
from services.activity.schemas import DeliveryResultSchema
from shared.errors import Unauthorized
from shared.observability import REQUEST_ID_HEADER, observe_request
from shared.web.api import nul_refusal
from shared.web.app import error_answer, release_connection, start_request
from shared.web.limits import spend_webhook_signature_failure

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/github"
READ_CHUNK = 1024 * 1024


class WebhookFastPath:
    """WSGI middleware: `app.wsgi_app = WebhookFastPath(app.wsgi_app, app)`."""

    def __init__(self, wsgi_app: Callable, app: Flask):
        self.wsgi_app = wsgi_app
        self.app = app
        self.service = app.config["SERVICE_NAME"]
        self.result_schema = DeliveryResultSchema()

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if not self._handles(environ):
            return self.wsgi_app(environ, start_response)
        request_id, started = start_request(environ.get("HTTP_X_REQUEST_ID"))
        try:
            status, body, headers = self._answer(environ)
            payload = self._json(body)
            response_headers = [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(payload))),
                *headers.items(),
                ("X-Content-Type-Options", "nosniff"),
                (REQUEST_ID_HEADER, request_id),
            ]
            observe_request(
                self.service, "POST", WEBHOOK_PATH, status, time.perf_counter() - started
            )
            start_response(
                f"{status} {HTTP_STATUS_CODES.get(status, '').upper()}", response_headers
            )
            return [payload]
        finally:
            release_connection()

    @staticmethod
    def _handles(environ: dict) -> bool:
        return (
            environ.get("PATH_INFO") == WEBHOOK_PATH
            and environ.get("REQUEST_METHOD") == "POST"
            and (environ.get("CONTENT_LENGTH") or "").isdigit()
            and "HTTP_TRANSFER_ENCODING" not in environ
            and "HTTP_COOKIE" not in environ
        )

    def _answer(self, environ: dict) -> tuple[int, dict, dict]:
        """(status, body, extra headers), as the view and the app's error handlers give them."""
        try:
            headers = EnvironHeaders(environ)
            # What the app's request hook refuses (shared/web/app.py), refused here too.
            query = parse_qsl(environ.get("QUERY_STRING") or "", keep_blank_values=True)
            refusal = nul_refusal(None, query, headers.items())
            if refusal is not None:
                raise refusal
            raw = self._body(environ)
            try:
                delivery = logic.receive_webhook(raw, headers)
            except Unauthorized:
                # Counted only once the signature failed: a valid delivery is never throttled.
                spend_webhook_signature_failure(
                    self.app.extensions["devmetrics"], environ.get("REMOTE_ADDR") or "unknown"
                )
                raise
            return delivery.status, self.result_schema.dump(delivery.body), {}
        except HTTPException as exc:
            return self._http_error(exc)
        except Exception as exc:
            answer = error_answer(exc)
            if answer is not None:
                body, status, headers = answer
                return status, body, headers
            if self._propagates():
                raise
            # As Flask does for an unhandled error: log it, answer a bare 500.
            log.error("Exception on %s [POST]", WEBHOOK_PATH, exc_info=exc)
            return self._http_error(InternalServerError(original_exception=exc))

    def _body(self, environ: dict) -> bytes:
        length = int(environ["CONTENT_LENGTH"])
        limit = self.app.config.get("MAX_CONTENT_LENGTH")
        if limit is not None and length > limit:
            raise RequestEntityTooLarge()
        stream, parts, left = environ["wsgi.input"], [], length
        while left > 0:
            chunk = stream.read(min(left, READ_CHUNK))
            if not chunk:
                raise ClientDisconnected()
            parts.append(chunk)
            left -= len(chunk)
        return b"".join(parts)

    def _http_error(self, exc: HTTPException) -> tuple[int, dict, dict]:
        # flask-smorest's mapping (via shared/web/api.py), as Flask would call it.
        body, status, headers = self.app.extensions["devmetrics"]["api"].handle_http_exception(exc)
        return status, body, dict(headers or {})

    def _propagates(self) -> bool:
        propagate = self.app.config.get("PROPAGATE_EXCEPTIONS")
        return self.app.testing or self.app.debug if propagate is None else propagate

    def _json(self, body: dict) -> bytes:
        # The app's JSON provider with the arguments of its `response()` (what Flask sends).
        provider = self.app.json
        compact = getattr(provider, "compact", None)
        if (compact is None and self.app.debug) or compact is False:
            text = provider.dumps(body, indent=2)
        else:
            text = provider.dumps(body, separators=(",", ":"))
        return f"{text}\n".encode()
