"""Activity business logic: connected repositories and webhook intake (no Flask here)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qs

import peewee as pw

from shared import audit, crypto, fastjson
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
from shared.sql import PreparedStatement, is_postgres

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


def _key_source() -> tuple:
    return (os.environ.get("DEVMETRICS_ENCRYPTION_KEYS"), os.environ.get("DEVMETRICS_KEY_FILE"))


@lru_cache(maxsize=1024)
def _webhook_secret(ciphertext: str, key_source: tuple) -> str:
    """A repository's secret, decrypted once per ciphertext and key set (hot path: building
    the key set from the environment costs more than the rest of the check). A rotated
    secret is a new ciphertext, so it is never served stale."""
    return crypto.decrypt(ciphertext)


def _signature_ok(raw: bytes, header: str, secrets_: list[str]) -> bool:
    scheme, _, digest = header.partition("=")
    if scheme != "sha256" or not digest:
        return False
    for secret in secrets_:
        expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        # bytes: compare_digest raises TypeError on str with non-ASCII (header) characters
        if hmac.compare_digest(expected.encode(), digest.strip().lower().encode()):
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
        payload = fastjson.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        if isinstance(exc, DomainError):
            raise
        raise BadRequest(f"malformed body: {type(exc).__name__}") from None
    if not isinstance(payload, dict):
        raise BadRequest("the payload must be a JSON object")
    # A `\ud800`-style escape can decode to a lone surrogate, which is not UTF-8 and cannot
    # be stored or even queried with: refuse it (the substring test keeps this off the
    # common path).
    if "\\ud" in text or "\\uD" in text:
        try:
            json.dumps(payload, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise BadRequest("malformed body: a lone surrogate escape (not UTF-8)") from None
    # JSON strings cannot hold a raw NUL (json.loads refuses control characters), only the
    # escape `\u0000`: without it in the text, skip walking the whole payload (hot path).
    return _without_nul(payload) if "\\u0000" in text else payload


def _without_nul(value):
    """PostgreSQL cannot store U+0000 in text or JSONB: keep the data, mark the character."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


@dataclass(frozen=True)
class KnownRepository:
    """What intake needs of a connected repository: cached per process (see
    `_known_repositories`), and re-checked against its row by the storing statement."""

    id: int
    organization_id: int
    github_id: int | None
    is_active: bool
    webhook_secret_encrypted: str | None


# github_id -> KnownRepository, this process only (PostgreSQL intake). Never trusted on its
# own: the statement that stores a delivery also checks that the row still has this id, is
# still active and still has this secret ciphertext, and any refusal or mismatch is decided
# again from a fresh lookup. So a disconnect, rotation or deletion takes effect at once; the
# cache only saves the lookup's round trip for the next delivery of a known repository.
_known_repositories: dict[int, KnownRepository] = {}
KNOWN_REPOSITORIES_MAX = 10_000  # cleared when full: cheap to refill, bounded memory


def _known(repo: Repository) -> KnownRepository:
    return KnownRepository(
        repo.id,
        repo.organization_id,
        repo.github_id,
        repo.is_active,
        repo.webhook_secret_encrypted,
    )


def _remember(repo: KnownRepository) -> None:
    if len(_known_repositories) >= KNOWN_REPOSITORIES_MAX:
        _known_repositories.clear()
    _known_repositories[repo.github_id] = repo


def _github_id_of(payload: dict) -> int | None:
    data = payload.get("repository")
    github_id = data.get("id") if isinstance(data, dict) else None
    if isinstance(github_id, int) and not isinstance(github_id, bool) and 0 < github_id < 2**63:
        return github_id
    return None


def _repository_for(payload: dict) -> Repository | None:
    data = payload.get("repository")
    if not isinstance(data, dict):
        return None
    github_id, full_name = _github_id_of(payload), data.get("full_name")
    if github_id is not None:
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


def _secrets_of(repo) -> list[str]:
    candidates = (
        [_webhook_secret(repo.webhook_secret_encrypted, _key_source())]
        if repo.webhook_secret_encrypted
        else []
    )
    if os.environ.get("GITHUB_WEBHOOK_SECRET"):
        candidates.append(os.environ["GITHUB_WEBHOOK_SECRET"])
    return candidates


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
    hook_id = (headers.get("X-GitHub-Hook-ID") or "")[:32]
    action = payload.get("action") if isinstance(payload.get("action"), str) else None
    event = {
        "hook_id": hook_id,
        "delivery_id": delivery_id,
        "event_type": event_type,
        "action": (action or None) and action[:64],
        "headers": {name: value for name in KEPT_HEADERS if (value := headers.get(name))},
        "payload": payload,
    }
    if not is_postgres():
        return _receive_on_sqlite(raw, signature, event)

    # A JSON body goes to PostgreSQL as sent (jsonb parses it; no second serialization), unless
    # parse_body had to replace a NUL in it; a form-encoded one is serialized.
    as_sent = headers.get("Content-Type", "").startswith("application/json")
    payload_text = raw.decode() if as_sent and b"\\u0000" not in raw else json.dumps(payload)
    github_id = _github_id_of(payload)
    known = _known_repositories.get(github_id) if event_type != "ping" else None
    if known is not None:
        # The fast path: no lookup; the store re-checks the row (one round trip in all).
        if _signature_ok(raw, signature, _secrets_of(known)):
            stored = _store_in_one_statement(known, event, payload_text)
            if stored is not None:
                return stored
        _known_repositories.pop(github_id, None)  # changed, or never ours: decide afresh
    # A repository that changes between our lookup and the store (a concurrent disconnect,
    # rotation or deletion) is looked up once more, so the answer follows the new state.
    for _ in range(2):
        repo = _repository_for(payload)
        if repo is None or not repo.is_active:
            raise NotFound("unknown or disconnected repository")
        if not _signature_ok(raw, signature, _secrets_of(repo)):
            raise Unauthorized("signature does not match this repository's webhook secret")
        if event_type == "ping":
            return Delivery(200, {"status": "pong", "zen": payload.get("zen")})
        _learn_metadata(repo, payload["repository"])
        known = _known(repo)
        stored = _store_in_one_statement(known, event, payload_text)
        if stored is not None:
            if known.github_id is not None and known.github_id == github_id:
                _remember(known)
            return stored
    raise Unavailable("the repository is changing right now; retry shortly")


