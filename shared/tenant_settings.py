"""The `settings` of an organization or a repository (JSON columns): the keys the product
reads, their defaults, and how each is read, in one place for every service. Their values
are validated where they are written (services/accounts/schemas.py for an organization's,
services/activity/schemas.py for a repository's)."""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_PRODUCTION_ENVIRONMENTS = ("production", "prod")
DEFAULT_INCIDENT_LABEL = "incident"
DEFAULT_TIMEZONE = "UTC"
DEFAULT_DIGEST_HOUR = 9
DEFAULT_DEPLOYMENT_SOURCE = "deployments"


def settings_of(owner) -> Mapping:
    """The settings themselves, of a row (an Organization, a Repository) or as given."""
    if owner is None:
        return {}
    if isinstance(owner, Mapping):
        return owner
    return owner.settings or {}


def production_environments(organization) -> list[str]:
    """The environment names whose deployments are production ones (lowercase: names are
    compared case-insensitively)."""
    wanted = settings_of(organization).get("production_environments")
    return sorted({e.lower() for e in (wanted or DEFAULT_PRODUCTION_ENVIRONMENTS)})


def is_production(organization, environment: str) -> bool:
    return environment.lower() in production_environments(organization)


def deployment_source(repository) -> tuple[str, str | None]:
    """What a repository's production deployments are: ("deployments" | "merges" |
    "workflow", the workflow's name or file for "workflow")."""
    source = settings_of(repository).get("deployment_source") or DEFAULT_DEPLOYMENT_SOURCE
    if source.startswith("workflow:"):
        return "workflow", source.removeprefix("workflow:")
    return ("merges" if source == "merges" else "deployments"), None


def incident_label(organization) -> str:
    """The issue label that makes an issue an incident."""
    return settings_of(organization).get("incident_label") or DEFAULT_INCIDENT_LABEL


def timezone_name(organization) -> str:
    return settings_of(organization).get("timezone") or DEFAULT_TIMEZONE


def digest_hour(organization) -> int:
    return settings_of(organization).get("digest_hour", DEFAULT_DIGEST_HOUR)
