"""Domain errors: raised by business logic (no Flask), answered as JSON by every service."""

from __future__ import annotations


class DomainError(Exception):
    status = 400

    def __init__(self, message: str, errors: dict | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class BadRequest(DomainError):
    status = 400


class Unauthorized(DomainError):
    status = 401


class PlanLimitReached(DomainError):
    """The organization's plan does not allow this (402: upgrading would)."""

    status = 402


class Forbidden(DomainError):
    status = 403


class NotFound(DomainError):
    status = 404


class Conflict(DomainError):
    status = 409


class Invalid(DomainError):
    """A well-formed request whose values are wrong; `errors` names the fields."""

    status = 422


class UpstreamError(DomainError):
    """A service outside DevMetrics (GitHub) failed or did not answer."""

    status = 502


class Unavailable(DomainError):
    """Another DevMetrics service (or the database) cannot answer right now."""

    status = 503
