"""What other services may use of the activity service's code (in-process): a repository's
GitHub standing and the token its GitHub calls use. Anything else of the activity service
is its own; import-linter (pyproject.toml) refuses an import of it from another service."""

from services.activity.github_access import repository_token, status_of

__all__ = ["repository_token", "status_of"]
