"""Retention: policies per organization within bounds, exact counts in a dry run, bounded
batch deletes that spare unprocessed events and metric tables, an audit entry per run, the
daily scheduled pass and the `devmetrics retention run` command."""

import datetime as dt

import peewee as pw
import pytest

from devmetrics import retention
from devmetrics import workers as worker
from shared import partitions
from shared.config import RETENTION_BOUNDS, ConfigError, Settings
from shared.models import (
    AIReview,
    AuditLog,
    Commit,
    Deployment,
    DeveloperMetric,
    Event,
    EventDelivery,
    Issue,
    Job,
    Organization,
    PullRequest,
    Repository,
    Review,
    TeamMetric,
    utcnow,
)
from tests.conftest import connect, run_cli

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)

# What make_old_rows() leaves expired, by hand: techcorp keeps events 30 days and audit
# entries 400 days (its settings); startup-inc and rows of no organization use the defaults
# (events 90, activity 365, audit 365).
EXPECTED = {
    "events": {"techcorp": 3, "startup-inc": 1, "-": 1},
    "commits": {"techcorp": 1},
    "reviews": {"techcorp": 1},
    "pull_requests": {"techcorp": 1},
    "issues": {"techcorp": 1},
    "deployments": {"startup-inc": 1},
    "audit_logs": {"techcorp": 1, "startup-inc": 1, "-": 1},
}
EXPECTED_TOTAL = 13  # 5 events, 5 activity rows, 3 audit entries


def days_ago(now: dt.datetime, days: int) -> dt.datetime:
    return now - dt.timedelta(days=days)


def make_old_rows(now: dt.datetime) -> None:
    """Old rows on top of the seed (whose activity is from early November 2026)."""
    techcorp = Organization.get(Organization.slug == "techcorp")
    startup = Organization.get(Organization.slug == "startup-inc")
    techcorp.settings = {**techcorp.settings, "retention_events_days": 30}
    techcorp.settings["retention_audit_days"] = 400
    techcorp.save()
    api = Repository.get(Repository.full_name == "techcorp/api-server")
    mobile = Repository.get(Repository.full_name == "startup-inc/mobile-app")

    events = [
        # org, repository, days old, status: expired?
        (techcorp, api, 40, "PROCESSED"),  # yes (techcorp: 30 days)
        (techcorp, api, 40, "PENDING"),  # no: not processed yet
        (techcorp, api, 100, "FAILED"),  # no: will be retried
        (techcorp, api, 100, "PROCESSING"),  # no
        (techcorp, api, 100, "DEAD"),  # yes
        (techcorp, api, 100, "SKIPPED"),  # yes
        (techcorp, api, 20, "PROCESSED"),  # no
        (startup, mobile, 40, "PROCESSED"),  # no (default 90 days)
        (startup, mobile, 100, "PROCESSED"),  # yes
        (None, None, 100, "PROCESSED"),  # yes (no organization: default)
        (None, None, 10, "PROCESSED"),  # no
    ]
    Event.insert_many(
        [
            {
                "delivery_id": f"old-{i}",
                "event_type": "push",
                "organization": org,
                "repository": repo,
                "received_at": days_ago(now, age),
                "status": status,
            }
            for i, (org, repo, age, status) in enumerate(events)
        ]
    ).execute()

    for sha, age in (("old-commit", 400), ("recent-commit", 300)):
        Commit.create(
            repository=api,
            organization=techcorp,
            sha=sha,
            authored_at=days_ago(now, age),
            committed_at=days_ago(now, age),
        )

    def pull_request(number, state, closed_age, created_age=500):
        return PullRequest.create(
            repository=api,
            organization=techcorp,
            number=number,
            state=state,
            base_ref="main",
            head_ref=f"old/{number}",
            created_at=days_ago(now, created_age),
            closed_at=None if closed_age is None else days_ago(now, closed_age),
            merged_at=days_ago(now, closed_age) if state == "MERGED" else None,
        )

    expired = pull_request(901, "MERGED", 400)  # deleted, with its old review
    Review.create(
        pull_request=expired,
        organization=techcorp,
        kind="REVIEW",
        github_id=9901,
        submitted_at=days_ago(now, 401),
    )
    with_ai_review = pull_request(902, "CLOSED", 400)  # kept: AI reviews are metrics
    AIReview.create(
        pull_request=with_ai_review,
        organization=techcorp,
        head_sha="abc",
        provider="heuristic",
        risk_score=10,
        risk_level="LOW",
    )
    pull_request(903, "OPEN", None)  # kept: still open
    late_comment = pull_request(904, "CLOSED", 400)  # kept: a comment is recent
    Review.create(
        pull_request=late_comment,
        organization=techcorp,
        kind="ISSUE_COMMENT",
        github_id=9904,
        submitted_at=days_ago(now, 100),
    )

    Issue.create(
        repository=api,
        organization=techcorp,
        number=901,
        state="CLOSED",
        created_at=days_ago(now, 500),
        closed_at=days_ago(now, 400),
    )
    Issue.create(
        repository=api, organization=techcorp, number=902, created_at=days_ago(now, 500)
    )  # open: kept
    for github_id, age in ((9901, 400), (9902, 200)):
        Deployment.create(
            repository=mobile,
            organization=startup,
            github_id=github_id,
            environment="production",
            sha="abc",
            created_at=days_ago(now, age),
        )

    AuditLog.insert_many(
        [
            {"organization": org, "action": "old.entry", "created_at": days_ago(now, age)}
            for org, age in (
                (techcorp, 380),  # kept (techcorp: 400 days)
                (techcorp, 500),  # deleted
                (startup, 380),  # deleted (default 365)
                (None, 366),  # deleted
                (None, 300),  # kept
            )
        ]
    ).execute()