# One statement, autocommitted (no BEGIN/COMMIT round trips): the dedupe row and the event
# are written together or not at all. The repository must still be the one the signature was
# checked against (same id, active, same secret ciphertext), else nothing is written and
# `repository_ok` is false. The dedupe row comes first and takes the event's id from events'
# sequence; a redelivery conflicts on (source, hook_id, delivery_id), which is unique in
# event_deliveries across every monthly partition of events, so it writes nothing and
# `event_id` is NULL (a concurrent twin waits for the first to commit, then conflicts).
STORE_EVENT = PreparedStatement(
    "store_github_event",
    """
WITH repository AS (
    SELECT id, organization_id FROM repositories
    WHERE id = %(repository_id)s AND is_active
      AND webhook_secret_encrypted IS NOT DISTINCT FROM %(secret_ciphertext)s
), delivery AS (
    INSERT INTO event_deliveries (source, hook_id, delivery_id, event_id, received_at)
    SELECT %(source)s, %(hook_id)s, %(delivery_id)s,
           nextval(pg_get_serial_sequence('events', 'id')), %(received_at)s
    FROM repository
    ON CONFLICT (source, hook_id, delivery_id) DO NOTHING
    RETURNING event_id
), event AS (
    INSERT INTO events (id, source, hook_id, delivery_id, event_type, action, repository_id,
                        organization_id, headers, payload, received_at, status, attempts)
    SELECT delivery.event_id, %(source)s, %(hook_id)s, %(delivery_id)s, %(event_type)s,
           %(action)s, repository.id, repository.organization_id, %(headers)s::jsonb,
           %(payload)s::jsonb, %(received_at)s, %(status)s, 0
    FROM delivery CROSS JOIN repository
    RETURNING id
)
SELECT EXISTS (SELECT 1 FROM repository), (SELECT id FROM event)
""",
)


def _store_in_one_statement(
    repo: KnownRepository, event: dict, payload_text: str
) -> Delivery | None:
    """Store the delivery on PostgreSQL; None when the repository is no longer `repo`."""
    repository_ok, event_id = STORE_EVENT.execute(
        {
            **event,
            "source": "github",
            "headers": json.dumps(event["headers"]),
            "payload": payload_text,
            "received_at": Event.received_at.db_value(utcnow()),
            "status": EventStatus.PENDING.value,
            "repository_id": repo.id,
            "secret_ciphertext": repo.webhook_secret_encrypted,
        },
    ).fetchone()
    if not repository_ok:
        return None
    if event_id is None:
        return Delivery(200, {"status": "duplicate", "delivery": event["delivery_id"]})
    return Delivery(202, {"status": "accepted", "id": event_id, "delivery": event["delivery_id"]})


def _receive_on_sqlite(raw: bytes, signature: str, event: dict) -> Delivery:
    """SQLite (development): look up, then the event and its dedupe row in one transaction."""
    payload = event["payload"]
    repo = _repository_for(payload)
    if repo is None or not repo.is_active:
        raise NotFound("unknown or disconnected repository")
    if not _signature_ok(raw, signature, _secrets_of(repo)):
        raise Unauthorized("signature does not match this repository's webhook secret")
    if event["event_type"] == "ping":
        return Delivery(200, {"status": "pong", "zen": payload.get("zen")})
    try:
        with db.atomic():
            _learn_metadata(repo, payload["repository"])
            stored = Event.create(
                **event,
                source="github",
                repository=repo,
                organization=repo.organization_id,
                status=EventStatus.PENDING,
            )
            # Unique across every event: a redelivery fails here.
            EventDelivery.create(
                source=stored.source,
                hook_id=stored.hook_id,
                delivery_id=stored.delivery_id,
                event_id=stored.id,
                received_at=stored.received_at,
            )
    except pw.IntegrityError:
        return Delivery(200, {"status": "duplicate", "delivery": event["delivery_id"]})
    return Delivery(202, {"status": "accepted", "id": stored.id, "delivery": event["delivery_id"]})


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
            allowed = [m.value for m in column.enum] if hasattr(column, "enum") else None
            if allowed is not None and args[name] not in allowed:  # never reaches SQL
                raise Invalid(
                    f"{name} must be one of {', '.join(allowed)}",
                    {"query": {name: [f"one of {', '.join(allowed)}"]}},
                )
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
