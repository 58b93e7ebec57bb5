"""Item 5: SIGTERM to gunicorn under load (what `docker stop` does): requests in flight get
their answer, nothing is half-written (every stored event has its delivery record, every
accepted delivery is stored), and what was refused is stored once when GitHub redelivers."""

from __future__ import annotations

import copy
import hashlib
import json
import signal
import threading
import time

import requests

from shared import outbox
from shared.database import db
from shared.models import Event, EventDelivery, Job, JobStatus, Organization
from tests.helpers import wait_until
from tests.reliability.conftest import (
    REPO_GITHUB_ID,
    Delivery,
    DeliveryMaker,
    Outcome,
    send,
    send_all,
)
from tests.reliability.report import record

SENDERS = 8


def big_push(maker: DeliveryMaker, commits: int = 1500) -> Delivery:
    """A delivery that takes the service a while (about a megabyte to verify and store):
    sent just before the signal, so a request is surely in flight when it arrives."""
    payload = copy.deepcopy(maker.push)
    template = payload["commits"][0]
    payload["commits"] = []
    for n in range(commits):
        commit = dict(template, id=hashlib.sha1(f"{maker.run}-big-{n}".encode()).hexdigest())
        payload["commits"].append(commit)
    body = json.dumps(payload).encode()
    return Delivery(f"big-{maker.run}", "push", body)


def test_sigterm_under_load_finishes_in_flight_requests(rstack):
    gunicorn = rstack.start("activity", WEB_CONCURRENCY=2)
    base = rstack.url("activity")
    maker = DeliveryMaker()
    outcomes: list[tuple[float, Outcome]] = []  # (sent at, outcome)
    lock = threading.Lock()
    refused = threading.Event()

    def sender():
        while not refused.is_set():
            delivery = maker.next()
            started = time.monotonic()
            try:
                status, error = send(base, delivery, timeout=30).status_code, ""
            except requests.ConnectionError as exc:
                status, error = None, type(exc).__name__
            with lock:
                outcomes.append(
                    (started, Outcome(delivery, status, time.monotonic() - started, error))
                )
            if status is None:
                refused.set()  # the listener is gone: the shutdown is under way

    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    big = big_push(maker)
    big_result: dict = {}
    big_thread = threading.Thread(
        target=lambda: big_result.update(
            response=send(base, big, timeout=30), done_at=time.monotonic()
        )
    )
    big_thread.start()
    time.sleep(0.05)
    term_at = time.monotonic()
    gunicorn.send_signal(signal.SIGTERM)  # to the master only, as a container runtime does
    big_thread.join(40)
    refused.wait(30)
    for t in threads:
        t.join(40)
    exit_code = gunicorn.wait(40)
    rstack.processes.pop("activity")

    answered = [o for _, o in outcomes if o.status is not None]
    in_flight = [o for sent, o in outcomes if sent < term_at and sent + o.seconds > term_at]
    in_flight += [big] if big_result["done_at"] > term_at else []
    assert in_flight, "no request was in flight at the signal: nothing was tested"
    assert big_result["response"].status_code == 202
    assert exit_code == 0
    assert {o.status for o in answered} == {202}, {o.status for o in answered}
    accepted = {o.delivery.delivery_id for o in answered} | {big.delivery_id}

    with rstack.db():
        events = {
            e.delivery_id: e
            for e in Event.select().where(
                Event.repository_id.in_(
                    Event.select(Event.repository_id).where(Event.delivery_id == big.delivery_id)
                )
            )
        }
        records = {
            d
            for (d,) in EventDelivery.select(EventDelivery.delivery_id)
            .where(EventDelivery.delivery_id.in_(list(events)))
            .tuples()
        }
        stored_big = events[big.delivery_id].payload
    lost = accepted - set(events)
    half_written = set(events) ^ records
    assert lost == set() and half_written == set()
    assert len(stored_big["commits"]) == 1500 and stored_big["repository"]["id"] == REPO_GITHUB_ID

    # The same service comes back; GitHub redelivers what got no answer: stored once.
    rstack.start("activity")
    unanswered = [o.delivery for _, o in outcomes if o.status is None]
    again = send_all(base, unanswered, senders=4)
    assert {o.status for o in again} <= {200, 202}
    with rstack.db():
        sent = [o.delivery.delivery_id for _, o in outcomes] + [big.delivery_id]
        assert Event.select().where(Event.delivery_id.in_(sent)).count() == len(sent)
        assert EventDelivery.select().where(EventDelivery.delivery_id.in_(sent)).count() == len(
            sent
        )
    record(
        "5 SIGTERM under load",
        f"SIGTERM to gunicorn under {SENDERS} senders: in-flight requests answered, "
        "exit 0, nothing half-written",
        passed=True,
        load=len(outcomes) + 1,
        faults=1,
        rows_lost=len(lost),
        detail=f"{len(in_flight)} requests in flight at the signal, "
        f"{len(unanswered)} refused then redelivered",
    )


def test_sigterm_stops_a_worker_after_its_current_job(rstack):
    """A worker's batch against a service that is down takes seconds per job: SIGTERM ends
    it after the current job and hands the rest of the batch back, unattempted."""
    assert "notifications" not in rstack.processes  # down: every attempt fails slowly
    with rstack.db(), db.atomic():
        org = Organization.get(Organization.slug == "techcorp")
        ids = [
            outbox.publish(
                "notifications",
                "event",
                {"type": "pull_request.opened", "organization_id": org.id, "key": f"t{i}"},
                organization=org,
            )
            for i in range(10)
        ]
    mine = (Job.queue == "outbox") & Job.dedupe_key.in_(ids)
    worker = rstack.start_worker("outbox")

    def first_attempt_failed():
        with rstack.db():
            return Job.select().where(mine, Job.last_error.is_null(False)).exists()

    wait_until(first_attempt_failed, timeout=30, what="the first attempt to fail")
    worker.send_signal(signal.SIGTERM)
    # Bound: the whole batch would take ~15 s more; one job at most takes ~2 s.
    assert worker.wait(10) == 0
    with rstack.db():
        jobs = list(Job.select().where(mine))
    assert {j.status for j in jobs} == {JobStatus.PENDING}
    assert {j.locked_until for j in jobs} == {None}  # none left leased
    attempted = [j for j in jobs if j.attempts]
    untouched = [j for j in jobs if not j.attempts]
    assert all(j.last_error for j in attempted) and untouched, [j.attempts for j in jobs]
    assert all(j.last_error is None for j in untouched)
    record(
        "5 SIGTERM under load",
        "SIGTERM to a worker mid-batch: exits after its current job, the rest released",
        passed=True,
        load=len(jobs),
        faults=1,
        rows_lost=0,
        detail=f"{len(attempted)} attempted, {len(untouched)} handed back unattempted",
    )