def nonzero(report) -> dict:
    return {
        table: {org: n for org, n in orgs.items() if n}
        for table, orgs in report.by_table().items()
        if any(orgs.values())
    }


def table_counts(models) -> dict:
    return {model._meta.table_name: model.select().count() for model in models}


ALL_TABLES = (Event, Commit, Review, PullRequest, Issue, Deployment, AuditLog)
METRIC_TABLES = (DeveloperMetric, TeamMetric, AIReview)


def test_seed_alone_has_nothing_expired(seeded):
    report = retention.run(dry_run=True, now=NOW, settings=Settings())
    assert report.total == 0
    assert report.lines() == ["0 row(s) would delete (dry run)"]


def test_dry_run_counts_exactly_and_changes_nothing(seeded):
    make_old_rows(NOW)
    before = table_counts(ALL_TABLES + METRIC_TABLES)

    report = retention.run(dry_run=True, now=NOW, settings=Settings())

    assert nonzero(report) == EXPECTED
    assert report.total == EXPECTED_TOTAL
    assert "events         techcorp                    3 would delete" in report.lines()
    assert table_counts(ALL_TABLES + METRIC_TABLES) == before
    assert not AuditLog.select().where(AuditLog.action == "retention.run").exists()


def test_run_deletes_what_the_dry_run_counted_in_small_batches(seeded):
    make_old_rows(NOW)
    metrics_before = table_counts(METRIC_TABLES)
    before = table_counts(ALL_TABLES)

    report = retention.run(now=NOW, settings=Settings(retention_batch_size=1))

    assert nonzero(report) == EXPECTED
    after = table_counts(ALL_TABLES)
    for table, orgs in EXPECTED.items():
        expected = before[table] - sum(orgs.values()) + (table == "audit_logs")
        assert after[table] == expected, table
    assert table_counts(METRIC_TABLES) == metrics_before
    # Unprocessed events all stay, whatever their age.
    assert sorted(
        Event.select(Event.status).where(Event.delivery_id.startswith("old-")).tuples()
    ) == sorted([("PENDING",), ("FAILED",), ("PROCESSING",)] + [("PROCESSED",)] * 3)
    kept_prs = {n for (n,) in PullRequest.select(PullRequest.number).tuples() if n > 900}
    assert kept_prs == {902, 903, 904}
    assert Review.select().where(Review.github_id == 9904).exists()

    entry = AuditLog.get(AuditLog.action == "retention.run")
    assert entry.organization is None
    assert entry.metadata["total"] == EXPECTED_TOTAL
    assert entry.metadata["deleted"] == EXPECTED

    again = retention.run(dry_run=True, now=NOW, settings=Settings())
    assert again.total == 0


