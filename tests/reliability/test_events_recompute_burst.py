"""Issue 18, item 8: the events worker and the recompute worker both update pull_requests rows,
each in its own order (events in event order, the recompute in its scan order), and under a
burst they deadlocked. Now a batch holds its repositories' advisory lock shared and a
recompute holds it exclusive (shared.sql.lock_repositories).

The real workers (events, outbox, recompute) and services run against a burst of signed
deliveries that all touch the same pull requests of one repository, in descending order:
a push to each one's branch (an earlier commit each round, so every recompute rewrites every
pull request's stages), a `synchronize` and a review. Across the burst PostgreSQL counts no
deadlock, no job or event is tried twice, and the stages equal a full recompute's.

The race needs a recompute's UPDATE to land within an events batch's short run of
pull-request writes, so this burst did not deadlock on the code before the fix every time
(0 in 5 runs on a 2-core machine): tests/test_events_recompute_deadlock.py makes the same
race happen deterministically, and fails without the fix every time."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import time
import uuid

import psycopg2

from services.metrics import engine
from shared import crypto
from shared.models import (
    DeveloperMetric,
    Event,
    EventStatus,
    Job,
    JobStatus,
    Organization,
    PullRequest,
    Repository,
    TeamMetric,
    utcnow,
)
from tests.helpers import stop, wait_until
from tests.reliability.conftest import SAMPLES, SECRET, Delivery, send_all, wait_processed
from tests.reliability.report import record

GITHUB_ID = 900000818
FULL_NAME = "reliability/burst-target"
PULL_REQUESTS = 100  # a round (two deliveries each) fills one events batch of 200
ROUNDS = 20
STAGES = ("first_commit_at", "deployed_at", "coding_s", "pickup_s", "review_s", "cycle_s")


def _sample(event: str, name: str) -> dict:
    payload = json.loads((SAMPLES / event / name).read_text())
    payload["repository"]["id"] = GITHUB_ID
    payload["repository"]["full_name"] = FULL_NAME
    return payload


def _delivery(event: str, payload: dict) -> Delivery:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Delivery(str(uuid.uuid4()), event, body)


def _sha(*parts) -> str:
    return hashlib.sha1("-".join(map(str, parts)).encode()).hexdigest()


class Burst:
    """GitHub's sample payloads, edited as GitHub would send them for pull request `n` of
    this run (its branch `burst-<n>`), at moments `hours` after the run's start."""

    def __init__(self):
        self.run = uuid.uuid4().hex[:8]
        self.start = (utcnow() - dt.timedelta(days=3)).replace(microsecond=0)
        self.opened = _sample("pull_request", "opened.payload.json")
        self.synchronize = _sample("pull_request", "synchronize.payload.json")
        self.review = _sample("pull_request_review", "submitted.payload.json")
        self.push = _sample("push", "with-new-branch.payload.json")

    def at(self, hours: float) -> str:
        return (self.start + dt.timedelta(hours=hours)).isoformat().replace("+00:00", "Z")

    def _pull_request(self, template: dict, n: int, updated_hours: float) -> dict:
        payload = copy.deepcopy(template)
        pr = payload["pull_request"]
        payload["number"] = pr["number"] = n
        pr["id"] = 6_000_000_000 + n
        pr["title"] = f"burst {self.run} #{n}"
        pr["draft"] = False
        pr["head"]["ref"] = f"burst-{n}"
        pr["base"]["ref"] = "master"
        pr["created_at"] = self.at(0)
        pr["updated_at"] = self.at(updated_hours)
        for key in ("merged_at", "closed_at"):
            pr[key] = None
        pr["state"] = "open"
        return payload

    def opened_event(self, n: int) -> Delivery:
        payload = self._pull_request(self.opened, n, 0)
        payload["action"] = "opened"
        return _delivery("pull_request", payload)

    def round_events(self, n: int, round_: int) -> list[Delivery]:
        """A commit authored before every earlier one on the branch, pushed (every pull
        request's stages change); then the pull request synchronized to it, or (one round in
        three) a review of it by someone else (its row is updated either way)."""
        sha = _sha(self.run, n, round_)
        push = copy.deepcopy(self.push)
        commit = push["commits"][0]
        commit.update(id=sha, timestamp=self.at(-1 - round_ - n / 100), distinct=True)
        push.update(ref=f"refs/heads/burst-{n}", after=sha, commits=[commit], head_commit=commit)
        push["repository"]["pushed_at"] = int(time.time())
        synchronize = self._pull_request(self.synchronize, n, 1 + round_)
        synchronize["action"] = "synchronize"
        synchronize["after"] = synchronize["pull_request"]["head"]["sha"] = sha
        review = copy.deepcopy(self.review)
        review["pull_request"] = self._pull_request(self.review, n, 1 + round_)["pull_request"]
        review["review"].update(
            id=7_000_000_000 + n * 1000 + round_,
            submitted_at=self.at(24 - round_),  # each earlier: the first review moves too
            commit_id=sha,
            user={**review["review"]["user"], "login": f"reviewer-{n}", "id": 8_000_000 + n},
        )
        if round_ % 3 == 2:
            return [_delivery("push", push), _delivery("pull_request_review", review)]
        return [_delivery("push", push), _delivery("pull_request", synchronize)]


