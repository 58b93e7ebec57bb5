"""gunicorn settings for every DevMetrics service (one file; environment overrides).

gunicorn -c gunicorn.conf.py --bind 127.0.0.1:8001 'services.accounts:create_app()'
"""

import os
import shutil
import sys
import tempfile

from gunicorn.glogging import Logger

# Prometheus: all workers write to one folder so /metrics adds them up. It must be set
# before prometheus_client is first imported (by the app, and by shared.crypto's counter,
# which the startup check below imports), hence first.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="devmetrics-prom-")
_prometheus_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]

from shared.config import ConfigError, Settings  # noqa: E402 (after the folder is set)
from shared.startup import check_service_settings  # noqa: E402

# A missing or public secret (and any malformed setting) stops the master before a worker
# boots: one line naming the setting, not a traceback per worker. The app factory runs the
# same checks for any other server.
try:
    check_service_settings(Settings.from_env())
except ConfigError as exc:
    sys.exit(f"error: {exc}")

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))  # SIGTERM: finish
keepalive = 5
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = 50 if max_requests else 0
# What gunicorn itself refuses, before the app (answered in the services' JSON error shape,
# see post_worker_init): a request line over 4094 bytes (414), more than 100 headers or a
# header line over 8190 bytes (431). A reverse proxy in front applies its own limits first.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
accesslog = "-"  # stdout
errorlog = "-"
access_log_format = (
    '{"ts":"%(t)s","access":true,"method":"%(m)s","path":"%(U)s","query":"%(q)s",'
    '"status":%(s)s,"bytes":"%(B)s","duration_us":%(D)s,"request_id":"%({x-request-id}o)s",'
    '"remote":"%(h)s","agent":"%(a)s"}'
)


class RedactingLogger(Logger):
    """gunicorn's logger, its access lines without the credentials some URLs carry (a login
    link's token, the OAuth callback's code and state: shared/observability.py)."""

    def atoms(self, resp, req, environ, request_time):
        # Imported here, as the app itself is: only when a request needs it.
        from shared.observability import (
            may_carry_url_secrets,
            redact_query,
            redact_target,
            redact_text,
        )

        atoms = super().atoms(resp, req, environ, request_time)
        path = environ.get("PATH_INFO") or ""
        # Most requests (every webhook) go to neither route: nothing to redact, no cost.
        if not may_carry_url_secrets(path, environ.get("RAW_URI"), environ.get("HTTP_REFERER")):
            return atoms
        for key, value in atoms.items():
            if isinstance(value, str):
                atoms[key] = redact_text(value, path)
            elif value is not None and not isinstance(value, int | float):
                atoms[key] = redact_text(str(value), path)  # e.g. werkzeug's request repr
        atoms["U"] = redact_target(path)
        atoms["q"] = redact_query(path, environ.get("QUERY_STRING"))
        target = redact_target(environ.get("RAW_URI") or "")
        atoms["r"] = f"{environ['REQUEST_METHOD']} {target} {environ['SERVER_PROTOCOL']}"
        atoms["{raw_uri}e"] = target
        atoms["{path_info}e"] = atoms["U"]
        atoms["{query_string}e"] = atoms["q"]
        return atoms


logger_class = RedactingLogger

# gunicorn's own messages as JSON lines too, like the services' logs.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "shared.observability.JsonFormatter", "service": "gunicorn"},
        "access": {"format": "%(message)s"},
    },
    "handlers": {
        "error": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stdout",
        },
        "access": {
            "class": "logging.StreamHandler",
            "formatter": "access",
            "stream": "ext://sys.stdout",
        },
    },
    "root": {"handlers": ["error"], "level": "INFO"},
    "loggers": {
        "gunicorn.error": {"handlers": ["error"], "level": "INFO", "propagate": False},
        "gunicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}


def post_worker_init(worker):
    # gunicorn's own refusals (over the limits above, unparsable requests) in JSON, like the
    # app's errors, instead of its HTML page.
    from shared.web.gunicorn_errors import install

    install(worker.cfg)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _prometheus_dir.startswith(tempfile.gettempdir()) and "devmetrics-prom-" in _prometheus_dir:
        shutil.rmtree(_prometheus_dir, ignore_errors=True)