def test_delivery_dedupe_goes_only_after_its_event_and_the_longest_policy(seeded):
    make_old_rows(NOW)  # techcorp keeps events 30 days; the longest policy is 90
    pending = Event.get(Event.status == "PENDING")
    EventDelivery.insert_many(
        [
            {
                "delivery_id": f"d-{i}",
                "event_id": event_id,
                "repository_id": pending.repository_id,
                "received_at": days_ago(NOW, age),
            }
            for i, (event_id, age) in enumerate(
                (
                    (999_999, 100),  # deleted: its event is gone and it is past 90 days
                    (pending.id, 100),  # kept: its event is still there
                    (999_998, 60),  # kept: within the longest events policy
                )
            )
        ]
    ).execute()

    report = retention.run(now=NOW, settings=Settings())

    assert nonzero(report)["event_deliveries"] == {"-": 1}
    assert sorted(d for (d,) in EventDelivery.select(EventDelivery.delivery_id).tuples()) == [
        "d-1",
        "d-2",
    ]


def test_organization_settings_are_clamped_to_the_bounds(seeded):
    make_old_rows(NOW)
    startup = Organization.get(Organization.slug == "startup-inc")
    # Written around the API's validation: 1 day becomes the minimum 7, so only the
    # 40-day-old event goes on top of the 100-day-old one.
    startup.settings = {"retention_events_days": 1, "retention_audit_days": "x"}
    startup.save()

    report = retention.run(dry_run=True, now=NOW, settings=Settings())

    assert report.by_table()["events"]["startup-inc"] == 2
    assert report.by_table()["audit_logs"]["startup-inc"] == 1  # the default 365


def test_env_settings_have_bounds():
    settings = Settings.from_env({"RETENTION_EVENTS_DAYS": "30", "RETENTION_AUDIT_DAYS": "730"})
    assert (settings.retention_events_days, settings.retention_audit_days) == (30, 730)
    assert Settings.from_env({}).retention_activity_days == 365
    for name, value in (
        ("RETENTION_EVENTS_DAYS", "6"),
        ("RETENTION_ACTIVITY_DAYS", "364"),
        ("RETENTION_AUDIT_DAYS", "2558"),
        ("RETENTION_AUDIT_DAYS", "364"),
        ("RETENTION_BATCH_SIZE", "0"),
    ):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: value})


@pytest.mark.postgres_only
def test_audit_deletes_need_the_retention_switch(seeded):
    make_old_rows(NOW)
    with pytest.raises(pw.DatabaseError, match="append-only"), seeded.atomic():
        AuditLog.delete().where(AuditLog.action == "old.entry").execute()


@pytest.mark.postgres_only
def test_the_database_never_deletes_an_audit_entry_younger_than_the_least_policy(seeded):
    # The floor is written into migration 012's functions: the least audit policy.
    assert RETENTION_BOUNDS["audit"][0] == 365
    now = seeded.execute_sql("SELECT now() AT TIME ZONE 'UTC'").fetchone()[0]
    startup = Organization.get(Organization.slug == "startup-inc")
    for age in (364, 366):
        AuditLog.create(
            organization=startup, action=f"aged.{age}", created_at=now - dt.timedelta(days=age)
        )
    partitions.ensure_partitions(today=(now - dt.timedelta(days=366)).date())

    # Asked for everything up to now, it deletes what is older than 365 days only.
    asked = seeded.execute_sql(
        "SELECT devmetrics_delete_expired_audit_logs(%s, %s, 1000)", (startup.id, now)
    ).fetchone()[0]

    assert asked == 1
    assert [e.action for e in AuditLog.select().where(AuditLog.action.startswith("aged."))] == [
        "aged.364"
    ]
    young = partitions.partition_name("audit_logs", (now - dt.timedelta(days=364)).date())
    with pytest.raises(pw.DatabaseError, match="is not older than 365 days"), seeded.atomic():
        partitions.drop_partition(young)
    assert young in partitions.partitions("audit_logs")


def test_daily_pass_runs_once_a_day(seeded, monkeypatch):
    assert worker.WORKERS["retention"] == ("devmetrics.retention:scheduled_batch", None)
    monkeypatch.setattr(retention, "_last_schedule", 0.0)
    make_old_rows(utcnow())

    assert worker.batch_for("retention")("test-worker", 10) == 1

    runs = AuditLog.select().where(AuditLog.action == "retention.run")
    assert runs.count() == 1
    assert runs.get().metadata["total"] == EXPECTED_TOTAL
    job = Job.get(Job.queue == "retention")
    assert job.dedupe_key == f"daily:{utcnow().date().isoformat()}"
    assert job.status == "DONE"

    # Later the same day (another poll, or another worker): no second pass.
    monkeypatch.setattr(retention, "_last_schedule", 0.0)
    assert retention.scheduled_batch("other-worker") == 0
    assert runs.count() == 1
    assert Job.select().where(Job.queue == "retention").count() == 1