def _deadlocks(url: str) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        (count,) = cur.fetchone()
    conn.close()
    return count


def _stages(repo: Repository) -> dict:
    return {
        pr.number: [getattr(pr, column) for column in STAGES]
        for pr in PullRequest.select().where(PullRequest.repository == repo)
    }


def _daily(org_id: int) -> dict:
    def rows(model, key):
        return {
            key(r): {
                k: v for k, v in r.__data__.items() if k not in ("id", "updated_at", "computed_at")
            }
            for r in model.select().where(model.organization == org_id)
        }

    return {
        "team": rows(TeamMetric, lambda r: r.date),
        "developers": rows(DeveloperMetric, lambda r: (r.user_id, r.date)),
    }


def _queues_idle() -> bool:
    return (
        not Job.select()
        .where(
            Job.queue.in_(["outbox", "recompute"]),
            Job.status.in_([JobStatus.PENDING, JobStatus.RUNNING]),
        )
        .exists()
    )


def test_events_and_recompute_workers_never_deadlock_under_a_burst(rstack):
    with rstack.db():
        org = Organization.create(name="Burst", slug=f"burst-{uuid.uuid4().hex[:6]}", plan="PRO")
        repo = Repository.create(
            organization=org,
            github_id=GITHUB_ID,
            full_name=FULL_NAME,
            default_branch="master",
            webhook_secret_encrypted=crypto.encrypt(SECRET),
            verified_at=utcnow(),
        )
    for service in ("activity", "metrics", "notifications"):
        rstack.start(service)
    burst = Burst()
    numbers = range(1, PULL_REQUESTS + 1)
    opened = [burst.opened_event(n) for n in numbers]
    assert {o.status for o in send_all(rstack.url("activity"), opened, senders=1)} == {202}
    setup_worker = rstack.start_worker("events")
    wait_processed(rstack, timeout=60)
    stop(setup_worker, timeout=30)
    with rstack.db():
        engine.recompute(org.id, repository_ids=[repo.id])
    before = _deadlocks(rstack.database_url)
    started = utcnow()

    # Queued first, so that every batch is a full one: each round meets every pull request,
    # in descending order, while the recompute of the round before updates them in its own.
    deliveries = [
        d
        for round_ in range(ROUNDS)
        for n in reversed(numbers)
        for d in burst.round_events(n, round_)
    ]
    outcomes = send_all(rstack.url("activity"), deliveries, senders=8)
    assert {o.status for o in outcomes} == {202}
    clock = time.monotonic()
    workers = [rstack.start_worker(name) for name in ("events", "outbox", "recompute")]
    wait_processed(rstack, timeout=180)
    with rstack.db():
        wait_until(_queues_idle, timeout=180, interval=0.5, what="every recompute done")
    seconds = time.monotonic() - clock
    for worker in workers:  # their sessions end: PostgreSQL's counters are flushed
        stop(worker, timeout=30)
    rstack.workers.clear()
    deadline = time.monotonic() + 3
    while (after := _deadlocks(rstack.database_url)) == before and time.monotonic() < deadline:
        time.sleep(0.2)

    with rstack.db():
        jobs = list(Job.select().where(Job.queue.in_(["outbox", "recompute"])))
        recomputes = [j for j in jobs if j.queue == "recompute" and j.created_at >= started]
        retried_jobs = [(j.queue, j.attempts, j.last_error) for j in jobs if j.attempts > 1]
        events = list(Event.select().where(Event.repository == repo))
        retried_events = [
            (e.event_type, e.status, e.attempts, e.last_error)
            for e in events
            if e.attempts > 1 or e.status != EventStatus.PROCESSED
        ]
        stages, daily = _stages(repo), _daily(org.id)
        engine.recompute_full(org.id, announce=False)
        differing_stages = {n: v for n, v in _stages(repo).items() if stages.get(n) != v}
        differing_days = [k for k, v in _daily(org.id).items() if daily.get(k) != v]
    passed = after == before and not retried_jobs and not retried_events
    passed = passed and not differing_stages and not differing_days
    record(
        "18.8 events/recompute deadlock",
        f"{len(deliveries)} deliveries on {PULL_REQUESTS} pull requests of one repository, "
        "events + recompute + outbox workers: no deadlock, no retried job or event, "
        "stages equal a full recompute",
        passed=passed,
        load=len(deliveries),
        detail=f"deadlocks {after - before}, {len(retried_jobs)} retried jobs, "
        f"{len(retried_events)} retried events, {len(recomputes)} recompute jobs, "
        f"done in {seconds:.0f}s",
    )
    assert after == before, f"{after - before} deadlock(s) during the burst"
    assert retried_jobs == [] and retried_events == []
    assert len(events) == PULL_REQUESTS + len(deliveries) and len(recomputes) > 1
    assert differing_stages == {} and differing_days == []
    assert len(stages) == PULL_REQUESTS and all(v[2] is not None for v in stages.values())
