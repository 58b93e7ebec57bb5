"""Item 3: each worker kind (event processing, recompute, outbox, notification delivery)
SIGKILLed in the middle of a batch, then started again: every job completes exactly once.

A killed worker's leased rows are taken again once their lease expires; the tests move
the lease expiry into the past instead of sleeping through it (the lease itself is tested
in tests/services/test_jobs.py and test_notification_delivery_e2e.py).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
from collections import Counter

from shared.crypto import encrypt
from shared.database import db
from shared.models import (
    Commit,
    DeveloperMetric,
    Event,
    EventStatus,
    InboxMessage,
    Job,
    JobStatus,
    NotificationLog,
    NotificationRule,
    Organization,
    PullRequest,
    Repository,
    TeamMetric,
    utcnow,
)
from tests.helpers import wait_until
from tests.receivers import Answer, HttpReceiver
from tests.reliability.conftest import (
    REPO_GITHUB_ID,
    DeliveryMaker,
    kill,
    publish_activity_changed,
    send_all,
    wait_processed,
)
from tests.reliability.report import record

PAST = dt.timedelta(seconds=1)


def kill_mid_batch(stack, proc, in_progress, finished, what: str) -> None:
    """SIGKILL `proc` once some rows are finished and others still leased to it. A batch can
    finish between a look and a kill, so the worker is frozen (SIGSTOP) first and the rows
    are counted again: it dies in exactly the state seen, else it thaws and we wait again."""

    def mid_batch():
        with stack.db():
            return in_progress() > 0 and finished() > 0

    for _attempt in range(20):
        wait_until(mid_batch, timeout=60, interval=0.02, what=f"{what} mid-batch")
        os.killpg(proc.pid, signal.SIGSTOP)
        with stack.db():
            still_leased = in_progress()
        if still_leased:
            kill(proc)  # SIGKILL works on a stopped process
            return
        os.killpg(proc.pid, signal.SIGCONT)
    raise AssertionError(f"never caught the {what} worker mid-batch")


def kill_job_worker_and_restart(rstack, name: str, mine, timeout: float) -> int:
    """SIGKILL a job worker mid-batch, let its leases expire (moved to now rather than
    waited for), restart it, and wait until every job of `mine` is DONE. Returns how many
    jobs the killed worker held."""
    worker = rstack.start_worker(name)
    kill_mid_batch(
        rstack,
        worker,
        lambda: Job.select().where(mine, Job.status == JobStatus.RUNNING).count(),
        lambda: Job.select().where(mine, Job.status == JobStatus.DONE).count(),
        name,
    )
    with rstack.db():
        stranded = (
            Job.update(locked_until=utcnow() - PAST)
            .where(mine, Job.status == JobStatus.RUNNING)
            .execute()
        )
    assert stranded > 0
    rstack.start_worker(name)

    def all_done():
        with rstack.db():
            return Job.select().where(mine, Job.status != JobStatus.DONE).count() == 0

    wait_until(all_done, timeout=timeout, interval=0.5, what=f"every {name} job done")
    return stranded


def test_events_worker_killed_mid_batch(rstack):
    rstack.start("activity")
    maker = DeliveryMaker()
    # Six batches of 200: the worker is caught between its first and its last batch, a window
    # of five (with three, a loaded machine once missed it: all done before the first look).
    deliveries = [maker.next() for _ in range(1_200)]
    assert {o.status for o in send_all(rstack.url("activity"), deliveries, senders=8)} == {202}
    sent = [d.delivery_id for d in deliveries]
    mine = Event.delivery_id.in_(sent)

    worker = rstack.start_worker("events")
    kill_mid_batch(
        rstack,
        worker,
        lambda: Event.select().where(mine, Event.status == EventStatus.PROCESSING).count(),
        lambda: Event.select().where(mine, Event.status == EventStatus.PROCESSED).count(),
        "events",
    )
    with rstack.db():
        stranded = (
            Event.update(locked_until=utcnow() - PAST)
            .where(mine, Event.status == EventStatus.PROCESSING)
            .execute()
        )
    assert stranded > 0
    rstack.start_worker("events")
    wait_processed(rstack, timeout=90)

    expected_commits = {sha for d in deliveries for sha in d.commits}
    expected_prs = {d.pull_request for d in deliveries if d.pull_request}
    with rstack.db():
        repo = Repository.get(Repository.github_id == REPO_GITHUB_ID)
        assert {e.status for e in Event.select().where(mine)} == {EventStatus.PROCESSED}
        commits = Counter(
            sha
            for (sha,) in Commit.select(Commit.sha)
            .where(Commit.sha.in_(list(expected_commits)))
            .tuples()
        )
        prs = {
            p.number: p.id
            for p in PullRequest.select().where(
                PullRequest.repository == repo, PullRequest.number.in_(list(expected_prs))
            )
        }
        # The killed batch's announcements were rolled back with it: each once.
        announced = Counter(
            job.payload["payload"]["key"]
            for job in Job.select().where(Job.queue == "outbox")
            if job.payload["topic"] == "event"
        )
    assert set(commits) == expected_commits and set(commits.values()) == {1}
    assert set(prs) == expected_prs
    opened = [announced[f"pull_request.opened:{pr_id}"] for pr_id in prs.values()]
    assert opened == [1] * len(prs), Counter(opened)
    record(
        "3 worker SIGKILL: events",
        "events worker killed mid-batch, restarted: "
        "every event processed, each commit/PR and its announcement once",
        passed=True,
        load=len(deliveries),
        faults=1,
        rows_lost=len(expected_commits - set(commits)) + len(expected_prs - set(prs)),
        detail=f"{stranded} events were leased to the killed worker",
    )


def _metrics_snapshot(org_id: int) -> dict:
    team = {
        r.date: {
            k: v for k, v in r.__data__.items() if k not in ("id", "updated_at", "computed_at")
        }
        for r in TeamMetric.select().where(TeamMetric.organization == org_id)
    }
    developers = {
        (r.user_id, r.date): {
            k: v for k, v in r.__data__.items() if k not in ("id", "updated_at", "computed_at")
        }
        for r in DeveloperMetric.select().where(DeveloperMetric.organization == org_id)
    }
    return {"team": team, "developers": developers}


def test_recompute_worker_killed_mid_batch(rstack):
    from services.metrics import engine

    today = utcnow().date()
    with rstack.db():
        org = Organization.get(Organization.slug == "techcorp")
        keys = [f"reliability-kill:{i}" for i in range(40)]
        Job.insert_many(
            [
                {
                    "queue": "recompute",
                    "dedupe_key": key,
                    "payload": {
                        "organization_id": org.id,
                        "dates": [(today - dt.timedelta(days=i % 30)).isoformat()],
                    },
                    "organization": org.id,
                    "status": JobStatus.PENDING,
                    "run_at": utcnow(),
                }
                for i, key in enumerate(keys)
            ]
        ).execute()
    mine = Job.dedupe_key.in_(keys)
    stranded = kill_job_worker_and_restart(rstack, "recompute", mine, timeout=90)
    with rstack.db():
        jobs = list(Job.select().where(mine))
        after_restart = _metrics_snapshot(org.id)
        # What an undisturbed recompute of the same days gives: nothing may differ.
        engine.recompute(org.id, dates=[today - dt.timedelta(days=i) for i in range(30)])
        reference = _metrics_snapshot(org.id)
    assert len(jobs) == len(keys) and {j.status for j in jobs} == {JobStatus.DONE}
    assert Counter(j.attempts for j in jobs)[2] >= stranded  # the stranded ones ran again
    differing = {
        (kind, key): sorted(
            f
            for f in reference[kind][key]
            if after_restart[kind].get(key, {}).get(f) != reference[kind][key][f]
        )
        for kind in reference
        for key in reference[kind]
        if after_restart[kind].get(key) != reference[kind][key]
    }
    assert differing == {}
    record(
        "3 worker SIGKILL: recompute",
        "recompute worker killed mid-batch, restarted: "
        "every job DONE once, metrics equal an undisturbed recompute",
        passed=True,
        load=len(keys),
        faults=1,
        rows_lost=0,
        detail=f"{stranded} jobs were leased to the killed worker",
    )


def test_outbox_worker_killed_mid_batch(rstack):
    rstack.start("metrics")
    with rstack.db():
        org = Organization.get(Organization.slug == "techcorp")
        repo = Repository.get(Repository.github_id == REPO_GITHUB_ID)
        with db.atomic():
            ids = publish_activity_changed(org, repo, 80)
    mine = (Job.queue == "outbox") & Job.dedupe_key.in_(ids)
    with rstack.db():
        # Earlier tests' messages (to services not running here) wait: this test's batch
        # is the one to interrupt.
        Job.update(run_at=utcnow() + dt.timedelta(days=1)).where(
            (Job.queue == "outbox") & ~Job.dedupe_key.in_(ids) & (Job.status == "PENDING")
        ).execute()
    stranded = kill_job_worker_and_restart(rstack, "outbox", mine, timeout=60)
    with rstack.db():
        inbox = Counter(
            m
            for (m,) in InboxMessage.select(InboxMessage.message_id)
            .where(InboxMessage.message_id.in_(ids))
            .tuples()
        )
        effects = Counter(
            k
            for (k,) in Job.select(Job.dedupe_key)
            .where(Job.queue == "recompute", Job.dedupe_key.in_([f"message:{i}" for i in ids]))
            .tuples()
        )
    assert set(inbox) == set(ids) and set(inbox.values()) == {1}
    assert len(effects) == len(ids) and set(effects.values()) == {1}
    record(
        "3 worker SIGKILL: outbox",
        "outbox worker killed mid-batch, restarted: "
        "every message in the receiver's inbox once, its effect once",
        passed=True,
        load=len(ids),
        faults=1,
        rows_lost=len(set(ids) - set(inbox)),
        detail=f"{stranded} messages were leased to the killed worker",
    )


def test_notify_worker_killed_mid_delivery(rstack):
    with HttpReceiver() as receiver, rstack.db():
        receiver.script(Answer(), Answer(), Answer(), Answer(hang=True))  # then 200s
        org = Organization.get(Organization.slug == "techcorp")
        rule = NotificationRule.create(
            organization=org,
            name="Reliability kill",
            trigger="pull_request.opened",
            channel="WEBHOOK",
            target=receiver.url,
            secret_encrypted=encrypt("kill-secret"),
        )
        logs = [
            NotificationLog.create(
                rule=rule,
                organization=org,
                event_key=f"reliability-kill:{i}",
                payload={"type": "pull_request.opened", "data": {"number": i}},
                next_attempt_at=utcnow(),
            ).id
            for i in range(12)
        ]
        worker = rstack.start_worker(
            "notify", NOTIFICATIONS_TIMEOUT_SECONDS=30, NOTIFICATIONS_LEASE_SECONDS=600
        )
        wait_until(lambda: len(receiver.requests) >= 4, timeout=30, what="the 4th delivery")
        kill(worker)
        receiver.release.set()  # the hung request ends without an answer
        mine = NotificationLog.id.in_(logs)
        stranded = (
            NotificationLog.update(locked_until=utcnow() - PAST)
            .where(mine, NotificationLog.status == "SENDING")
            .execute()
        )
        assert stranded > 0
        rstack.start_worker("notify")
        wait_until(
            lambda: (
                NotificationLog.select().where(mine, NotificationLog.status != "SENT").count() == 0
            ),
            timeout=60,
            interval=0.5,
            what="every notification sent",
        )
        received = Counter(r.headers["X-DevMetrics-Delivery"] for r in receiver.requests)
        cut_short = received[receiver.requests[3].headers["X-DevMetrics-Delivery"]]
    # Every delivery reached the receiver under its own id; only the one cut short by the
    # kill came twice, with the same id, so a receiver deduplicating on it applies it once.
    assert set(received) == {str(i) for i in logs}
    assert cut_short == 2 and sum(received.values()) == len(logs) + 1
    record(
        "3 worker SIGKILL: notify delivery",
        "notify worker killed mid-delivery, "
        "restarted: every notification SENT, one delivery id each",
        passed=True,
        load=len(logs),
        faults=1,
        rows_lost=len(logs) - len(received),
        detail="the interrupted delivery was repeated under the same X-DevMetrics-Delivery",
    )
