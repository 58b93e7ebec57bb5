"""Activity business logic: connected repositories and webhook intake (no Flask here)."""

from __future__ import annotations

import codecs
import hashlib
import hmac
import json
import math
import os
import secrets
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qs

import peewee as pw
from werkzeug.http import parse_options_header

from services.activity import github_access
from shared import audit, crypto, fastjson
from shared.database import db, lock_row, serialized
from shared.errors import (
    BadRequest,
    Conflict,
    NotFound,
    PlanLimitReached,
    Unauthorized,
    Unavailable,
    UpstreamError,
)
from shared.http import ServiceClient, ServiceUnavailable
from shared.models import (
    Event,
    EventDelivery,
    EventStatus,
    Organization,
    Repository,
    Sensitivity,
    utcnow,
)
from shared.sql import PreparedStatement, is_postgres
from shared.tenant_settings import settings_of

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
    """The organization's repositories; RESTRICTED ones only for ADMIN+ callers. Each row
    also knows whether its token owner still stands (for its GitHub status)."""
    query = Repository.select().where(Repository.organization == organization)
    if not can_see_restricted:
        query = query.where(Repository.sensitivity != Sensitivity.RESTRICTED)
    return github_access.with_token_owner(query).order_by(Repository.full_name)


def get_repository(organization, repo_id: int, *, can_see_restricted: bool) -> Repository:
    repo = (
        visible_repositories(organization, can_see_restricted=can_see_restricted)
        .where(Repository.id == repo_id)
        .first()
    )
    if repo is None:
        raise NotFound("repository not found")
    return repo


def _repository_allowance(organization) -> dict:
    """Ask accounts (the owner of plans) for the organization's plan and repository limit."""
    try:
        response = ServiceClient("accounts").get(f"/internal/v1/orgs/{organization.id}/limits")
    except ServiceUnavailable as exc:
        raise Unavailable(f"cannot check the plan limit now: {exc}") from exc
    if response.status_code != 200:
        raise Unavailable(f"cannot check the plan limit now (accounts: {response.status_code})")
    info = response.json()
    return {"plan": info["plan"], "limit": info["limits"]["repositories"]}


def _check_allowance(organization, allowance: dict) -> None:
    """Under the organization's row lock: one more active repository fits the plan (the
    count and the insert are serialized, so concurrent connects cannot overshoot it)."""
    plan = Organization.select(Organization.plan).where(Organization.id == organization.id)
    if str(plan.scalar()) != allowance["plan"]:
        raise Conflict("the organization's plan changed while connecting; try again")
    limit = allowance["limit"]
    connected = (
        Repository.select()
        .where((Repository.organization == organization) & Repository.is_active)
        .count()
    )
    if limit is not None and connected >= limit:
        raise PlanLimitReached(
            f"the {allowance['plan']} plan allows at most {limit} repositories "
            f"({connected} connected); upgrade the plan to add more",
            {"limit": {"repositories": limit}},
        )


def connect_repository(
    organization, full_name: str, sensitivity=Sensitivity.INTERNAL, *, connector_id=None
):
    """Connect (or reconnect) `owner/name` for the person `connector_id` (a signed-in user,
    or the creator of the API key used); returns (repository, webhook secret shown once).

    Its GitHub identity is asked of GitHub with the connector's own token, which must be
    able to read it: they become its token owner. When GitHub is unavailable it is
    connected unverified (no webhooks accepted) and the check is retried in the background;
    without a GitHub token of the connector's, an ADMIN verifies it later with theirs."""
    existing = Repository.get_or_none(
        (Repository.organization == organization)
        & (pw.fn.LOWER(Repository.full_name) == full_name.lower())
    )
    if existing is not None and existing.is_active:
        raise Conflict(f"{existing.full_name} is already connected")
    allowance = _repository_allowance(organization)
    _check_allowance(organization, allowance)  # before asking GitHub; again under the lock
    token = github_access.person_token(connector_id)
    identity = None
    if token is not None:
        try:
            identity = github_access.github_identity(full_name, token)
        except UpstreamError:
            identity = None  # GitHub is unwell: connected unverified, verified later
    secret = secrets.token_hex(32)
    with serialized():
        lock_row(Organization, organization.id)
        _check_allowance(organization, allowance)
        repo = existing or Repository(organization=organization, full_name=full_name)
        if identity is not None:
            github_access.check_identity_free(organization.id, identity["github_id"], repo.id)
            github_access.apply_identity(repo, identity, connector_id)
        else:
            # A reconnect is verified again, with the new connector's token.
            repo.verified_at, repo.github_problem = None, None
            repo.connected_by = connector_id
        repo.sensitivity = sensitivity if existing is None else repo.sensitivity
        repo.is_active, repo.disconnected_at = True, None
        repo.connected_at = utcnow()
        repo.webhook_secret_encrypted = crypto.encrypt(secret)
        try:
            with db.atomic():
                repo.save()
        except pw.IntegrityError:
            raise Conflict(f"{full_name} is already connected") from None
        if identity is None and token is not None:
            github_access.queue_verification(repo)
        audit.record(
            "repository.connected",
            organization=organization,
            target_type="repository",
            target_id=repo.id,
            metadata={
                "full_name": repo.full_name,
                "verified": repo.verified_at is not None,
                "token_owner": connector_id,
            },
        )
    return repo, secret


