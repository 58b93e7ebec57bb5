"""Activity business logic (no Flask here)."""

from shared.models import Repository, Sensitivity


def visible_repositories(organization, *, can_see_restricted: bool):
    """The organization's repositories; RESTRICTED ones only for ADMIN+ callers."""
    query = Repository.select().where(Repository.organization == organization)
    if not can_see_restricted:
        query = query.where(Repository.sensitivity != Sensitivity.RESTRICTED)
    return query.order_by(Repository.full_name)
