"""Request ids, JSON logs and Prometheus metrics: the same for every service and worker."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
import uuid
from urllib.parse import unquote_plus

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

_request_id = contextvars.ContextVar("request_id", default=None)
REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def current_request_id() -> str:
    """The id of the request (or job) being handled; a new one outside of any."""
    return _request_id.get() or uuid.uuid4().hex


def set_request_id(value: str | None) -> str:
    """Adopt an incoming id when it is well-formed, else mint one; returns it."""
    request_id = value if value and _VALID_REQUEST_ID.match(value) else uuid.uuid4().hex
    _request_id.set(request_id)
    return request_id


def clear_request_id() -> None:
    _request_id.set(None)


# Credentials that travel in URLs, never written to a log line (gunicorn's access log,
# gunicorn.conf.py; a service's own error lines, shared/web/app.py): a login link's token is
# the path segment after `login-link/`, and GitHub's OAuth callback brings `code` and
# `state` in its query. Matched loosely (any case, repeated or percent-encoded slashes and
# dashes) so that a variant path, which may not reach the route and so may leave the token
# usable, is not logged either.
REDACTED = "REDACTED"
_LOGIN_LINK_TOKEN = re.compile(r"(login(?:-|%2d)link(?:/|%2f)+)[^/?#&\s'\"]+", re.IGNORECASE)
_OAUTH_CALLBACK = re.compile(r"github(?:/|%2f)+callback", re.IGNORECASE)
OAUTH_CALLBACK_SECRETS = frozenset({"code", "state"})
_OAUTH_SECRET_PAIR = re.compile(
    r"((?:^|[?&])(?:"
    # each letter as itself or percent-encoded, as the app would decode the name
    + "|".join("".join(f"(?:{c}|%{ord(c):02x})" for c in name) for name in OAUTH_CALLBACK_SECRETS)
    + r")=)[^&#\s'\"]*",
    re.IGNORECASE,
)


def may_carry_url_secrets(*texts: str | None) -> bool:
    """A cheap first look: False means no redaction can apply to these texts (a request to
    neither route, decoded or not), so a log line can skip the regular expressions."""
    lowered = " ".join(t for t in texts if t).lower()
    return "link" in lowered or "callback" in lowered


def redact_query(path: str | None, query: str | None) -> str | None:
    """A raw query string of a request to `path` without the OAuth callback's `code` and
    `state` (names compared decoded, as the app reads them)."""
    if not query or not path or not _OAUTH_CALLBACK.search(path):
        return query
    parts = []
    for part in query.split("&"):
        name, _sep, _value = part.partition("=")
        secret = unquote_plus(name).strip().lower() in OAUTH_CALLBACK_SECRETS
        parts.append(f"{name}={REDACTED}" if secret else part)
    return "&".join(parts)


def redact_target(target: str | None) -> str | None:
    """A request target or URL (`/path?query`, raw or decoded) without those credentials."""
    if not target or not may_carry_url_secrets(target):
        return target
    path, sep, query = target.partition("?")
    return _LOGIN_LINK_TOKEN.sub(rf"\1{REDACTED}", path) + sep + (redact_query(path, query) or "")


def redact_text(text: str, path: str | None = None) -> str:
    """Any log text (a header, a repr) seen while serving `path`: the same credentials out."""
    if not may_carry_url_secrets(text, path):
        return text
    text = _LOGIN_LINK_TOKEN.sub(rf"\1{REDACTED}", text)
    if _OAUTH_CALLBACK.search(path or "") or _OAUTH_CALLBACK.search(text):
        text = _OAUTH_SECRET_PAIR.sub(rf"\1{REDACTED}", text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, service, logger, message, request id, extras."""

    _reserved = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}

    def __init__(self, service: str):
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": _request_id.get(),
        }
        for key, value in vars(record).items():
            if key not in self._reserved and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


# Prometheus. Under gunicorn every worker is a process: with PROMETHEUS_MULTIPROC_DIR set
# (gunicorn.conf.py does it), /metrics aggregates all of them.
REQUESTS = Counter(
    "devmetrics_http_requests_total",
    "HTTP requests handled",
    ["service", "method", "endpoint", "status"],
)
LATENCY = Histogram(
    "devmetrics_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
JOBS = Counter("devmetrics_jobs_total", "Background jobs finished", ["queue", "outcome"])
# Webhook events given up on: `unstorable` (a value no column can hold, DEAD at once) or
# `retries_exhausted` (every attempt failed). Counted by the events worker (its own
# /metrics: `devmetrics worker events --metrics-port`).
EVENTS_DEAD = Counter(
    "devmetrics_events_dead_total", "Webhook events given up on (DEAD)", ["reason"]
)
# The CPU-heavy part of authentication (accounts): a rise of "refused" is someone guessing.
API_KEY_BCRYPT_CHECKS = Counter(
    "devmetrics_api_key_bcrypt_checks_total", "bcrypt checks of API-key secrets", ["result"]
)


def observe_request(service: str, method: str, endpoint: str, status: int, seconds: float):
    REQUESTS.labels(service, method, endpoint, str(status)).inc()
    LATENCY.labels(service, method, endpoint).observe(seconds)


def metrics_registry() -> CollectorRegistry:
    """This process's metrics, or every process's of PROMETHEUS_MULTIPROC_DIR when set."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    from prometheus_client import REGISTRY

    return REGISTRY


def metrics_payload() -> tuple[bytes, str]:
    return generate_latest(metrics_registry()), CONTENT_TYPE_LATEST


def serve_metrics(host: str, port: int) -> None:
    """Serve /metrics from a background thread: a worker is no web service, and what it
    counts (jobs, dead events) lives in its own process."""
    start_http_server(port, addr=host, registry=metrics_registry())
