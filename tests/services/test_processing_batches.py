"""The events worker processes a batch in one go (shared lookups, bulk writes) and falls back
to one savepoint per event when any event of the batch fails: both ways write the same rows,
and one bad event never holds back or half-writes the others."""

import json

import pytest

from services.activity import processing
from shared.models import (
    Commit,
    Deployment,
    Event,
    EventStatus,
    Issue,
    IssueClosure,
    PullRequest,
    Review,
)
from shared.sql import is_postgres
from tests.services import test_webhooks
from tests.services.test_webhooks import SUPPORTED, deliver, samples

activity = test_webhooks.activity  # the same fixture: the samples' repositories connected

ACTIVITY = (Commit, PullRequest, Review, Issue, IssueClosure, Deployment)


def drain():
    while processing.process_batch("test-worker", limit=200):
        pass


def deliver_every_sample(client):
    for event in SUPPORTED:
        for path in samples(event):
            assert deliver(client, event, path.read_bytes()).status_code in (200, 202)


def snapshot() -> dict:
    """Every activity row by its natural key, without surrogate ids and insertion times."""
    numbers = {pr.id: (pr.repository_id, pr.number) for pr in PullRequest.select()}
    issues = {i.id: (i.repository_id, i.number) for i in Issue.select()}
    rows = {}
    for model in ACTIVITY:
        found = []
        for row in model.select().dicts():
            row.pop("id")
            row.pop("ingested_at", None)
            if model in (Commit, Review, IssueClosure):
                row.pop("created_at", None)  # when the row was written
            if "pull_request" in row:
                row["pull_request"] = numbers[row["pull_request"]]
            if model is IssueClosure:
                row["issue"] = issues[row["issue"]]
            found.append(json.dumps(row, sort_keys=True, default=str))
        rows[model.__name__] = sorted(found)
    return rows


def refuse(events):
    raise RuntimeError("the batch path is off")


def test_a_batch_writes_what_processing_event_by_event_writes(activity, monkeypatch):
    deliver_every_sample(activity)
    with monkeypatch.context() as m:  # every batch takes the event-by-event path
        m.setattr(processing, "_process_together", refuse)
        drain()
    one_by_one = snapshot()
    assert all(one_by_one.values()), {k: len(v) for k, v in one_by_one.items()}

    for model in reversed(ACTIVITY):  # back to raw events, then all of them in one batch
        model.delete().execute()
    assert processing.replay() == Event.select().count()
    drain()

    assert snapshot() == one_by_one
    assert Event.select().where(Event.status == EventStatus.FAILED).count() == 0


def test_one_bad_event_fails_alone_and_leaves_nothing_half_written(activity):
    push = next(p for p in samples("push") if json.loads(p.read_bytes())["commits"])
    opened = next(p for p in samples("pull_request") if p.name == "opened.payload.json")
    broken = json.loads(samples("issues")[0].read_bytes())
    del broken["issue"]["number"]  # its handler raises midway
    deliver(activity, "push", push.read_bytes())
    deliver(activity, "issues", json.dumps(broken).encode())
    deliver(activity, "pull_request", opened.read_bytes())

    assert processing.process_batch("test-worker", limit=200) == 3

    statuses = {e.event_type: e.status for e in Event.select()}
    assert statuses == {
        "push": EventStatus.PROCESSED,
        "issues": EventStatus.FAILED,
        "pull_request": EventStatus.PROCESSED,
    }
    assert "number" in Event.get(Event.event_type == "issues").last_error
    assert Commit.select().count() == len(json.loads(push.read_bytes())["commits"])
    assert PullRequest.select().count() == 1
    assert Issue.select().count() == 0


def test_every_sample_takes_the_batch_path(activity, monkeypatch):
    # Falling back event by event writes the same rows: only this notices a batch path that
    # fails on sound events (and so runs at the speed of the fallback).
    deliver_every_sample(activity)

    def one_by_one(event, changes):
        raise AssertionError(f"batch path failed; {event.event_type} processed on its own")

    monkeypatch.setattr(processing, "process_one", one_by_one)
    drain()
    assert Event.select().where(Event.status == EventStatus.PENDING).count() == 0


def test_a_row_another_worker_inserted_first_retries_the_batch_not_event_by_event(
    activity, monkeypatch
):
    # Two workers with a backlog create the same new rows. The bulk insert (COPY, on the
    # driver's cursor) then fails on a unique key: the batch runs again with lookups that
    # see the other's row. Event by event, each event's savepoint would wait on the other
    # worker's locks (a deadlock timeout per event: 20 s stalls seen with two workers).
    if not is_postgres():
        pytest.skip("PostgreSQL: on SQLite new pull requests are inserted at once, not by COPY")
    opened = next(p for p in samples("pull_request") if p.name == "opened.payload.json")
    deliver(activity, "pull_request", opened.read_bytes())
    original_flush = processing.Batch.flush
    raced = []

    def flush_after_another_worker(batch):
        if not raced:
            pr = next(iter(batch.new_pull_requests.values()))
            row = {k: v for k, v in pr.__data__.items() if k != "id"}
            # The same pull request, as another worker would have inserted it.
            PullRequest.insert(row).execute()
            raced.append(pr.github_id)
        return original_flush(batch)

    def one_by_one(event, changes):
        raise AssertionError(f"conflict not retried; {event.event_type} processed on its own")

    monkeypatch.setattr(processing.Batch, "flush", flush_after_another_worker)
    monkeypatch.setattr(processing, "process_one", one_by_one)
    assert processing.process_batch("test-worker", limit=200) == 1
    assert raced
    assert Event.get().status == EventStatus.PROCESSED
    assert PullRequest.select().where(PullRequest.github_id == raced[0]).count() == 1
