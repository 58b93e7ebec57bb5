"""Job queues: concurrent workers never claim the same job; leases expire; re-arming."""

import threading

import pytest

from shared import jobs, migrations
from shared.database import db
from shared.models import Job, JobStatus
from tests.helpers import bound_to


@pytest.fixture
def queue_db(fresh_database_url):
    with bound_to(fresh_database_url) as database:
        migrations.migrate(database)
        yield database


def test_concurrent_workers_claim_each_job_exactly_once(queue_db):
    for i in range(200):
        jobs.enqueue("q", {"n": i})
    claimed: list[int] = []
    lock = threading.Lock()
    errors = []

    def work(name):
        try:
            while batch := jobs.claim("q", name, limit=7):
                for job in batch:
                    assert jobs.complete(job)
                with lock:
                    claimed.extend(job.payload["n"] for job in batch)
        except Exception as exc:  # surfaced below; a thread's assert would be lost
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(claimed) == list(range(200))  # every job once, none twice
    assert jobs.counts("q") == {"DONE": 200}


def test_an_expired_lease_is_claimed_again_and_the_old_owner_cannot_finish(queue_db):
    jobs.enqueue("q", {"n": 1})
    (first,) = jobs.claim("q", "dead-worker", lease_seconds=0)
    (second,) = jobs.claim("q", "live-worker")
    assert second.id == first.id and second.attempts == 2
    assert not jobs.complete(first)  # the lease moved on
    assert jobs.complete(second)
    assert Job.get_by_id(first.id).status == JobStatus.DONE


def test_failures_back_off_then_go_dead(queue_db):
    jobs.enqueue("q", {"n": 1}, max_attempts=2)
    (job,) = jobs.claim("q", "w")
    assert jobs.fail(job, "boom") == JobStatus.PENDING
    assert jobs.claim("q", "w") == []  # not due until its backoff passed
    Job.update(run_at=job.created_at).where(Job.id == job.id).execute()
    (job,) = jobs.claim("q", "w")
    assert jobs.fail(job, "boom again") == JobStatus.DEAD
    dead = Job.get_by_id(job.id)
    assert dead.last_error == "boom again" and dead.finished_at is not None


def test_enqueue_with_a_dedupe_key_rearms_instead_of_duplicating(queue_db):
    jobs.enqueue("recompute", {"v": 1}, dedupe_key="org1:2026-11-02")
    (running,) = jobs.claim("recompute", "w")
    # New data arrives while it runs: the job is re-armed, and the running one cannot
    # mark it done, so the change is not lost.
    jobs.enqueue("recompute", {"v": 2}, dedupe_key="org1:2026-11-02")
    assert not jobs.complete(running)
    (again,) = jobs.claim("recompute", "w")
    assert again.id == running.id and again.payload == {"v": 2}
    assert Job.select().where(Job.queue == "recompute").count() == 1
