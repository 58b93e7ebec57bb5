"""Activity business logic: connected repositories and webhook intake (no Flask here)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from urllib.parse import parse_qs

import peewee as pw

from shared import audit, crypto
from shared.database import db
from shared.errors import (
    BadRequest,
    Conflict,
    DomainError,
    NotFound,
    PlanLimitReached,
    Unauthorized,
    Unavailable,
    UpstreamError,
)
from shared.http import ServiceClient, ServiceUnavailable
from shared.models import Event, EventDelivery, EventStatus, Repository, Sensitivity, utcnow

# The X-GitHub-* headers kept with each event (the rest of the request is not needed).
KEPT_HEADERS = (
    "X-GitHub-Event",
    "X-GitHub-Delivery",
    "X-GitHub-Hook-ID",
    "X-GitHub-Hook-Installation-Target-ID",
    "X-GitHub-Hook-Installation-Target-Type",
    "User-Agent",
    "Content-Type",
)


def visible_repositories(organization, *, can_see_restricted: bool):
    """The organization's repositories; RESTRICTED ones only for ADMIN+ callers."""
    query = Repository.select().where(Repository.organization == organization)
    if not can_see_restricted:
        query = query.where(Repository.sensitivity != Sensitivity.RESTRICTED)
    return query.order_by(Repository.full_name)


def get_repository(organization, repo_id: int, *, can_see_restricted: bool) -> Repository:
    repo = (
        visible_repositories(organization, can_see_restricted=can_see_restricted)
        .where(Repository.id == repo_id)
        .first()
    )
    if repo is None:
        raise NotFound("repository not found")
    return repo


def _check_plan_allows_another(organization) -> None:
    """Ask accounts (the owner of plans) whether one more repository fits."""
    try:
        response = ServiceClient("accounts").get(f"/internal/v1/orgs/{organization.id}/limits")
    except ServiceUnavailable as exc:
        raise Unavailable(f"cannot check the plan limit now: {exc}") from exc
    if response.status_code != 200:
        raise Unavailable(f"cannot check the plan limit now (accounts: {response.status_code})")
    info = response.json()
    if not info["can_add"]["repositories"]:
        limit = info["limits"]["repositories"]
        raise PlanLimitReached(
            f"the {info['plan']} plan allows at most {limit} repositories "
            f"({info['usage']['repositories']} connected); upgrade the plan to add more",
            {"limit": {"repositories": limit}},
        )


def connect_repository(organization, full_name: str, sensitivity=Sensitivity.INTERNAL):
    """Connect (or reconnect) `owner/name`; returns (repository, webhook secret shown once).
    Metadata (id, default branch, language, visibility) comes from GitHub when an owner has
    signed in with GitHub, else with the first webhook."""
    existing = Repository.get_or_none(
        (Repository.organization == organization)
        & (pw.fn.LOWER(Repository.full_name) == full_name.lower())
    )
    if existing is not None and existing.is_active:
        raise Conflict(f"{existing.full_name} is already connected")
    _check_plan_allows_another(organization)
    metadata = _github_metadata(organization, full_name, existing)
    secret = secrets.token_hex(32)
    with db.atomic():
        if existing is None:
            repo = Repository.create(
                **metadata,
                organization=organization,
                full_name=full_name,
                sensitivity=sensitivity,
                webhook_secret_encrypted=crypto.encrypt(secret),
            )
        else:
            repo = existing
            repo.is_active, repo.disconnected_at = True, None
            repo.connected_at = utcnow()
            repo.webhook_secret_encrypted = crypto.encrypt(secret)
            for name, value in metadata.items():
                setattr(repo, name, value)
            repo.save()
        audit.record(
            "repository.connected",
            organization=organization,
            target_type="repository",
            target_id=repo.id,
            metadata={"full_name": repo.full_name},
        )
    return repo, secret


