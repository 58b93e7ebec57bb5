"""Issue 18, item 8: the events worker and the metrics recompute both update pull_requests
rows, each in its own order (events in event order, the recompute in its scan order); they
deadlocked. Now a batch holds its repositories' advisory lock shared and a recompute holds
it exclusive, both before their first row lock (shared.sql.lock_repositories).

Deterministic (PostgreSQL, READ COMMITTED), on real connections driving the real
`process_batch` and `recompute`: a third session holds the row lock the recompute meets
first, so the recompute stops there; the events batch, updating the other pull request
first, then the held one, is let in; then the held row is released. Before the fix the two
wait for each other (a deadlock PostgreSQL counts in pg_stat_database); now the batch waits
for the recompute at its start."""

from __future__ import annotations

import copy
import datetime as dt
import json
import threading
import time
import uuid

import psycopg2
import pytest

from services.activity import processing
from services.metrics import engine
from shared import crypto, migrations
from shared.database import db
from shared.models import Event, EventStatus, Organization, PullRequest, Repository, utcnow
from tests.conftest import BACKEND
from tests.helpers import WEBHOOK_SAMPLES, bound_to

pytestmark = pytest.mark.skipif(
    BACKEND == "sqlite",
    reason="PostgreSQL-only: concurrent sessions' row locks (SQLite serializes its writers)",
)

SAMPLES = WEBHOOK_SAMPLES
OPENED = json.loads((SAMPLES / "pull_request" / "opened.payload.json").read_text())
STAGES = ("first_commit_at", "deployed_at", "coding_s", "pickup_s", "review_s", "deploy_s")


@pytest.fixture
def database(fresh_database_url):
    with bound_to(fresh_database_url) as bound:
        migrations.migrate(bound)
        org = Organization.create(name="Deadlock", slug="deadlock", plan="PRO")
        repo = Repository.create(
            organization=org,
            github_id=OPENED["repository"]["id"],
            full_name=OPENED["repository"]["full_name"],
            default_branch="master",
            webhook_secret_encrypted=crypto.encrypt("x"),
            verified_at=utcnow(),
        )
        yield fresh_database_url, repo
        db.close()


def pull_request_event(repo, number: int, action: str, updated_at: str) -> None:
    """A stored `pull_request` delivery for pull request `number` (GitHub's sample)."""
    payload = copy.deepcopy(OPENED)
    payload["action"] = action
    pr = payload["pull_request"]
    payload["number"] = pr["number"] = number
    pr["id"] = 279147437 + number
    pr["title"] = f"Change {number} ({action} at {updated_at})"
    pr["head"]["ref"] = f"change-{number}"
    pr["updated_at"] = updated_at
    Event.create(
        delivery_id=str(uuid.uuid4()),
        event_type="pull_request",
        action=action,
        repository=repo,
        organization=repo.organization_id,
        payload=payload,
    )
    time.sleep(0.002)  # received in this order


def deadlocks(url: str) -> int:
    """PostgreSQL's count of deadlocks detected in the test's database."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        (count,) = cur.fetchone()
    conn.close()
    return count


def deadlocks_after(url: str, before: int) -> int:
    """The count once the sessions' statistics are flushed (when they end, or within a
    second or so of going idle): it is read until it moves, for a few seconds."""
    deadline = time.monotonic() + 3
    while (count := deadlocks(url)) == before and time.monotonic() < deadline:
        time.sleep(0.2)
    return count


class Session(threading.Thread):
    """`work` on this thread's own connection of the shared `db` (its backend pid known)."""

    def __init__(self, work):
        super().__init__(daemon=True)
        self.work, self.pid, self.error = work, None, None
        self.started_work = threading.Event()

    def run(self):
        try:
            (self.pid,) = db.execute_sql("SELECT pg_backend_pid()").fetchone()
            self.started_work.set()
            self.work()
        except Exception as exc:  # surfaced by the test; a thread's exception would be lost
            self.error = exc
        finally:
            self.started_work.set()
            db.close()


def waits_for_a_lock(watcher, pid: int) -> bool:
    with watcher.cursor() as cur:
        cur.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,))
        row = cur.fetchone()
    return bool(row and row[0])


