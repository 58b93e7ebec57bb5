"""What a DevMetrics process refuses to start without. Each check raises ConfigError with one
line naming the setting; the app factory, gunicorn's master (gunicorn.conf.py, before any
worker boots) and `devmetrics worker` run them."""

from __future__ import annotations

from shared import crypto
from shared.config import Settings


def check_worker_settings(settings: Settings) -> None:
    """A worker calls services (internal token) and reads stored secrets (encryption keys)."""
    settings.require_internal_token()
    crypto.check_keys(settings)


def check_service_settings(settings: Settings) -> None:
    """A web service needs what a worker needs, and hands out its OAuth callback URL."""
    check_worker_settings(settings)
    settings.require_github_callback_url()
