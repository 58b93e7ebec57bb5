"""The round trips cut from hot paths stay correct: the pool's skipped ping, the webhook
intake's repository cache (re-checked by the storing statement) and accounts' own cache of
API-key introspection (bcrypt once per key per TTL, a revoked key refused after it)."""

import hashlib
import hmac
import json
import uuid
from types import SimpleNamespace

import peewee as pw
import psycopg2
import pytest

from services.activity import logic
from shared import crypto
from shared.database import open_database
from shared.models import ApiKey, Event, EventDelivery, Organization, Repository, utcnow

SECRET = "fast-path-secret"
GITHUB_ID = 770011


# The pool ------------------------------------------------------------------------------


@pytest.fixture
def pool_url(fresh_database_url):
    return fresh_database_url


@pytest.fixture
def pool(pool_url):
    database = open_database(pool_url, pool_min=1, pool_max=2)
    yield database
    database.close_all()


@pytest.fixture
def pings(pool, monkeypatch):
    """How many times the pool pinged a connection on check-out."""
    seen = []
    real = pool._adapter.is_connection_closed

    def counting(conn):
        seen.append(conn)
        return real(conn)

    monkeypatch.setattr(pool._adapter, "is_connection_closed", counting)
    return seen


def _backend_pid(database) -> int:
    with database.connection_context():
        return database.execute_sql("SELECT pg_backend_pid()").fetchone()[0]


@pytest.mark.postgres_only
def test_a_just_returned_connection_is_reused_without_a_ping(pool, pings):
    first = _backend_pid(pool)
    assert _backend_pid(pool) == first  # the same connection, straight back from the pool
    assert pings == []


@pytest.mark.postgres_only
def test_a_connection_idle_past_the_window_is_pinged(pool, pings, monkeypatch):
    _backend_pid(pool)
    monkeypatch.setattr(pool, "PING_AFTER_IDLE_SECONDS", 0.0)
    _backend_pid(pool)
    assert len(pings) == 1


@pytest.mark.postgres_only
def test_a_connection_that_died_unpinged_fails_its_query_then_is_discarded(pool, pool_url, pings):
    dead = _backend_pid(pool)
    admin = psycopg2.connect(pool_url)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (dead,))
    admin.close()

    with pytest.raises(pw.OperationalError), pool.connection_context():
        pool.execute_sql("SELECT 1")  # the app answers this with a 503
    assert pool.pool_size == 0  # not back in the pool

    assert _backend_pid(pool) != dead
    assert pings == []


# The webhook intake's repository cache ---------------------------------------------------


def _sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def webhooks(tx, monkeypatch):
    from services.activity import create_app

    if not isinstance(tx, pw.PostgresqlDatabase):
        pytest.skip("the cached, one-statement intake is PostgreSQL's")
    monkeypatch.delenv("GITHUB_WEBHOOK_SECRET", raising=False)
    monkeypatch.setattr(logic, "_known_repositories", {})
    org = Organization.create(name="Fast path", slug="fast-path", plan="PRO")
    repo = Repository.create(
        organization=org,
        github_id=GITHUB_ID,
        full_name="fast/path",
        webhook_secret_encrypted=crypto.encrypt(SECRET),
        verified_at=utcnow(),  # GitHub's API confirmed it
    )
    client = create_app({"TESTING": True, "DATABASE": tx}).test_client()

    def deliver(secret=SECRET, delivery=None):
        body = json.dumps(
            {"ref": "refs/heads/main", "repository": {"id": GITHUB_ID, "full_name": "fast/path"}}
        ).encode()
        return client.post(
            "/webhooks/github",
            data=body,
            headers={
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
                "X-GitHub-Hook-ID": "77",
                "X-Hub-Signature-256": _sign(body, secret),
                "Content-Type": "application/json",
            },
        )

    return repo, deliver


@pytest.mark.postgres_only
def test_a_cached_repository_whose_secret_changed_elsewhere_takes_the_new_secret(webhooks):
    repo, deliver = webhooks
    assert deliver().status_code == 202
    assert GITHUB_ID in logic._known_repositories
    # Rotated by another process: this one's cache still holds the old ciphertext.
    Repository.update(webhook_secret_encrypted=crypto.encrypt("rotated")).where(
        Repository.id == repo.id
    ).execute()
    assert deliver(SECRET).status_code == 401
    assert deliver("rotated").status_code == 202
    assert deliver(SECRET).status_code == 401  # the newly cached secret is the rotated one
    assert Event.select().where(Event.repository == repo.id).count() == 2


@pytest.mark.postgres_only
def test_a_cached_repository_disconnected_or_deleted_elsewhere_is_refused(webhooks):
    repo, deliver = webhooks
    assert deliver().status_code == 202
    Repository.update(is_active=False).where(Repository.id == repo.id).execute()
    assert deliver().status_code == 404
    Repository.update(is_active=True).where(Repository.id == repo.id).execute()
    assert deliver().status_code == 202
    Repository.delete().where(Repository.id == repo.id).execute()
    assert deliver().status_code == 404
    assert EventDelivery.select().count() == 2


@pytest.mark.postgres_only
def test_one_statement_stores_the_event_and_its_dedupe_row_together(webhooks):
    repo, deliver = webhooks
    first = deliver(delivery="fast-1")
    again = deliver(delivery="fast-1")  # through the cache this time
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json["status"] == "duplicate"
    event = Event.get(Event.delivery_id == "fast-1")
    (row,) = EventDelivery.select().where(EventDelivery.delivery_id == "fast-1")
    assert (row.event_id, row.hook_id, row.received_at) == (
        event.id,
        event.hook_id,
        event.received_at,
    )
    assert (event.organization_id, event.repository_id) == (repo.organization_id, repo.id)
    assert event.headers["X-GitHub-Delivery"] == "fast-1"


# Accounts' own API-key introspection -----------------------------------------------------


def test_accounts_pays_bcrypt_once_per_key_then_refuses_it_once_revoked(tx, monkeypatch):
    from services.accounts import create_app
    from shared.web import auth

    monkeypatch.setenv("INTROSPECTION_CACHE_SECONDS", "60")
    org = Organization.create(name="Cache", slug="cache-co", plan="PRO")
    plaintext, prefix, key_hash = crypto.new_api_key()
    ApiKey.create(
        organization=org,
        name="k",
        prefix=prefix,
        key_hash=key_hash,
        scopes=[],
        organization_key=True,  # no creating person (as the CLI's)
    )
    checks = []
    real_check = crypto.check_api_key
    monkeypatch.setattr(crypto, "check_api_key", lambda *a: checks.append(1) or real_check(*a))
    client = create_app({"TESTING": True, "DATABASE": tx}).test_client()

    def read():
        headers = {"Authorization": f"Bearer {plaintext}"}
        return client.get("/api/v1/orgs/cache-co", headers=headers).status_code

    assert [read() for _ in range(5)] == [200] * 5
    assert len(checks) == 1

    ApiKey.update(revoked_at=pw.SQL("CURRENT_TIMESTAMP")).where(ApiKey.prefix == prefix).execute()
    assert read() == 200  # still within the TTL: trusted, as on every service
    later = auth.time.monotonic() + 61
    monkeypatch.setattr(auth, "time", SimpleNamespace(monotonic=lambda: later))
    assert read() == 401
    assert len(checks) == 2
