"""A connected repository's GitHub identity and whose GitHub token its calls use.

- Identity: a repository's GitHub id, owner and name come only from GitHub's API answered
  with the connecting person's token (`verify`), never from a webhook body. Until then
  (`verified_at` unset) it accepts no webhooks; a job retries the check while GitHub is
  unavailable.
- Token: every GitHub call for a repository (metadata, backfill, truncated pushes, pull
  request files for the AI review) uses the token of its token owner: the person who
  connected it, or who verified it later with their own token (`Repository.connected_by`),
  and only while that person is a member of the repository's organization and GitHub
  accepts their token (with a GitHub App configured and installed on the repository, the
  App's installation token, under the same condition). Nobody else's token is ever used in
  their place: without a usable owner token the calls stop, and the repository's status
  says "needs_owner_token".
"""

from __future__ import annotations

from dataclasses import dataclass

import peewee as pw

from shared import audit, crypto, jobs
from shared.database import db
from shared.errors import BadRequest, Conflict, NotFound
from shared.github import GitHubApp, GitHubRest
from shared.models import Repository, User, UserOrganization, utcnow

VERIFIED = "verified"
PENDING = "pending_verification"
NEEDS_OWNER_TOKEN = "needs_owner_token"
VERIFY_MAX_ATTEMPTS = 20  # with the queue's backoff (capped at 15 min): about 4 hours
QUEUE = "backfill"  # the backfill worker runs the verification retries too


@dataclass(frozen=True)
class Status:
    state: str  # VERIFIED, PENDING or NEEDS_OWNER_TOKEN
    detail: str | None


def with_token_owner(query):
    """`query` over Repository, each row also saying whether its token owner is still a
    member of the repository's organization with a GitHub token (read by `status_of`)."""
    membership = UserOrganization.alias("owner_membership")
    owner = User.alias("token_owner")
    return (
        query.select_extend(
            membership.id.alias("owner_membership_id"),
            owner.oauth_token_encrypted.is_null(False).alias("owner_has_token"),
        )
        .join_from(
            Repository,
            membership,
            pw.JOIN.LEFT_OUTER,
            on=(
                (membership.user == Repository.connected_by)
                & (membership.organization == Repository.organization)
            ),
        )
        .join_from(membership, owner, pw.JOIN.LEFT_OUTER, on=(owner.id == membership.user))
    )


def _owner_problem(repo: Repository, is_member: bool, has_token: bool) -> str | None:
    if repo.connected_by_id is None:
        return (
            "no token owner: it was connected without a person's GitHub token (an "
            "organization key, or before token owners were recorded); an ADMIN who can read "
            "it on GitHub verifies it with their own sign-in (POST .../verify)"
        )
    if not is_member:
        return (
            "needs a new owner token: the person who connected it is no longer a member of "
            "the organization; an ADMIN who can read it on GitHub verifies it with their own "
            "sign-in (POST .../verify)"
        )
    if not has_token:
        return (
            "needs a new owner token: its token owner has no GitHub token (signed in without "
            "GitHub); they or another ADMIN sign in with GitHub and verify it (POST .../verify)"
        )
    return repo.github_problem


def status_of(repo: Repository) -> Status:
    """The repository's GitHub status, from a row of `with_token_owner` (else looked up)."""
    if hasattr(repo, "owner_membership_id"):
        is_member = repo.owner_membership_id is not None
        has_token = bool(repo.owner_has_token)
    else:
        owner = _owner(repo)
        is_member, has_token = owner is not None, bool(owner and owner.oauth_token_encrypted)
    problem = _owner_problem(repo, is_member, has_token)
    if problem:
        return Status(NEEDS_OWNER_TOKEN, problem)
    if repo.verified_at is None:
        return Status(
            PENDING,
            "GitHub has not confirmed this repository yet (it was unavailable when it was "
            "connected); webhooks are refused until it does, and the check is retried in the "
            "background",
        )
    return Status(VERIFIED, None)


def _owner(repo: Repository) -> User | None:
    """The token owner while they are a member of the repository's organization."""
    if repo.connected_by_id is None:
        return None
    return (
        User.select()
        .join(UserOrganization)
        .where(
            (User.id == repo.connected_by_id)
            & (UserOrganization.organization == repo.organization_id)
        )
        .first()
    )


@dataclass(frozen=True)
class Credential:
    token: str
    owners: bool  # the token owner's own token (a refusal then stops the repository's calls)


def _owner_token(repo: Repository) -> str | None:
    """The token owner's own GitHub token while they stand, else None."""
    owner = _owner(repo)
    if owner is None or not owner.oauth_token_encrypted or repo.github_problem:
        return None
    return crypto.decrypt(owner.oauth_token_encrypted)


def repository_credential(repo: Repository) -> Credential | None:
    """What the repository's GitHub calls authenticate with, or None when it needs a new
    owner token (`status_of` says why); never another member's token. While the token owner
    stands: the GitHub App's installation token where an App is configured and installed
    on the repository (the App's own rate limit and permissions), else the owner's token.
    The owner's standing gates the App's token too: a person's consent is what lets an
    organization read a repository; the App is only the credential."""
    token = _owner_token(repo)
    if token is None:
        return None
    installation = GitHubApp().installation_token(repo.full_name)
    if installation is not None:
        return Credential(installation, owners=False)
    return Credential(token, owners=True)


