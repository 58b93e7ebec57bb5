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


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    database_pool_min: int = 1
    database_pool_max: int = 10
    environment: str = "development"
    secret_key: str | None = None
    internal_api_token: str | None = DEVELOPMENT_INTERNAL_TOKEN
    service_urls: dict = field(default_factory=dict)
    introspection_cache_seconds: float = 5.0
    log_level: str = "INFO"

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
        try:
            cache_seconds = float(env.get("INTROSPECTION_CACHE_SECONDS") or 5)
        except ValueError:
            raise ConfigError("INTROSPECTION_CACHE_SECONDS must be a number") from None
        return cls(
            database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            database_pool_min=pool_min,
            database_pool_max=pool_max,
            environment=environment,
            secret_key=env.get("DEVMETRICS_SECRET_KEY") or None,
            internal_api_token=token,
            service_urls=service_urls,
            introspection_cache_seconds=cache_seconds,
            log_level=(env.get("LOG_LEVEL") or "INFO").upper(),
        )