def _github_metadata(organization, full_name: str, existing: Repository | None) -> dict:
    """What GitHub says about the repository, when an owner or admin of the organization has
    signed in with GitHub (their token); otherwise it arrives with the first webhook."""
    from services.activity.backfill import org_token
    from shared.github import GitHubRest

    token = org_token(organization.id)
    if token is None:
        return {}
    try:
        data = GitHubRest(token, max_wait_seconds=5).get(f"/repos/{full_name}").data
    except UpstreamError:
        return {}  # GitHub is unwell: the first webhook will tell us instead
    except BadRequest:
        raise NotFound(f"GitHub has no repository {full_name} that your token can see") from None
    taken = Repository.get_or_none(Repository.github_id == data["id"])
    if taken is not None and (existing is None or taken.id != existing.id):
        raise Conflict(f"{data['full_name']} is already connected to an organization")
    return {
        "github_id": data["id"],
        "default_branch": data.get("default_branch") or "main",
        "language": data.get("language"),
        "private": bool(data.get("private")),
    }


def update_sensitivity(repo: Repository, sensitivity) -> Repository:
    with db.atomic():
        old = repo.sensitivity
        repo.sensitivity = sensitivity
        repo.save()
        audit.record(
            "repository.sensitivity_changed",
            organization=repo.organization_id,
            target_type="repository",
            target_id=repo.id,
            metadata={"from": str(old), "to": str(sensitivity)},
        )
    return repo


def update_settings(repo: Repository, settings: dict) -> Repository:
    with db.atomic():
        repo.settings = {**(repo.settings or {}), **settings}
        repo.save()
        audit.record(
            "repository.settings_changed",
            organization=repo.organization_id,
            target_type="repository",
            target_id=repo.id,
            metadata={"changed": sorted(settings)},
        )
    return repo


def rotate_secret(repo: Repository) -> str:
    secret = secrets.token_hex(32)
    with db.atomic():
        repo.webhook_secret_encrypted = crypto.encrypt(secret)
        repo.save()
        audit.record(
            "repository.secret_rotated",
            organization=repo.organization_id,
            target_type="repository",
            target_id=repo.id,
        )
    return secret


def disconnect(repo: Repository) -> Repository:
    """Stop accepting its webhooks; its data stays."""
    with db.atomic():
        repo.is_active, repo.disconnected_at = False, utcnow()
        repo.save()
        audit.record(
            "repository.disconnected",
            organization=repo.organization_id,
            target_type="repository",
            target_id=repo.id,
        )
    return repo


def delete_repository(repo: Repository) -> None:
    """Remove the repository and (by cascade) all its activity."""
    with db.atomic():
        audit.record(
            "repository.deleted",
            organization=repo.organization_id,
            target_type="repository",
            target_id=repo.id,
            metadata={"full_name": repo.full_name},
        )
        repo.delete_instance()


def queue_backfill(repo: Repository, since) -> dict:
    from shared import jobs

    if not repo.is_active:
        raise Conflict(f"{repo.full_name} is disconnected")
    stored = {**(repo.backfill_state or {}), "state": "queued", "error": None}  # ETags kept
    with db.atomic():
        jobs.enqueue(
            "backfill",
            {"repository_id": repo.id, "since": since.isoformat() if since else None},
            dedupe_key=f"repository:{repo.id}",
            organization=repo.organization_id,
            max_attempts=3,
        )
        Repository.update(backfill_state=stored).where(Repository.id == repo.id).execute()
        audit.record(
            "repository.backfill_requested",
            organization=repo.organization_id,
            target_type="repository",
            target_id=repo.id,
            metadata={"since": since.isoformat() if since else None},
        )
    repo.backfill_state = stored
    from services.activity.backfill import progress_of

    return progress_of(repo)


# Webhook intake -----------------------------------------------------------------------


@dataclass
class Delivery:
    status: int
    body: dict


def _signature_ok(raw: bytes, header: str, secrets_: list[str]) -> bool:
    scheme, _, digest = header.partition("=")
    if scheme != "sha256" or not digest:
        return False
    for secret in secrets_:
        expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, digest.strip().lower()):
            return True
    return False