def repository_token(repo: Repository) -> str | None:
    credential = repository_credential(repo)
    return credential.token if credential else None


def person_token(user_id: int | None) -> str | None:
    user = User.get_or_none(User.id == user_id) if user_id is not None else None
    if user is None or not user.oauth_token_encrypted:
        return None
    return crypto.decrypt(user.oauth_token_encrypted)


def github_identity(full_name: str, token: str, *, background: bool = False) -> dict:
    """What GitHub says `full_name` is, asked with `token`: the columns a verified
    repository takes. NotFound when that token cannot read it; UpstreamError (502) when
    GitHub is unavailable. On a request's path it waits little (one retry, no long rate
    limit wait); the background retry waits as a backfill does."""
    client = (
        GitHubRest(token, max_wait_seconds=60)
        if background
        else GitHubRest(token, max_wait_seconds=5, attempts=2)
    )
    try:
        data = client.get(f"/repos/{full_name}").data
    except BadRequest as exc:  # 404, or a token GitHub refuses (401/403)
        raise NotFound(
            f"GitHub has no repository {full_name} that your GitHub token can read ({exc.message})"
        ) from None
    # GitHub lists the token's permissions on the repository; reading it is what we need.
    permissions = data.get("permissions")
    if not (any(permissions.values()) if permissions else not data.get("private")):
        raise NotFound(f"GitHub has no repository {full_name} that your GitHub token can read")
    return {
        "github_id": data["id"],
        "full_name": data.get("full_name") or full_name,
        "default_branch": data.get("default_branch") or "main",
        "language": data.get("language"),
        "private": bool(data.get("private")),
    }


def check_identity_free(organization_id: int, github_id: int, repo_id: int | None) -> None:
    """One organization connects a GitHub repository once (under any of its names)."""
    taken = Repository.get_or_none(
        (Repository.organization == organization_id) & (Repository.github_id == github_id)
    )
    if taken is not None and taken.id != repo_id:
        raise Conflict(f"this GitHub repository is already connected here as {taken.full_name}")


def apply_identity(repo: Repository, identity: dict, owner_id: int | None) -> None:
    """Record a verified identity (and its token owner) on the row; the caller saves."""
    if repo.github_id is not None and repo.github_id != identity["github_id"]:
        raise Conflict(
            f"{repo.full_name} now names a different GitHub repository (id "
            f"{identity['github_id']}, not {repo.github_id}); connect it as a new repository"
        )
    for name, value in identity.items():
        setattr(repo, name, value)
    repo.verified_at = utcnow()
    repo.github_problem = None
    if owner_id is not None:
        repo.connected_by = owner_id


def _record_verified(repo: Repository, identity: dict, owner_id: int | None) -> None:
    """Store a verified identity (and its token owner) on the repository, audited. Conflict
    when the organization has that GitHub repository under another name already."""
    with db.atomic():
        check_identity_free(repo.organization_id, identity["github_id"], repo.id)
        apply_identity(repo, identity, owner_id)
        repo.save()
        audit.record(
            "repository.verified",
            organization=repo.organization_id,
            target_type="repository",
            target_id=repo.id,
            metadata={"github_id": repo.github_id, "token_owner": repo.connected_by_id},
        )


def verify_with(repo: Repository, user_id: int) -> Repository:
    """Verify the repository now with this person's own GitHub token, and make them its
    token owner (an ADMIN taking over a repository that needs a new owner token)."""
    token = person_token(user_id)
    if token is None:
        raise BadRequest(
            "you have no GitHub token: sign in with GitHub to verify a repository with yours"
        )
    _record_verified(repo, github_identity(repo.full_name, token), user_id)
    return repo


def queue_verification(repo: Repository) -> None:
    """Retry the GitHub check in the background (the backfill worker), with backoff."""
    jobs.enqueue(
        QUEUE,
        {"kind": "verify", "repository_id": repo.id},
        dedupe_key=f"verify:{repo.id}",
        organization=repo.organization_id,
        max_attempts=VERIFY_MAX_ATTEMPTS,
    )


def run_verification(repo: Repository) -> None:
    """The background retry: verify with the token owner's own token (what proves they can
    read it). GitHub unavailable raises (the job is retried with backoff); a token that
    cannot read it stops for good, recorded on the repository."""
    if repo.verified_at is not None or not repo.is_active:
        return
    token = _owner_token(repo)
    if token is None:
        return  # nobody's token to ask with: the status says so; an ADMIN verifies it
    try:
        _record_verified(repo, github_identity(repo.full_name, token, background=True), None)
    except NotFound as exc:
        record_token_refused(repo, exc.message)
    except Conflict as exc:
        Repository.update(github_problem=exc.message).where(Repository.id == repo.id).execute()


def record_token_refused(repo: Repository, reason: str) -> None:
    """GitHub refused the owner's token for this repository: its calls stop until an ADMIN
    verifies it with a token that can read it."""
    problem = f"needs a new owner token: {reason}"
    with db.atomic():
        Repository.update(github_problem=problem[:1000]).where(Repository.id == repo.id).execute()
    repo.github_problem = problem
