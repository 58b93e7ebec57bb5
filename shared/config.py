"""Configuration from the environment, read in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_DATABASE_URL = "sqlite:///devmetrics.db"


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
    extra: dict = field(default_factory=dict)

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @classmethod
    def from_env(cls, env: dict | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        pool_min = _int_env(env, "DATABASE_POOL_MIN", 1)
        pool_max = _int_env(env, "DATABASE_POOL_MAX", 10, minimum=1)
        if pool_min > pool_max:
            raise ConfigError(
                f"DATABASE_POOL_MIN ({pool_min}) must not exceed DATABASE_POOL_MAX ({pool_max})"
            )
        return cls(
            database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            database_pool_min=pool_min,
            database_pool_max=pool_max,
            environment=(env.get("DEVMETRICS_ENV") or "development").strip().lower(),
            secret_key=env.get("DEVMETRICS_SECRET_KEY") or None,
        )
