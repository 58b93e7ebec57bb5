"""Configuration from the environment, read in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_DATABASE_URL = "sqlite:///devmetrics.db"

# The four services and their default ports. NAME_PORT (e.g. ACCOUNTS_PORT) moves a service
# on this machine; NAME_URL (e.g. ACCOUNTS_URL) points at it anywhere else.
SERVICES = {
    "accounts": 8001,
    "activity": 8002,
    "metrics": 8003,
    "notifications": 8004,
}
# Used only outside production when INTERNAL_API_TOKEN is unset, so a fresh clone runs.
DEVELOPMENT_INTERNAL_TOKEN = "devmetrics-development-internal-token"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names it."""


def _int_env(env: dict, name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _bounded_int_env(env: dict, name: str, default: int, minimum: int, maximum: int) -> int:
    value = _int_env(env, name, default, minimum=minimum)
    if value > maximum:
        raise ConfigError(f"{name} must be <= {maximum}, got {value}")
    return value


def _float_env(env: dict, name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


AI_REVIEW_PROVIDERS = ("heuristic", "llm")

# Retention periods in days (minimum, maximum), for env settings and organization settings
# alike (services/accounts/schemas.py OrgSettingsSchema validates the same ranges).
RETENTION_BOUNDS = {
    "events": (7, 3650),
    "activity": (365, 3650),
    "audit": (365, 2557),
}


def _rate_limit_env(env: dict, name: str, default: str) -> str:
    """A rate limit such as `600 per minute` or `10/second;100/hour` (the `limits` notation)."""
    from limits import parse_many

    value = (env.get(name) or default).strip()
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(
            f"{name} must be a rate such as '600 per minute', got {value!r}"
        ) from None
    return value


def _ai_review_provider(env: dict) -> str:
    provider = (env.get("AI_REVIEW_PROVIDER") or "heuristic").strip().lower()
    if provider not in AI_REVIEW_PROVIDERS:
        raise ConfigError(f"AI_REVIEW_PROVIDER must be heuristic or llm, got {provider!r}")
    return provider


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    database_pool_min: int = 1
    database_pool_max: int = 10
    environment: str = "development"
    encryption_keys: tuple[str, ...] = ()
    key_file: str | None = None  # development only: where a generated key is kept
    internal_api_token: str | None = DEVELOPMENT_INTERNAL_TOKEN
    service_urls: dict = field(default_factory=dict)
    introspection_cache_seconds: float = 5.0
    log_level: str = "INFO"
    github_url: str = "https://github.com"
    github_api_url: str = "https://api.github.com"
    github_client_id: str = ""
    github_client_secret: str = ""
    github_redirect_uri: str | None = None
    github_timeout_seconds: float = 10.0
    session_days: int = 14
    cookie_secure: bool = False
    # Rate limits (shared/web/limits.py), in the `limits` notation. Counted per process with
    # the default in-memory storage; `redis://...` shares the counts between workers.
    rate_limit_enabled: bool = True
    rate_limit_api: str = "600 per minute"  # per API key or session on /api/...
    rate_limit_sign_in: str = "30 per minute"  # per client IP on the sign-in routes
    rate_limit_webhook_failures: str = "30 per minute"  # per client IP, bad signatures only
    rate_limit_exports: str = "10 per minute"  # per API key or session, CSV exports
    rate_limit_storage_uri: str = "memory://"
    metrics_schedule_seconds: int = 900  # the recompute of today and yesterday
    # AI review of pull requests: "heuristic" (offline) or "llm" (an OpenAI-compatible API).
    ai_review_provider: str = "heuristic"
    ai_review_url: str = ""
    ai_review_model: str = ""
    ai_review_api_key: str = ""
    ai_review_timeout_seconds: float = 30.0
    ai_review_retries: int = 2
    # Notification delivery (services/notifications/delivery.py).
    dashboard_url: str = ""  # public base URL of the dashboard, for links in messages
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "devmetrics@localhost"
    notifications_allow_private_targets: bool = False  # http and private addresses: dev/tests
    notifications_timeout_seconds: float = 10.0
    notifications_max_attempts: int = 8
    notifications_backoff_seconds: float = 30.0  # first retry; doubles per attempt, jittered
    notifications_max_backoff_seconds: float = 3600.0
    notifications_lease_seconds: int = 300
    # Retention (shared/retention.py): defaults an organization's settings may override
    # within the same bounds (RETENTION_BOUNDS); metric tables are kept forever.
    retention_events_days: int = 90
    retention_activity_days: int = 365
    retention_audit_days: int = 365
    retention_batch_size: int = 1000

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def require_internal_token(self) -> str:
        if not self.internal_api_token:
            raise ConfigError("INTERNAL_API_TOKEN must be set when DEVMETRICS_ENV=production")
        return self.internal_api_token

    @classmethod
    def from_env(cls, env: dict | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        pool_min = _int_env(env, "DATABASE_POOL_MIN", 1)
        pool_max = _int_env(env, "DATABASE_POOL_MAX", 10, minimum=1)
        if pool_min > pool_max:
            raise ConfigError(
                f"DATABASE_POOL_MIN ({pool_min}) must not exceed DATABASE_POOL_MAX ({pool_max})"
            )
        environment = (env.get("DEVMETRICS_ENV") or "development").strip().lower()
        # Checked by require_internal_token() where it is used (services, workers), so
        # database commands still run in production without it.
        token = env.get("INTERNAL_API_TOKEN") or (
            None if environment == "production" else DEVELOPMENT_INTERNAL_TOKEN
        )
        service_urls = {
            name: (
                env.get(f"{name.upper()}_URL")
                or f"http://127.0.0.1:{env.get(f'{name.upper()}_PORT') or port}"
            ).rstrip("/")
            for name, port in SERVICES.items()
        }
        cache_seconds = _float_env(env, "INTROSPECTION_CACHE_SECONDS", 5.0)
        return cls(
            database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            database_pool_min=pool_min,
            database_pool_max=pool_max,
            environment=environment,
            encryption_keys=tuple(
                k.strip()
                for k in (env.get("DEVMETRICS_ENCRYPTION_KEYS") or "").split(",")
                if k.strip()
            ),
            key_file=env.get("DEVMETRICS_KEY_FILE") or None,
            internal_api_token=token,
            service_urls=service_urls,
            introspection_cache_seconds=cache_seconds,
            log_level=(env.get("LOG_LEVEL") or "INFO").upper(),
            github_url=(env.get("GITHUB_URL") or "https://github.com").rstrip("/"),
            github_api_url=(env.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/"),
            github_client_id=env.get("GITHUB_CLIENT_ID") or "",
            github_client_secret=env.get("GITHUB_CLIENT_SECRET") or "",
            github_redirect_uri=env.get("GITHUB_REDIRECT_URI") or None,
            github_timeout_seconds=_float_env(env, "GITHUB_TIMEOUT_SECONDS", 10.0),
            session_days=_int_env(env, "SESSION_DAYS", 14, minimum=1),
            metrics_schedule_seconds=_int_env(env, "METRICS_SCHEDULE_SECONDS", 900, minimum=60),
            ai_review_provider=_ai_review_provider(env),
            ai_review_url=(env.get("AI_REVIEW_URL") or "").rstrip("/"),
            ai_review_model=env.get("AI_REVIEW_MODEL") or "",
            ai_review_api_key=env.get("AI_REVIEW_API_KEY") or "",
            ai_review_timeout_seconds=_float_env(env, "AI_REVIEW_TIMEOUT_SECONDS", 30.0),
            ai_review_retries=_int_env(env, "AI_REVIEW_RETRIES", 2),
            dashboard_url=(env.get("DASHBOARD_URL") or service_urls["metrics"]).rstrip("/"),
            smtp_host=env.get("SMTP_HOST") or "",
            smtp_port=_int_env(env, "SMTP_PORT", 587, minimum=1),
            smtp_user=env.get("SMTP_USER") or "",
            smtp_password=env.get("SMTP_PASSWORD") or "",
            smtp_from=env.get("SMTP_FROM") or "devmetrics@localhost",
            notifications_allow_private_targets=(
                env.get("NOTIFICATIONS_ALLOW_PRIVATE_TARGETS") or ""
            ).lower()
            in ("1", "true", "yes"),
            notifications_timeout_seconds=_float_env(env, "NOTIFICATIONS_TIMEOUT_SECONDS", 10.0),
            notifications_max_attempts=_int_env(env, "NOTIFICATIONS_MAX_ATTEMPTS", 8, minimum=1),
            notifications_backoff_seconds=_float_env(env, "NOTIFICATIONS_BACKOFF_SECONDS", 30.0),
            notifications_max_backoff_seconds=_float_env(
                env, "NOTIFICATIONS_MAX_BACKOFF_SECONDS", 3600.0
            ),
            notifications_lease_seconds=_int_env(
                env, "NOTIFICATIONS_LEASE_SECONDS", 300, minimum=1
            ),
            retention_events_days=_bounded_int_env(
                env, "RETENTION_EVENTS_DAYS", 90, *RETENTION_BOUNDS["events"]
            ),
            retention_activity_days=_bounded_int_env(
                env, "RETENTION_ACTIVITY_DAYS", 365, *RETENTION_BOUNDS["activity"]
            ),
            retention_audit_days=_bounded_int_env(
                env, "RETENTION_AUDIT_DAYS", 365, *RETENTION_BOUNDS["audit"]
            ),
            retention_batch_size=_bounded_int_env(env, "RETENTION_BATCH_SIZE", 1000, 1, 100_000),
            # Secure cookies need HTTPS: on by default everywhere but development.
            cookie_secure=(env.get("COOKIE_SECURE") or str(environment != "development")).lower()
            in ("1", "true", "yes"),
            rate_limit_enabled=(env.get("RATE_LIMIT_ENABLED") or "true").lower()
            in ("1", "true", "yes"),
            rate_limit_api=_rate_limit_env(env, "RATE_LIMIT_API", "600 per minute"),
            rate_limit_sign_in=_rate_limit_env(env, "RATE_LIMIT_SIGN_IN", "30 per minute"),
            rate_limit_webhook_failures=_rate_limit_env(
                env, "RATE_LIMIT_WEBHOOK_FAILURES", "30 per minute"
            ),
            rate_limit_exports=_rate_limit_env(env, "RATE_LIMIT_EXPORTS", "10 per minute"),
            rate_limit_storage_uri=env.get("RATE_LIMIT_STORAGE_URI") or "memory://",
        )
