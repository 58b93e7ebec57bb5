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

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
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
# The CPU-heavy part of authentication (accounts): a rise of "refused" is someone guessing.
API_KEY_BCRYPT_CHECKS = Counter(
    "devmetrics_api_key_bcrypt_checks_total", "bcrypt checks of API-key secrets", ["result"]
)


def observe_request(service: str, method: str, endpoint: str, status: int, seconds: float):
    REQUESTS.labels(service, method, endpoint, str(status)).inc()
    LATENCY.labels(service, method, endpoint).observe(seconds)


def metrics_payload() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
