"""Service-to-service HTTP: one client for every call between DevMetrics services.

Timeouts on connect and read, retries with backoff on connection errors and 502/503/504,
the caller's request id propagated, and the internal service token attached.
"""

from __future__ import annotations

import logging
import threading

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from shared.config import Settings
from shared.observability import current_request_id

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 10.0
INTERNAL_PREFIX = "/internal/"


class ServiceUnavailable(RuntimeError):
    """The other service could not be reached or kept failing; one line says which."""


_sessions = threading.local()


def _session() -> requests.Session:
    # One pooled session per thread (requests.Session is not documented as thread-safe).
    session = getattr(_sessions, "session", None)
    if session is None:
        retry = Retry(
            total=3,
            connect=3,
            read=1,
            status=3,
            backoff_factor=0.2,
            status_forcelist=(502, 503, 504),
            allowed_methods=None,  # receivers are idempotent, so POSTs are retried too
            raise_on_status=False,
        )
        session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry, pool_connections=8, pool_maxsize=16)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        _sessions.session = session
    return session


class ServiceClient:
    def __init__(self, service: str, settings: Settings | None = None, base_url: str | None = None):
        settings = settings or Settings.from_env()
        self.service = service
        self.base_url = (base_url or settings.service_urls[service]).rstrip("/")
        self._token = settings.require_internal_token()

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = kwargs.pop("headers", {}) or {}
        headers.setdefault("X-Request-ID", current_request_id())
        if path.startswith(INTERNAL_PREFIX):
            headers.setdefault("Authorization", f"Bearer {self._token}")
        kwargs.setdefault("timeout", (CONNECT_TIMEOUT, READ_TIMEOUT))
        url = self.base_url + path
        try:
            return _session().request(method, url, headers=headers, **kwargs)
        except requests.RequestException as exc:
            raise ServiceUnavailable(f"{self.service} at {self.base_url}: {exc}") from exc

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)