def wait_until_waiting(watcher, session: Session) -> None:
    assert session.started_work.wait(10)
    deadline = time.monotonic() + 20
    while not waits_for_a_lock(watcher, session.pid):
        assert session.is_alive() and time.monotonic() < deadline, "it never waited"
        time.sleep(0.01)


def is_locked(watcher, pr_id: int) -> bool:
    with watcher.cursor() as cur:
        cur.execute("SELECT id FROM pull_requests WHERE id = %s FOR UPDATE SKIP LOCKED", (pr_id,))
        return cur.fetchone() is None


def stale_stages() -> None:
    """Every pull request's stages as a recompute must rewrite them (committed)."""
    PullRequest.update(cycle_s=-1.0).execute()


def broken_issue_event(repo) -> None:
    """An `issues` delivery whose handler fails (no number): its batch is processed again
    event by event."""
    payload = json.loads((SAMPLES / "issues" / "opened.payload.json").read_text())
    del payload["issue"]["number"]
    Event.create(
        delivery_id=str(uuid.uuid4()),
        event_type="issues",
        action="opened",
        repository=repo,
        organization=repo.organization_id,
        payload=payload,
    )
    time.sleep(0.002)


@pytest.mark.parametrize("path", ["one transaction", "event by event"])
def test_events_batch_and_recompute_never_deadlock(database, path):
    url, repo = database
    org_id = repo.organization_id
    pull_request_event(repo, 1, "opened", "2026-03-02T10:00:00Z")
    pull_request_event(repo, 2, "opened", "2026-03-02T10:00:00Z")
    assert processing.process_batch("setup") == 2
    engine.recompute(org_id, repository_ids=[repo.id])
    ids = dict(PullRequest.select(PullRequest.number, PullRequest.id).tuples())
    stale_stages()
    before = deadlocks(url)

    watcher = psycopg2.connect(url)
    watcher.autocommit = True
    edited_at = dt.datetime(2026, 3, 3, 10, tzinfo=dt.UTC)
    ran = None
    # The recompute's scan meets one of the two first: the held row must be that one, so
    # that it stops before it locks the other (found out on the first run, used on the next).
    for first, second in ((ids[1], ids[2]), (ids[2], ids[1])):
        blocker = psycopg2.connect(url)
        with blocker.cursor() as cur:
            cur.execute("SELECT id FROM pull_requests WHERE id = %s FOR UPDATE", (first,))
        recompute = Session(lambda: engine.recompute(org_id, repository_ids=[repo.id]))
        recompute.start()
        wait_until_waiting(watcher, recompute)
        if is_locked(watcher, second):  # it met the other one first: swap them
            blocker.rollback()
            recompute.join(30)
            assert recompute.error is None
            stale_stages()
            continue
        # The batch updates `second`, then `first` (event order).
        edited_at += dt.timedelta(hours=1)
        number = {pr_id: n for n, pr_id in ids.items()}
        if path == "event by event":
            broken_issue_event(repo)
        pull_request_event(repo, number[second], "edited", edited_at.isoformat())
        pull_request_event(repo, number[first], "edited", edited_at.isoformat())
        events = Session(lambda: processing.process_batch("events-worker"))
        events.start()
        wait_until_waiting(watcher, events)
        blocker.rollback()  # the recompute takes `first`, then wants `second`
        recompute.join(60)
        events.join(60)
        ran = (recompute.error, events.error)
        blocker.close()
        break
    watcher.close()
    assert ran == (None, None), ran
    found = deadlocks_after(url, before)
    assert found == before, f"{found - before} deadlock(s) between the batch and the recompute"

    statuses = {e.event_type: e.status for e in Event.select() if e.status != "PROCESSED"}
    assert statuses == ({"issues": EventStatus.FAILED} if path == "event by event" else {})
    assert {e.attempts for e in Event.select()} == {1}
    # The metrics are right: a fresh full recompute changes nothing.
    derived = {pr.id: [getattr(pr, c) for c in (*STAGES, "cycle_s")] for pr in PullRequest}
    engine.recompute_full(org_id)
    assert {pr.id: [getattr(pr, c) for c in (*STAGES, "cycle_s")] for pr in PullRequest} == (
        derived
    )
    assert all(pr.title.startswith(f"Change {pr.number} (edited") for pr in PullRequest)