def update_sensitivity(repo: Repository, sensitivity) -> Repository:
    with db.atomic():
        audit.changed(
            repo,
            {"sensitivity": sensitivity},
            "repository.sensitivity_changed",
            organization=repo.organization_id,
            target_type="repository",
            metadata=lambda c: {"from": str(c.before["sensitivity"]), "to": str(sensitivity)},
            always=True,  # audited even when the level stays
        )
    return repo


def update_settings(repo: Repository, settings: dict) -> Repository:
    with db.atomic():
        audit.changed(
            repo,
            {"settings": {**settings_of(repo), **settings}},
            "repository.settings_changed",
            organization=repo.organization_id,
            target_type="repository",
            metadata={"changed": sorted(settings)},  # the keys given, changed or not
            always=True,
        )
    return repo


def rotate_secret(repo: Repository) -> str:
    secret = secrets.token_hex(32)
    with db.atomic():
        audit.changed(
            repo,
            {"webhook_secret_encrypted": crypto.encrypt(secret)},
            "repository.secret_rotated",
            organization=repo.organization_id,
            target_type="repository",
            metadata={},
        )
    return secret


def disconnect(repo: Repository) -> Repository:
    """Stop accepting its webhooks; its data stays."""
    with db.atomic():
        audit.changed(
            repo,
            {"is_active": False, "disconnected_at": utcnow()},
            "repository.disconnected",
            organization=repo.organization_id,
            target_type="repository",
            metadata={},
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


JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def media_type(content_type: str) -> tuple[str, dict[str, str]]:
    """A Content-Type header's media type, lowercased (media types are case-insensitive:
    `Application/JSON` is `application/json`), and its parameters."""
    kind, options = parse_options_header(content_type)
    return kind.lower(), options


def _utf8(charset: str) -> bool:
    try:
        return codecs.lookup(charset).name == "utf-8"
    except LookupError:
        return False


def _no_constants(name: str):
    """json.loads takes `NaN`, `Infinity` and `-Infinity`; JSON has none of them (nor can
    PostgreSQL's jsonb hold them): refused, naming the value."""
    raise BadRequest(
        f"malformed body: {name} is not a JSON value (JSON has no NaN or Infinity)",
        {"body": [f"{name} is not valid JSON"]},
    )


def _finite(literal: str) -> float:
    """A JSON number past a double's range (`1e400`) would become infinity: refused."""
    value = float(literal)
    if math.isinf(value):
        shown = literal if len(literal) <= 40 else literal[:37] + "..."
        raise BadRequest(
            f"malformed body: the number {shown} is out of range",
            {"body": [f"{shown} is beyond the range of a double"]},
        )
    return value


def parse_body(raw: bytes, content_type: str) -> dict:
    """GitHub sends JSON, or a form with the JSON in `payload`, both UTF-8."""
    kind, options = media_type(content_type)
    if kind not in (JSON, FORM):
        raise BadRequest(
            f"unsupported content type {content_type!r}",
            {"Content-Type": ["application/json or form-encoded"]},
        )
    charset = options.get("charset")
    if charset is not None and not _utf8(charset):
        raise BadRequest(
            f"unsupported charset {charset!r}: deliveries are UTF-8",
            {"Content-Type": ["charset must be UTF-8"]},
        )
    try:
        text = raw.decode("utf-8")
        if kind == FORM:
            fields = parse_qs(text, strict_parsing=True)
            if "payload" not in fields:
                raise BadRequest(
                    "form-encoded delivery without a payload field", {"payload": ["missing"]}
                )
            text = fields["payload"][0]
        payload = fastjson.loads(text, parse_constant=_no_constants, parse_float=_finite)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
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
    """What intake needs of a verified, connected repository: cached per process (see
    `_known_repositories`), and re-checked against its row by the storing statement."""

    id: int
    organization_id: int
    github_id: int
    webhook_secret_encrypted: str | None


# github_id -> the verified, active repositories with that GitHub id (one per organization
# that connected it), this process only (PostgreSQL intake). Never trusted on its own: the
# statement that stores a delivery also checks that the row is still verified with this id,
# still active and still has this secret ciphertext, and any refusal or mismatch is decided
# again from a fresh lookup. So a disconnect, rotation or deletion takes effect at once; the
# cache only saves the lookup's round trip for the next delivery of a known repository.
_known_repositories: dict[int, tuple[KnownRepository, ...]] = {}
KNOWN_REPOSITORIES_MAX = 10_000  # cleared when full: cheap to refill, bounded memory


def _known(repo: Repository) -> KnownRepository:
    return KnownRepository(
        repo.id, repo.organization_id, repo.github_id, repo.webhook_secret_encrypted
    )


def _remember(github_id: int, repos: tuple[KnownRepository, ...]) -> None:
    if len(_known_repositories) >= KNOWN_REPOSITORIES_MAX:
        _known_repositories.clear()
    _known_repositories[github_id] = repos


def _github_id_of(payload: dict) -> int | None:
    data = payload.get("repository")
    github_id = data.get("id") if isinstance(data, dict) else None
    if isinstance(github_id, int) and not isinstance(github_id, bool) and 0 < github_id < 2**63:
        return github_id
    return None


def _verified_repositories(github_id: int | None) -> list[Repository]:
    """The connected repositories whose GitHub id GitHub's API confirmed to be `github_id`
    (a delivery's claim of an id selects among them; it never sets one)."""
    if github_id is None:
        return []
    return list(
        Repository.select().where(
            (Repository.github_id == github_id)
            & Repository.verified_at.is_null(False)
            & Repository.is_active
        )
    )


def _unverified_repositories(payload: dict) -> list[Repository]:
    """Connected repositories of that name that GitHub has not confirmed yet (one per
    organization that connected it)."""
    data = payload.get("repository")
    full_name = data.get("full_name") if isinstance(data, dict) else None
    if not isinstance(full_name, str):
        return []
    return list(
        Repository.select().where(
            (pw.fn.LOWER(Repository.full_name) == full_name.lower())
            & Repository.verified_at.is_null()
            & Repository.is_active
        )
    )


def _own_secret(repo) -> str | None:
    if not repo.webhook_secret_encrypted:
        return None
    return _webhook_secret(repo.webhook_secret_encrypted, _key_source())


def _app_secret() -> str | None:
    return os.environ.get("GITHUB_WEBHOOK_SECRET") or None


def _recipients(raw: bytes, signature: str, candidates: list) -> list:
    """Who a signed delivery is for: the repository whose own webhook secret signed it, or,
    signed with the GitHub App's secret, every organization that verified the repository."""
    for repo in candidates:
        secret = _own_secret(repo)
        if secret and _signature_ok(raw, signature, [secret]):
            return [repo]
    app_secret = _app_secret()
    if app_secret and candidates and _signature_ok(raw, signature, [app_secret]):
        return list(candidates)
    return []


def _pong(payload: dict) -> Delivery:
    return Delivery(200, {"status": "pong", "zen": payload.get("zen")})


def _hook_ping(raw: bytes, signature: str, payload: dict) -> Delivery:
    """A `ping` without a repository: the GitHub App's own hook (`hook.type` "App"), or an
    organization webhook ("Organization"). Such a hook can be signed with the App's secret
    only (organization webhooks are not a supported setup: each repository's own hook, or
    the App, deliver an organization's events), so that secret alone decides: 200 when it
    signed the ping, else 401 (counted as a signature failure). The answer depends on no
    tenant's data, so it tells nothing about who uses DevMetrics."""
    app_secret = _app_secret()
    if app_secret and _signature_ok(raw, signature, [app_secret]):
        return _pong(payload)
    raise Unauthorized(
        "signature does not match: a ping without a repository (a GitHub App or "
        "organization hook) is accepted signed with the GitHub App's webhook secret only; "
        "organization webhooks are not supported (add the webhook to each repository, or "
        "install the GitHub App)"
    )


def _refuse_unrouted(raw: bytes, signature: str, payload: dict) -> None:
    """No verified repository takes the delivery: say why (after checking the signature,
    so the answer reveals nothing to someone who cannot sign for the repository)."""
    pending = _recipients(raw, signature, _unverified_repositories(payload))[:1]
    if pending:
        state = github_access.status_of(pending[0])
        raise Conflict(
            f"{pending[0].full_name} is connected but GitHub has not confirmed it yet "
            f"(status: {state.state}): deliveries are refused until it is verified",
            {"repository": [state.state]},
        )
    raise NotFound("unknown, unverified or disconnected repository")


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
    if event_type == "ping" and not isinstance(payload.get("repository"), dict):
        return _hook_ping(raw, signature, payload)
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
    as_sent = media_type(headers.get("Content-Type", ""))[0] == JSON
    payload_text = raw.decode() if as_sent and b"\\u0000" not in raw else json.dumps(payload)
    github_id = _github_id_of(payload)
    known = _known_repositories.get(github_id) if event_type != "ping" else None
    if known is not None:
        # The fast path: no lookup; the store re-checks each row (one round trip each).
        recipients = _recipients(raw, signature, list(known))
        if len(recipients) == 1:
            stored = _store_in_one_statement(recipients[0], event, payload_text)
            if stored is not None:
                return stored
        _known_repositories.pop(github_id, None)  # changed, or an App delivery: decide afresh
    # A repository that changes between our lookup and the store (a concurrent disconnect,
    # rotation or deletion) is looked up once more, so the answer follows the new state.
    for _ in range(2):
        candidates = _verified_repositories(github_id)
        if not candidates:
            _refuse_unrouted(raw, signature, payload)
        recipients = _recipients(raw, signature, candidates)
        if not recipients:
            raise Unauthorized("signature does not match this repository's webhook secret")
        if event_type == "ping":
            return _pong(payload)
        results = [
            _store_in_one_statement(_known(repo), event, payload_text) for repo in recipients
        ]
        if all(result is not None for result in results):
            _remember(github_id, tuple(_known(repo) for repo in candidates))
            return _combined(results)
    raise Unavailable("the repository is changing right now; retry shortly")


def _combined(results: list[Delivery]) -> Delivery:
    """One answer for a delivery stored for each recipient: accepted if any stored it."""
    accepted = [r for r in results if r.status == 202]
    return accepted[0] if accepted else results[0]


# One statement, autocommitted (no BEGIN/COMMIT round trips): the dedupe row and the event
# are written together or not at all. The repository must still be the one the signature was
# checked against (same id, verified with the same GitHub id, active, same secret
# ciphertext), else nothing is written and `repository_ok` is false. The dedupe row comes
# first and takes the event's id from events' sequence; a redelivery conflicts on (source,
# hook_id, delivery_id, repository_id), which is unique in event_deliveries across every
# monthly partition of events, so it writes nothing and `event_id` is NULL (a concurrent twin
# waits for the first to commit, then conflicts).
STORE_EVENT = PreparedStatement(
    "store_github_event",
    """
WITH repository AS (
    SELECT id, organization_id FROM repositories
    WHERE id = %(repository_id)s AND is_active AND github_id = %(github_id)s
      AND verified_at IS NOT NULL
      AND webhook_secret_encrypted IS NOT DISTINCT FROM %(secret_ciphertext)s
), delivery AS (
    INSERT INTO event_deliveries (source, hook_id, delivery_id, repository_id, event_id,
                                  received_at)
    SELECT %(source)s, %(hook_id)s, %(delivery_id)s, repository.id,
           nextval(pg_get_serial_sequence('events', 'id')), %(received_at)s
    FROM repository
    ON CONFLICT (source, hook_id, delivery_id, repository_id) DO NOTHING
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
            "github_id": repo.github_id,
            "secret_ciphertext": repo.webhook_secret_encrypted,
        },
    ).fetchone()
    if not repository_ok:
        return None
    if event_id is None:
        return Delivery(200, {"status": "duplicate", "delivery": event["delivery_id"]})
    return Delivery(202, {"status": "accepted", "id": event_id, "delivery": event["delivery_id"]})


def _receive_on_sqlite(raw: bytes, signature: str, event: dict) -> Delivery:
    """SQLite (development): look up, then each event and its dedupe row in one transaction."""
    payload = event["payload"]
    candidates = _verified_repositories(_github_id_of(payload))
    if not candidates:
        _refuse_unrouted(raw, signature, payload)
    recipients = _recipients(raw, signature, candidates)
    if not recipients:
        raise Unauthorized("signature does not match this repository's webhook secret")
    if event["event_type"] == "ping":
        return _pong(payload)
    results = []
    for repo in recipients:
        try:
            with db.atomic():
                stored = Event.create(
                    **event,
                    source="github",
                    repository=repo,
                    organization=repo.organization_id,
                    status=EventStatus.PENDING,
                )
                # Unique per repository across every event: a redelivery fails here.
                EventDelivery.create(
                    source=stored.source,
                    hook_id=stored.hook_id,
                    delivery_id=stored.delivery_id,
                    repository_id=repo.id,
                    event_id=stored.id,
                    received_at=stored.received_at,
                )
        except pw.IntegrityError:
            results.append(Delivery(200, {"status": "duplicate", "delivery": event["delivery_id"]}))
            continue
        body = {"status": "accepted", "id": stored.id, "delivery": event["delivery_id"]}
        results.append(Delivery(202, body))
    return _combined(results)


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
