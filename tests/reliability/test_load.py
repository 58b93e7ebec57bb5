"""Item 1: 20 concurrent senders, 5,000 signed deliveries of which 10 % are redeliveries
(same X-GitHub-Delivery, same body): one stored event per unique delivery, no 5xx, and once
the events worker is done every commit and pull request exists exactly once."""

from __future__ import annotations

import random

from shared.models import Commit, Event, EventDelivery, EventStatus, PullRequest, Repository
from tests.reliability.conftest import (
    REPO_GITHUB_ID,
    DeliveryMaker,
    send_all,
    statuses,
    wait_processed,
)
from tests.reliability.report import record

TOTAL = 5000
REDELIVERIES = TOTAL // 10
SENDERS = 20


def test_load_with_redeliveries_stores_each_delivery_once(rstack):
    rstack.start("activity", WEB_CONCURRENCY=2)
    rstack.start_worker("events")
    maker = DeliveryMaker()
    unique = [maker.next() for _ in range(TOTAL - REDELIVERIES)]
    # Each redelivery is queued after its original (some race with it: both must hold).
    order = list(unique)
    for original in random.Random(10).sample(unique, REDELIVERIES):
        position = order.index(original)
        order.insert(random.Random(position).randint(position + 1, len(order)), original)
    assert len(order) == TOTAL

    outcomes = send_all(rstack.url("activity"), order, senders=SENDERS)
    seen = statuses(outcomes)
    unanswered = [o.error for o in outcomes if o.status is None]
    server_errors = sum(n for status, n in seen.items() if status and status >= 500)
    throttled = seen.get(429, 0)
    if unanswered or server_errors or throttled:
        record(
            "1 load with redeliveries",
            "5,000 signed deliveries",
            passed=False,
            load=TOTAL,
            detail=f"statuses {dict(seen)}",
        )
    assert unanswered == [] and throttled == 0 and server_errors == 0, dict(seen)
    # A delivery is accepted once (202); its copies are answered "duplicate" (200).
    assert seen == {202: len(unique), 200: REDELIVERIES}, dict(seen)

    wait_processed(rstack, timeout=150)
    expected_commits = {sha for d in unique for sha in d.commits}
    expected_prs = {d.pull_request for d in unique if d.pull_request}
    with rstack.db():
        repo = Repository.get(Repository.github_id == REPO_GITHUB_ID)
        events = Event.select().where(Event.repository == repo)
        stored = [e.delivery_id for e in events]
        assert len(stored) == len(set(stored)) == len(unique)
        assert set(stored) == {d.delivery_id for d in unique}
        assert EventDelivery.select().where(EventDelivery.delivery_id.in_(stored)).count() == len(
            unique
        )
        assert {e.status for e in events} == {EventStatus.PROCESSED}
        commits = [
            sha for (sha,) in Commit.select(Commit.sha).where(Commit.repository == repo).tuples()
        ]
        prs = [
            n
            for (n,) in PullRequest.select(PullRequest.number)
            .where(PullRequest.repository == repo)
            .tuples()
        ]
    assert len(commits) == len(set(commits)) and set(commits) == expected_commits
    assert len(prs) == len(set(prs)) and set(prs) == expected_prs
    slowest = max(o.seconds for o in outcomes)
    record(
        "1 load with redeliveries",
        f"{SENDERS} senders, {TOTAL} deliveries ({REDELIVERIES} redeliveries): "
        "stored == unique, 0 5xx, commits/PRs once",
        passed=True,
        load=TOTAL,
        rows_lost=len(expected_commits - set(commits)) + len(expected_prs - set(prs)),
        detail=f"{len(expected_commits)} commits, {len(expected_prs)} PRs; "
        f"slowest answer {slowest:.1f}s",
    )
