"""Which repositories' activity a caller's figures may come from (no Flask here).

RESTRICTED repositories and their activity are for ADMIN+ only, and every figure of the
metrics API follows that rule, org-wide ones included: a caller below ADMIN gets the
figures of the organization's other repositories, recomputed from their activity, never
totals that also count the RESTRICTED ones (subtracting the visible repositories' rows
from such totals would give them away). `repository=<id>` narrows to one repository, a 404
when it is unknown or RESTRICTED for the caller.

The stored org-wide rows (team_metrics, developer_metrics) cannot be split by repository,
so they answer only for a scope that is the whole organization: an ADMIN+, or anyone in an
organization without RESTRICTED repositories.
"""

from __future__ import annotations

from dataclasses import dataclass

from peewee import fn

from shared.errors import NotFound
from shared.models import (
    Commit,
    DeveloperMetric,
    Issue,
    IssueClosure,
    Organization,
    PullRequest,
    Repository,
    Review,
    Sensitivity,
    User,
    UserOrganization,
)


@dataclass(frozen=True)
class Scope:
    """The organization's repositories, or one of them (`repository`), less the `hidden`
    ones (the RESTRICTED ones, for a caller below ADMIN)."""

    organization: Organization
    repository: Repository | None = None
    hidden: tuple[int, ...] = ()

    @classmethod
    def of(cls, scope_or_organization) -> Scope:
        """A Scope as is; an Organization as the whole of it (every repository, RESTRICTED
        ones included: what an internal reader such as the notification digests gets)."""
        if isinstance(scope_or_organization, Scope):
            return scope_or_organization
        return cls(scope_or_organization)

    @property
    def whole_organization(self) -> bool:
        """Every repository: the stored org-wide rows are exactly this scope's figures."""
        return self.repository is None and not self.hidden

    def where(self, query, repository_column):
        """`query` narrowed to the rows whose repository (`repository_column`) is in scope."""
        if self.repository is not None:
            return query.where(repository_column == self.repository.id)
        if self.hidden:
            return query.where(repository_column.not_in(self.hidden))
        return query


def visible_repository(organization, repo_id: int, *, can_see_restricted: bool) -> Repository:
    query = Repository.select().where(
        (Repository.organization == organization) & (Repository.id == repo_id)
    )
    if not can_see_restricted:
        query = query.where(Repository.sensitivity != Sensitivity.RESTRICTED)
    repo = query.first()
    if repo is None:
        raise NotFound("repository not found", {"repository": ["no such repository"]})
    return repo


def scope_for(organization, repository_id: int | None = None, *, can_see_restricted: bool):
    """The caller's scope: one repository (404 when unknown, or RESTRICTED for a caller
    below ADMIN), else the organization less what the caller may not see."""
    if repository_id is not None:
        repository = visible_repository(
            organization, repository_id, can_see_restricted=can_see_restricted
        )
        return Scope(organization, repository)
    if can_see_restricted:
        return Scope(organization)
    hidden = (
        Repository.select(Repository.id)
        .where(
            (Repository.organization == organization)
            & (Repository.sensitivity == Sensitivity.RESTRICTED)
        )
        .order_by(Repository.id)
        .tuples()
    )
    return Scope(organization, hidden=tuple(repo_id for (repo_id,) in hidden))


def developer_in(scope: Scope, ref: str) -> User:
    """A developer of the organization by id or GitHub login: a member, or someone with
    activity in it that the caller may see (for a caller who sees everything: someone with
    daily metrics in it). Someone known only from RESTRICTED repositories is not found."""
    candidates = User.select()
    if ref.isascii() and ref.isdigit():
        candidates = candidates.where(User.id == int(ref) if len(ref) < 19 else False)
    else:
        candidates = candidates.where(fn.LOWER(User.login) == ref.lower())
    for user in candidates.order_by(User.id):
        if _is_developer(scope, user):
            return user
    raise NotFound("user not found", {"user": ["no such developer in this organization"]})


def _is_developer(scope: Scope, user: User) -> bool:
    organization = scope.organization
    member = UserOrganization.select().where(
        (UserOrganization.organization == organization) & (UserOrganization.user == user)
    )
    if member.exists():
        return True
    if not scope.hidden:
        return (
            DeveloperMetric.select()
            .where((DeveloperMetric.organization == organization) & (DeveloperMetric.user == user))
            .exists()
        )
    visible = Scope(organization, hidden=scope.hidden)  # whatever repository was asked for
    reviewed = PullRequest.alias("reviewed")
    activity = [
        (Commit.select().where(Commit.author == user), Commit),
        (PullRequest.select().where(PullRequest.author == user), PullRequest),
        (Issue.select().where(Issue.author == user), Issue),
        (IssueClosure.select().where(IssueClosure.closer == user), IssueClosure),
    ]
    queries = [
        visible.where(query.where(model.organization == organization), model.repository)
        for query, model in activity
    ]
    queries.append(
        visible.where(
            Review.select()
            .join(reviewed, on=(Review.pull_request == reviewed.id))
            .where((Review.organization == organization) & (Review.reviewer == user)),
            reviewed.repository,
        )
    )
    return any(query.exists() for query in queries)
