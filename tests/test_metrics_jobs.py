"""How recomputes are asked for and run: the inbox message, the scheduled pass, the CLI."""

from __future__ import annotations

import datetime as dt

import pytest

from services.metrics import logic
from shared.models import Job, Organization, TeamMetric
from shared.outbox import MessageRejected
from shared.worker import run_batch
from tests.conftest import run_cli
from tests.metrics_history import History, at


def test_an_activity_message_becomes_one_recompute_job_applied_once(tx):
    h = History()
    h.pr(1, "alice", "2026-05-04 09:00", merged="2026-05-04 12:00")
    message = {
        "organization_id": h.org.id,
        "repository_id": h.repo.id,
        "dates": ["2026-05-04"],
        "pull_request_ids": [],
    }
    logic.on_activity_changed(message, "m-1")
    logic.on_activity_changed(message, "m-1")  # the same message again: still one job
    assert Job.select().where(Job.queue == logic.RECOMPUTE_QUEUE).count() == 1
    assert run_batch(logic.RECOMPUTE_QUEUE, logic.run_recompute_job, "test-worker") == 1
    row = TeamMetric.get(
        (TeamMetric.organization == h.org) & (TeamMetric.date == dt.date(2026, 5, 4))
    )
    assert (row.prs_opened, row.prs_merged, row.cycle_time_median_s) == (1, 1, 3 * 3600)
    with pytest.raises(MessageRejected, match="repository_id"):
        logic.on_activity_changed({"organization_id": h.org.id, "dates": []}, "m-2")
    with pytest.raises(MessageRejected):
        logic.on_activity_changed({**message, "dates": ["yesterday"]}, "m-3")
    with pytest.raises(MessageRejected, match="event_types"):
        logic.on_activity_changed({**message, "event_types": [7]}, "m-4")
    # The event types behind a change reach the job (the engine narrows by them).
    logic.on_activity_changed({**message, "event_types": ["pull_request_review"] * 2}, "m-5")
    job = Job.get(Job.dedupe_key == "message:m-5")
    assert job.payload["event_types"] == ["pull_request_review"]


def test_the_scheduled_pass_runs_once_per_slot_for_today_and_yesterday(tx):
    h = History()
    h.deployment("2026-05-04 09:00", "SUCCESS", "2026-05-04 09:10")
    now = at("2026-05-06 10:00")
    assert logic.schedule_recent(now, every_seconds=900) >= 1
    logic.schedule_recent(now + dt.timedelta(minutes=5), every_seconds=900)  # same slot
    jobs = list(
        Job.select().where((Job.queue == logic.RECOMPUTE_QUEUE) & (Job.organization == h.org))
    )
    assert len(jobs) == 1
    assert jobs[0].payload["dates"] == ["2026-05-05", "2026-05-06"]
    logic.schedule_recent(now + dt.timedelta(minutes=16), every_seconds=900)  # next slot
    assert Job.select().where(Job.organization == h.org).count() == 2
    # Orgs without repositories have nothing to recompute.
    empty = Organization.create(name="empty", slug="empty")
    assert not Job.select().where(Job.organization == empty).exists()


def test_recompute_command_rebuilds_an_organization(fresh_database_url):
    assert run_cli("db", "migrate", database_url=fresh_database_url).returncode == 0
    assert run_cli("db", "seed", database_url=fresh_database_url).returncode == 0
    done = run_cli("metrics", "recompute", "--org", "techcorp", database_url=fresh_database_url)
    assert done.returncode == 0, done.stderr
    assert "techcorp: recomputed 2026-11-02 to" in done.stdout
    since = run_cli(
        "metrics",
        "recompute",
        "--org",
        "techcorp",
        "--since",
        "2026-11-03",
        database_url=fresh_database_url,
    )
    assert since.returncode == 0 and "recomputed 2026-11-03 to" in since.stdout
    empty = run_cli(
        "metrics", "recompute", "--org", "alice-personal", database_url=fresh_database_url
    )
    assert empty.returncode == 0 and "no activity yet" in empty.stdout
    unknown = run_cli("metrics", "recompute", "--org", "nope", database_url=fresh_database_url)
    assert unknown.returncode != 0 and "no organization 'nope'" in unknown.stderr
