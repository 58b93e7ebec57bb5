"""Commit authors by e-mail under concurrency (PostgreSQL, READ COMMITTED): two transactions,
each on its own connection, the first held open until the second is seen waiting for it
(or has finished). Whatever the interleaving, no commit is left with an owner its e-mail
no longer has: a pairing (or a person's claim) that lands while another batch stores a
commit of the same e-mail waits for that batch and then re-attributes its commit too."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from services.activity import authors, processing
from shared import crypto, migrations
from shared.database import db
from shared.models import Commit, Organization, Repository, User, UserEmail, utcnow
from tests.helpers import bound_to

pytestmark = pytest.mark.postgres_only


@pytest.fixture
def repo(fresh_database_url):
    with bound_to(fresh_database_url) as database:
        migrations.migrate(database)
        org = Organization.create(name="Races", slug="races", plan="PRO")
        yield Repository.create(
            organization=org,
            github_id=186853002,
            full_name="Codertocat/Hello-World",
            default_branch="master",
            webhook_secret_encrypted=crypto.encrypt("x"),
            verified_at=utcnow(),
        )


def push(repo, sha: str, email: str, username: str | None = None) -> None:
    """handle_push of a one-commit push (as the events worker applies it)."""
    author = {"name": "Dana", "email": email} | ({"username": username} if username else {})
    payload = {
        "ref": "refs/heads/master",
        "repository": {},
        "commits": [{"id": sha, "timestamp": "2026-03-02T10:00:00Z", "author": author}],
    }
    event = SimpleNamespace(action=None, received_at=utcnow())
    processing.handle_push(event, repo, payload, processing.Changes())


def waiting_for_a_lock() -> bool:
    """Another session of this database waits for a lock (a row's or an advisory one)."""
    (count,) = db.execute_sql(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    ).fetchone()
    return count > 0


def interleave(first, second) -> None:
    """`first` in a transaction held open until `second` (its own transaction, started once
    `first` has done its work) waits for a lock or has finished; then both end."""
    holding, release, done, errors = threading.Event(), threading.Event(), threading.Event(), []

    def run(work, before_commit=None):
        try:
            with db.atomic():
                work()
                if before_commit:
                    before_commit()
        except Exception as exc:  # surfaced below; a thread's assert would be lost
            errors.append(exc)
        finally:
            db.close()

    def hold():
        holding.set()
        release.wait(30)

    a = threading.Thread(target=run, args=(first, hold))
    a.start()
    assert holding.wait(30)
    b = threading.Thread(target=lambda: (run(second), done.set()))
    b.start()
    deadline = time.monotonic() + 30
    while not done.is_set() and not waiting_for_a_lock() and time.monotonic() < deadline:
        time.sleep(0.02)
    release.set()
    a.join(30)
    b.join(30)
    db.close()
    assert errors == []


def author_of(sha: str) -> str | None:
    author = Commit.get(Commit.sha == sha).author
    return author.login if author else None


def test_a_pairing_waits_for_a_batch_storing_a_commit_of_the_same_email(repo):
    push(repo, "c0", "dana@example.com")  # seen before, unlinked
    interleave(
        lambda: push(repo, "c1", "dana@example.com"),  # another unlinked commit, being stored
        lambda: push(repo, "c2", "dana@example.com", "dana-gh"),  # GitHub pairs the e-mail
    )
    assert [author_of(sha) for sha in ("c0", "c1", "c2")] == ["dana-gh"] * 3


def test_a_claim_waits_for_a_batch_storing_a_never_seen_email(repo):
    dana = User.create(login="dana-gh", github_id=7001)

    def claim():  # accounts records it (committed), then the activity inbox applies it
        UserEmail.create(user=dana, email="dana@example.com", verified=True, linked=True)
        authors.reconsider(["dana@example.com"], processing.Changes())

    interleave(lambda: push(repo, "c1", "dana@example.com"), claim)
    assert author_of("c1") == "dana-gh"