def parse_body(raw: bytes, content_type: str) -> dict:
    """GitHub sends JSON, or a form with the JSON in `payload`."""
    try:
        text = raw.decode("utf-8")
        if content_type.startswith("application/x-www-form-urlencoded"):
            fields = parse_qs(text, strict_parsing=True)
            if "payload" not in fields:
                raise BadRequest(
                    "form-encoded delivery without a payload field", {"payload": ["missing"]}
                )
            text = fields["payload"][0]
        elif not content_type.startswith("application/json"):
            raise BadRequest(
                f"unsupported content type {content_type!r}",
                {"Content-Type": ["application/json or form-encoded"]},
            )
        payload = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, DomainError):
            raise
        raise BadRequest(f"malformed body: {type(exc).__name__}") from None
    if not isinstance(payload, dict):
        raise BadRequest("the payload must be a JSON object")
    return _without_nul(payload)


def _without_nul(value):
    """PostgreSQL cannot store U+0000 in text or JSONB: keep the data, mark the character."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _repository_for(payload: dict) -> Repository | None:
    data = payload.get("repository")
    if not isinstance(data, dict):
        return None
    github_id, full_name = data.get("id"), data.get("full_name")
    if isinstance(github_id, int) and not isinstance(github_id, bool) and 0 < github_id < 2**63:
        repo = Repository.get_or_none(Repository.github_id == github_id)
        if repo is not None:
            return repo
    if isinstance(full_name, str):
        # Connected by name before GitHub told us its id.
        return Repository.get_or_none(
            (pw.fn.LOWER(Repository.full_name) == full_name.lower())
            & Repository.github_id.is_null()
        )
    return None


def receive_webhook(raw: bytes, headers) -> Delivery:
    """Authenticate, parse and durably store one delivery; processing happens later."""
    event_type = headers.get("X-GitHub-Event")
    delivery_id = headers.get("X-GitHub-Delivery")
    signature = headers.get("X-Hub-Signature-256")
    if not signature:
        raise Unauthorized("missing X-Hub-Signature-256 (SHA-1 signatures alone are refused)")
    if not event_type or not delivery_id or len(delivery_id) > 128 or len(event_type) > 64:
        raise BadRequest(
            "missing or malformed X-GitHub-Event / X-GitHub-Delivery",
            {"headers": ["X-GitHub-Event and X-GitHub-Delivery are required"]},
        )
    payload = parse_body(raw, headers.get("Content-Type", ""))
    repo = _repository_for(payload)
    if repo is None or not repo.is_active:
        raise NotFound("unknown or disconnected repository")
    candidates = (
        [crypto.decrypt(repo.webhook_secret_encrypted)] if repo.webhook_secret_encrypted else []
    )
    if os.environ.get("GITHUB_WEBHOOK_SECRET"):
        candidates.append(os.environ["GITHUB_WEBHOOK_SECRET"])
    if not _signature_ok(raw, signature, candidates):
        raise Unauthorized("signature does not match this repository's webhook secret")
    if event_type == "ping":
        return Delivery(200, {"status": "pong", "zen": payload.get("zen")})
    hook_id = (headers.get("X-GitHub-Hook-ID") or "")[:32]
    kept = {name: headers.get(name) for name in KEPT_HEADERS if headers.get(name)}
    action = payload.get("action") if isinstance(payload.get("action"), str) else None
    try:
        with db.atomic():
            _learn_metadata(repo, payload["repository"])
            event = Event.create(
                source="github",
                hook_id=hook_id,
                delivery_id=delivery_id,
                event_type=event_type,
                action=(action or None) and action[:64],
                repository=repo,
                organization=repo.organization_id,
                headers=kept,
                payload=payload,
                status=EventStatus.PENDING,
            )
            # Unique across every partition of events: a redelivery fails here.
            EventDelivery.create(
                source=event.source,
                hook_id=hook_id,
                delivery_id=delivery_id,
                event_id=event.id,
                received_at=event.received_at,
            )
    except pw.IntegrityError:
        return Delivery(200, {"status": "duplicate", "delivery": delivery_id})
    return Delivery(202, {"status": "accepted", "id": event.id, "delivery": delivery_id})


def _learn_metadata(repo: Repository, data: dict) -> None:
    """The first webhook tells us what connecting by name could not."""
    if repo.github_id is not None:
        return
    repo.github_id = data.get("id")
    repo.full_name = data.get("full_name") or repo.full_name
    repo.default_branch = data.get("default_branch") or repo.default_branch
    repo.language = data.get("language")
    repo.private = bool(data.get("private"))
    repo.save()


# Read API -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    model: type
    date_field: str  # what `from`/`to` filter on; also the default sort (newest first)
    filters: dict  # query parameter -> column
    sortable: tuple


def _listings():
    from shared.models import Commit, Deployment, Incident, Issue, PullRequest, Review

    return {
        "commits": Listing(
            Commit,
            "authored_at",
            {"author": Commit.author_login, "branch": Commit.branch},
            ("authored_at", "committed_at", "additions", "deletions"),
        ),
        "pull-requests": Listing(
            PullRequest,
            "created_at",
            {"author": PullRequest.author_login, "state": PullRequest.state},
            ("created_at", "merged_at", "closed_at", "updated_at", "number"),
        ),
        "reviews": Listing(
            Review,
            "submitted_at",
            {"author": Review.reviewer_login, "state": Review.state, "kind": Review.kind},
            ("submitted_at",),
        ),
        "issues": Listing(
            Issue,
            "created_at",
            {"author": Issue.author_login, "state": Issue.state},
            ("created_at", "closed_at", "number"),
        ),
        "deployments": Listing(
            Deployment,
            "created_at",
            {"environment": Deployment.environment, "state": Deployment.state},
            ("created_at", "finished_at"),
        ),
        "incidents": Listing(
            Incident, "opened_at", {"kind": Incident.kind}, ("opened_at", "resolved_at")
        ),
        "events": Listing(
            Event,
            "received_at",
            {"event_type": Event.event_type, "status": Event.status},
            ("received_at",),
        ),
    }


def activity_listing(kind: str, organization, args: dict, *, can_see_restricted: bool):
    """One list endpoint's query: the org's rows (RESTRICTED repositories only for ADMIN+),
    filtered, sorted, ready to paginate. Filters that do not apply are a 422 naming them."""
    from shared.errors import Invalid
    from shared.models import PullRequest, Review

    listing = _listings()[kind]
    model = listing.model
    unknown = sorted(
        k
        for k in args
        if k not in listing.filters and k not in ("repository", "start", "end", "sort")
    )
    if unknown:
        raise Invalid(
            f"{', '.join(unknown)} cannot filter {kind}",
            {"query": {name: [f"not a filter of {kind}"] for name in unknown}},
        )
    query = model.select().where(model.organization == organization)
    repo_column = PullRequest.repository if model is Review else model.repository
    if model is Review:
        query = query.join(PullRequest).where(Review.deleted_at.is_null())  # no tombstones
    query = query.join(Repository, on=(repo_column == Repository.id))
    if not can_see_restricted:
        query = query.where(Repository.sensitivity != Sensitivity.RESTRICTED)
    if args.get("repository") is not None:
        query = query.where(Repository.id == args["repository"])
    for name, column in listing.filters.items():
        if args.get(name) is not None:
            query = query.where(column == args[name])
    date_column = getattr(model, listing.date_field)
    if args.get("start"):
        query = query.where(date_column >= args["start"])
    if args.get("end"):
        query = query.where(date_column <= args["end"])
    sort = args.get("sort") or f"-{listing.date_field}"
    field_name = sort.lstrip("-")
    if field_name not in listing.sortable:
        raise Invalid(
            f"cannot sort {kind} by {field_name!r}",
            {
                "query": {
                    "sort": [f"one of {', '.join(listing.sortable)}, optionally prefixed with -"]
                }
            },
        )
    column = getattr(model, field_name)
    order = column.desc(nulls="LAST") if sort.startswith("-") else column.asc(nulls="LAST")
    return query.order_by(order, model.id.desc())
