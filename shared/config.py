"""Configuration from the environment, read in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlparse

DEFAULT_DATABASE_URL = "sqlite:///devmetrics.db"

# The four services and their default ports. NAME_PORT (e.g. ACCOUNTS_PORT) moves a service
# on this machine; NAME_URL (e.g. ACCOUNTS_URL) points at it anywhere else (how the services
# and workers reach it). NAME_PUBLIC_URL is where browsers and GitHub reach it, for every URL
# handed out (OAuth callback, webhook URL, sign-in and dashboard links): never the request's
# Host header. It defaults to NAME_URL; for metrics DASHBOARD_URL is the older name.
SERVICES = {
    "accounts": 8001,
    "activity": 8002,
    "metrics": 8003,
    "notifications": 8004,
}
DEVELOPMENT = "development"
# Used only when DEVMETRICS_ENV=development and INTERNAL_API_TOKEN is unset, so a fresh clone
# runs. It is public: every other environment refuses it (require_internal_token).
DEVELOPMENT_INTERNAL_TOKEN = "devmetrics-development-internal-token"
GITHUB_CALLBACK_PATH = "/api/v1/auth/github/callback"


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


def _github_app_private_key(env: dict) -> str:
    """GITHUB_APP_PRIVATE_KEY (the PEM itself), or the file GITHUB_APP_PRIVATE_KEY_FILE names;
    either needs GITHUB_APP_ID."""
    key = env.get("GITHUB_APP_PRIVATE_KEY") or ""
    path = env.get("GITHUB_APP_PRIVATE_KEY_FILE")
    if path and not key:
        try:
            with open(path, encoding="utf-8") as file:
                key = file.read()
        except OSError as exc:
            raise ConfigError(f"GITHUB_APP_PRIVATE_KEY_FILE: cannot read {path}: {exc}") from None
    if key and not (env.get("GITHUB_APP_ID") or "").strip():
        raise ConfigError("GITHUB_APP_PRIVATE_KEY needs GITHUB_APP_ID (the App's id)")
    if key and "PRIVATE KEY-----" not in key:
        raise ConfigError("GITHUB_APP_PRIVATE_KEY must be the App's PEM private key")
    return key.strip()


def _ai_review_provider(env: dict) -> str:
    provider = (env.get("AI_REVIEW_PROVIDER") or "heuristic").strip().lower()
    if provider not in AI_REVIEW_PROVIDERS:
        raise ConfigError(f"AI_REVIEW_PROVIDER must be heuristic or llm, got {provider!r}")
    return provider


def _database_app_role(env: dict, database_url: str) -> str | None:
    """DATABASE_APP_ROLE, or else, when migrations connect as another user
    (MIGRATION_DATABASE_URL), the user the services connect as (DATABASE_URL's)."""
    role = (env.get("DATABASE_APP_ROLE") or "").strip()
    if role:
        return role
    migration_url = env.get("MIGRATION_DATABASE_URL")
    if not migration_url:
        return None
    app_user, owner_user = urlparse(database_url).username, urlparse(migration_url).username
    return app_user if app_user and app_user != owner_user else None


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    # PostgreSQL in production: the services connect as an application role (DATABASE_URL)
    # and the `devmetrics db` commands that change the schema or privileges as the owner of
    # the tables (MIGRATION_DATABASE_URL); `db migrate` then grants DATABASE_APP_ROLE what
    # the services need (shared/roles.py). None: DATABASE_URL for both, and no grants.
    migration_database_url: str | None = None
    database_app_role: str | None = None
    database_pool_min: int = 1
    database_pool_max: int = 10
    environment: str = DEVELOPMENT
    encryption_keys: tuple[str, ...] = ()
    key_file: str | None = None  # development only: where a generated key is kept
    internal_api_token: str | None = DEVELOPMENT_INTERNAL_TOKEN
    service_urls: dict = field(default_factory=dict)
    public_urls: dict = field(default_factory=dict)  # only the NAME_PUBLIC_URLs that are set
    introspection_cache_seconds: float = 5.0
    log_level: str = "INFO"
    github_url: str = "https://github.com"
    github_api_url: str = "https://api.github.com"
    github_client_id: str = ""
    github_client_secret: str = ""
    github_redirect_uri: str | None = None
    github_timeout_seconds: float = 10.0
    # A GitHub App (optional): its id and PEM private key; with them, a repository's GitHub
    # calls use the App's installation token where the App is installed on it.
    github_app_id: str = ""
    github_app_private_key: str = ""
    session_days: int = 14
    invitation_days: int = 7  # how long an invitation to an organization can be accepted
    cookie_secure: bool = False
    # Rate limits (shared/web/limits.py), in the `limits` notation. Counted per process with
    # the default in-memory storage; `redis://...` shares the counts between workers.
    rate_limit_enabled: bool = True
    rate_limit_api: str = "600 per minute"  # per API key or session on /api/...
    rate_limit_sign_in: str = "30 per minute"  # per client IP on the sign-in routes
    rate_limit_webhook_failures: str = "30 per minute"  # per client IP, bad signatures only
    rate_limit_auth_failures: str = "20 per minute"  # per client IP, refused bearer tokens only
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
    dashboard_url: str = ""  # public_url("metrics"): links to the dashboard in messages
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
    # Retention (devmetrics/retention.py): defaults an organization's settings may override
    # within the same bounds (RETENTION_BOUNDS); metric tables are kept forever.
    retention_events_days: int = 90
    retention_activity_days: int = 365
    retention_audit_days: int = 365
    retention_batch_size: int = 1000

    @property
    def owner_database_url(self) -> str:
        """The connection of migrations and grants: the tables' owner."""
        return self.migration_database_url or self.database_url

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def is_development(self) -> bool:
        """Only development runs on defaults for secrets (a public internal token, a
        generated key file); every other environment (staging, ...) is held to production's
        rules for them."""
        return self.environment == DEVELOPMENT

    def require_internal_token(self) -> str:
        token = self.internal_api_token
        if not token:
            raise ConfigError(
                f"INTERNAL_API_TOKEN must be set when DEVMETRICS_ENV={self.environment} "
                "(only development has a default)"
            )
        if token == DEVELOPMENT_INTERNAL_TOKEN and not self.is_development:
            raise ConfigError(
                "INTERNAL_API_TOKEN is the public development token: set a secret of your own "
                f"when DEVMETRICS_ENV={self.environment}"
            )
        return token

    def public_url(self, service: str) -> str:
        """The base URL browsers and GitHub use for `service` (configured, never a Host)."""
        return self.public_urls.get(service) or self.service_urls[service]

    @property
    def github_callback_url(self) -> str:
        """The OAuth `redirect_uri`: GITHUB_REDIRECT_URI, else the accounts public URL's."""
        return self.github_redirect_uri or self.public_url("accounts") + GITHUB_CALLBACK_PATH

    def require_github_callback_url(self) -> None:
        """Production with GitHub sign-in names its callback: the internal ACCOUNTS_URL (or a
        port on this machine) is rarely what GitHub can send browsers back to."""
        configured = self.github_redirect_uri or self.public_urls.get("accounts")
        if self.is_production and self.github_client_id and not configured:
            raise ConfigError(
                "GITHUB_REDIRECT_URI (or ACCOUNTS_PUBLIC_URL) must be set when "
                "DEVMETRICS_ENV=production and GitHub sign-in is configured (GITHUB_CLIENT_ID)"
            )

    @classmethod
    def from_env(cls, env: dict | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        pool_min = _int_env(env, "DATABASE_POOL_MIN", 1)
        pool_max = _int_env(env, "DATABASE_POOL_MAX", 10, minimum=1)
        if pool_min > pool_max:
            raise ConfigError(
                f"DATABASE_POOL_MIN ({pool_min}) must not exceed DATABASE_POOL_MAX ({pool_max})"
            )
        environment = (env.get("DEVMETRICS_ENV") or DEVELOPMENT).strip().lower()
        # Checked by require_internal_token() where it is used (services, workers), so
        # database commands still run without it.
        token = env.get("INTERNAL_API_TOKEN") or (
            DEVELOPMENT_INTERNAL_TOKEN if environment == DEVELOPMENT else None
        )
        service_urls = {
            name: (
                env.get(f"{name.upper()}_URL")
                or f"http://127.0.0.1:{env.get(f'{name.upper()}_PORT') or port}"
            ).rstrip("/")
            for name, port in SERVICES.items()
        }
        public_urls = {
            name: url.rstrip("/")
            for name in SERVICES
            if (
                url := env.get(f"{name.upper()}_PUBLIC_URL")
                or (env.get("DASHBOARD_URL") if name == "metrics" else None)
            )
        }
        cache_seconds = _float_env(env, "INTROSPECTION_CACHE_SECONDS", 5.0)
        database_url = env.get("DATABASE_URL") or DEFAULT_DATABASE_URL
        return cls(
            database_url=database_url,
            migration_database_url=env.get("MIGRATION_DATABASE_URL") or None,
            database_app_role=_database_app_role(env, database_url),
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
            public_urls=public_urls,
            introspection_cache_seconds=cache_seconds,
            log_level=(env.get("LOG_LEVEL") or "INFO").upper(),
            github_url=(env.get("GITHUB_URL") or "https://github.com").rstrip("/"),
            github_api_url=(env.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/"),
            github_client_id=env.get("GITHUB_CLIENT_ID") or "",
            github_client_secret=env.get("GITHUB_CLIENT_SECRET") or "",
            github_redirect_uri=env.get("GITHUB_REDIRECT_URI") or None,
            github_timeout_seconds=_float_env(env, "GITHUB_TIMEOUT_SECONDS", 10.0),
            github_app_id=(env.get("GITHUB_APP_ID") or "").strip(),
            github_app_private_key=_github_app_private_key(env),
            session_days=_int_env(env, "SESSION_DAYS", 14, minimum=1),
            invitation_days=_bounded_int_env(env, "INVITATION_DAYS", 7, 1, 90),
            metrics_schedule_seconds=_int_env(env, "METRICS_SCHEDULE_SECONDS", 900, minimum=60),
            ai_review_provider=_ai_review_provider(env),
            ai_review_url=(env.get("AI_REVIEW_URL") or "").rstrip("/"),
            ai_review_model=env.get("AI_REVIEW_MODEL") or "",
            ai_review_api_key=env.get("AI_REVIEW_API_KEY") or "",
            ai_review_timeout_seconds=_float_env(env, "AI_REVIEW_TIMEOUT_SECONDS", 30.0),
            ai_review_retries=_int_env(env, "AI_REVIEW_RETRIES", 2),
            dashboard_url=public_urls.get("metrics") or service_urls["metrics"],
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
            cookie_secure=(env.get("COOKIE_SECURE") or str(environment != DEVELOPMENT)).lower()
            in ("1", "true", "yes"),
            rate_limit_enabled=(env.get("RATE_LIMIT_ENABLED") or "true").lower()
            in ("1", "true", "yes"),
            rate_limit_api=_rate_limit_env(env, "RATE_LIMIT_API", "600 per minute"),
            rate_limit_sign_in=_rate_limit_env(env, "RATE_LIMIT_SIGN_IN", "30 per minute"),
            rate_limit_webhook_failures=_rate_limit_env(
                env, "RATE_LIMIT_WEBHOOK_FAILURES", "30 per minute"
            ),
            rate_limit_auth_failures=_rate_limit_env(
                env, "RATE_LIMIT_AUTH_FAILURES", "20 per minute"
            ),
            rate_limit_exports=_rate_limit_env(env, "RATE_LIMIT_EXPORTS", "10 per minute"),
            rate_limit_storage_uri=env.get("RATE_LIMIT_STORAGE_URI") or "memory://",
        )