BOUND_MODELS = (Organization, Repository, *ALL_TABLES, AIReview)


def test_cli_dry_run_then_run(fresh_database_url):
    assert run_cli("db", "migrate", database_url=fresh_database_url).returncode == 0
    assert run_cli("db", "seed", database_url=fresh_database_url).returncode == 0
    database = connect(fresh_database_url)
    now = utcnow()
    with database.bind_ctx(BOUND_MODELS), database.atomic():
        make_old_rows(now)
    database.close()

    dry = run_cli("retention", "run", "--dry-run", database_url=fresh_database_url)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        "events         startup-inc                 1 would delete",
        "events         techcorp                    3 would delete",
        "events         -                           1 would delete",
        "commits        techcorp                    1 would delete",
        "reviews        techcorp                    1 would delete",
        "pull_requests  techcorp                    1 would delete",
        "issues         techcorp                    1 would delete",
        "deployments    startup-inc                 1 would delete",
        "audit_logs     startup-inc                 1 would delete",
        "audit_logs     techcorp                    1 would delete",
        "audit_logs     -                           1 would delete",
        f"{EXPECTED_TOTAL} row(s) would delete (dry run)",
    ]

    done = run_cli("retention", "run", database_url=fresh_database_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"{EXPECTED_TOTAL} row(s) deleted"
    assert "events         techcorp                    3 deleted" in done.stdout

    database = connect(fresh_database_url)
    with database.bind_ctx(BOUND_MODELS):
        assert AuditLog.select().where(AuditLog.action == "retention.run").count() == 1
        assert Event.select().where(Event.status == "PENDING").count() == 1
    database.close()
    again = run_cli("retention", "run", "--dry-run", database_url=fresh_database_url)
    assert again.stdout.splitlines() == ["0 row(s) would delete (dry run)"]


@pytest.mark.postgres_only
def test_expired_partitions_are_dropped_whole(seeded):
    make_old_rows(NOW)
    techcorp = Organization.get(Organization.slug == "techcorp")
    startup = Organization.get(Organization.slug == "startup-inc")
    Event.insert_many(
        [
            {
                "delivery_id": f"older-{i}",
                "event_type": "push",
                "organization": org,
                "received_at": days_ago(NOW, age),
                "status": status,
            }
            for i, (org, age, status) in enumerate(
                (
                    (techcorp, 200, "PROCESSED"),  # May 2026: the whole month expired
                    (startup, 200, "SKIPPED"),
                    (techcorp, 250, "PENDING"),  # March 2026: kept, so is its partition
                    (startup, 250, "PROCESSED"),  # deleted as a row
                )
            )
        ]
    ).execute()
    partitions.ensure_partitions(today=NOW.date())
    assert {"events_2026_05", "events_2026_03", "audit_logs_2025_07"} <= set(
        partitions.partitions("events") + partitions.partitions("audit_logs")
    )
    expected = {
        **EXPECTED,
        "events": {"techcorp": 4, "startup-inc": 3, "-": 1},
    }

    dry = retention.run(dry_run=True, now=NOW, settings=Settings())
    assert nonzero(dry) == expected
    assert sorted((t, o, n, p) for t, o, n, p in dry.rows if p) == [
        ("audit_logs", "techcorp", 1, "audit_logs_2025_07"),
        ("events", "startup-inc", 1, "events_2026_05"),
        ("events", "techcorp", 1, "events_2026_05"),
    ]
    assert "events_2026_05" in partitions.partitions("events")

    done = retention.run(now=NOW, settings=Settings())
    assert nonzero(done) == expected
    assert "events_2026_05" not in partitions.partitions("events")
    assert "audit_logs_2025_07" not in partitions.partitions("audit_logs")
    assert "events_2026_03" in partitions.partitions("events")
    assert Event.get(Event.delivery_id == "older-2").status == "PENDING"
    assert not Event.select().where(Event.delivery_id == "older-3").exists()
    entry = AuditLog.get(AuditLog.action == "retention.run")
    assert entry.metadata["partitions"] == ["audit_logs_2025_07", "events_2026_05"]
