"""Monthly partitions of events and audit_logs on PostgreSQL; plain tables on SQLite."""

import datetime as dt
import hashlib
import hmac
import json

import pytest

from services.activity.logic import receive_webhook
from shared import migrations, partitions, schema
from shared.database import backend_name, db
from shared.models import MODELS, AuditLog, Event, EventDelivery, EventStatus, Repository
from tests.conftest import connect

UTC = dt.UTC


def _where(table: str, row_id: int) -> str:
    return db.execute_sql(
        f"SELECT tableoid::regclass::text FROM {table} WHERE id = %s", (row_id,)
    ).fetchone()[0]


def _event(received_at, delivery_id="d", **extra) -> Event:
    return Event.create(
        delivery_id=delivery_id, event_type="push", received_at=received_at, **extra
    )


@pytest.mark.postgres_only
def test_migration_on_populated_tables_keeps_every_row(fresh_database_url):
    database = connect(fresh_database_url)
    migrations.migrate(database, "008_notification_delivery")
    times = [
        dt.datetime(2025, 12, 31, 23, 59, 59),
        dt.datetime(2026, 1, 1, 0, 0, 0),
        dt.datetime(2026, 1, 15, 12, 0, 0),
    ]
    with database.bind_ctx([Event, AuditLog]):
        for i, t in enumerate(times):
            Event.create(delivery_id=f"d-{i}", event_type="push", received_at=t)
            AuditLog.create(action=f"a-{i}", created_at=t)
    before = database.execute_sql("SELECT id, delivery_id, received_at FROM events").fetchall()

    migrations.migrate(database)

    after = database.execute_sql("SELECT id, delivery_id, received_at FROM events").fetchall()
    assert sorted(after) == sorted(before) and len(after) == 3
    assert database.execute_sql("SELECT count(*) FROM audit_logs").fetchone()[0] == 3
    kinds = dict(
        database.execute_sql(
            "SELECT relname, relkind FROM pg_class WHERE relname IN ('events', 'audit_logs')"
        ).fetchall()
    )
    assert kinds == {"events": "p", "audit_logs": "p"}
    placed = database.execute_sql(
        "SELECT tableoid::regclass::text, count(*) FROM events GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert placed == [("events_2025_12", 1), ("events_2026_01", 2)]
    deliveries = database.execute_sql(
        "SELECT delivery_id, event_id FROM event_deliveries ORDER BY delivery_id"
    ).fetchall()
    assert deliveries == sorted((delivery, event_id) for event_id, delivery, _ in before)
    assert schema.verify(MODELS, database) == []
    # The id sequence survived the rebuild and keeps counting.
    with database.bind_ctx([Event]):
        new = Event.create(delivery_id="d-new", event_type="push")
    assert new.id == max(r[0] for r in before) + 1
    # Still append-only, in every partition.
    with pytest.raises(Exception, match="append-only"), database.atomic():
        database.execute_sql("DELETE FROM audit_logs")
    with pytest.raises(Exception, match="append-only"), database.atomic():
        database.execute_sql("TRUNCATE audit_logs_2026_01")

    # Back to before the partitioning (undoing the migrations that came after it too).
    while migrations.rollback(database) != "009_partition_event_tables":
        pass

    assert sorted(
        database.execute_sql("SELECT id, delivery_id, received_at FROM events").fetchall()
    ) == sorted([*before, (new.id, "d-new", new.received_at.replace(tzinfo=None))])
    assert database.execute_sql("SELECT count(*) FROM audit_logs").fetchone()[0] == 3
    kinds = dict(
        database.execute_sql(
            "SELECT relname, relkind FROM pg_class WHERE relname IN ('events', 'audit_logs')"
        ).fetchall()
    )
    assert kinds == {"events": "r", "audit_logs": "r"}
    with pytest.raises(Exception, match="append-only"), database.atomic():
        database.execute_sql("DELETE FROM audit_logs")
    migrations.migrate(database)
    assert schema.verify(MODELS, database) == []
    database.close()


@pytest.mark.postgres_only
def test_inserts_land_in_the_right_partition(tx):
    now = dt.datetime.now(UTC)
    month = partitions.partition_name("events", now.date())
    current = _event(now)
    assert _where("events", current.id) == month == partitions.partition_of("events", now)
    entry = AuditLog.create(action="x.test")
    assert _where("audit_logs", entry.id) == partitions.partition_of("audit_logs", now)
    assert _where("audit_logs", entry.id).startswith("audit_logs_20")

    # A month without its own partition waits in the default one until the pass creates it.
    old = _event(dt.datetime(2001, 3, 31, 23, 0, tzinfo=UTC))
    assert _where("events", old.id) == "events_default"
    created = partitions.ensure_partitions()
    assert "events_2001_03" in created
    assert _where("events", old.id) == "events_2001_03"
    assert _where("events", current.id) == month
    # Created ahead: this month and the three after it.
    ahead = partitions.partitions("events")
    year, mon = now.year, now.month
    for _ in range(4):
        assert f"events_{year:04d}_{mon:02d}" in ahead
        year, mon = (year + 1, 1) if mon == 12 else (year, mon + 1)
    assert partitions.ensure_partitions() == []


@pytest.mark.postgres_only
def test_time_range_query_touches_only_matching_partitions(tx):
    partitions.create_partition("events", dt.date(2001, 1, 1))
    partitions.create_partition("events", dt.date(2001, 2, 1))
    query = Event.select().where(
        (Event.received_at >= dt.datetime(2001, 2, 3, tzinfo=UTC))
        & (Event.received_at < dt.datetime(2001, 2, 10, tzinfo=UTC))
    )
    sql, params = query.sql()
    plan = "\n".join(r[0] for r in db.execute_sql("EXPLAIN " + sql, params).fetchall())
    assert "events_2001_02" in plan
    assert "events_2001_01" not in plan
    assert "events_default" not in plan


@pytest.mark.postgres_only
def test_expired_partitions_are_dropped_whole(tx):
    for month in (dt.date(2001, 1, 1), dt.date(2001, 2, 1)):
        partitions.create_partition("events", month)
        partitions.create_partition("audit_logs", month)
    for day in (1, 15, 31):
        _event(dt.datetime(2001, 1, day, tzinfo=UTC))
        AuditLog.create(action="x.old", created_at=dt.datetime(2001, 1, day, tzinfo=UTC))
    _event(dt.datetime(2001, 2, 1, tzinfo=UTC))

    assert partitions.expired_partitions("events", dt.date(2001, 2, 1)) == ["events_2001_01"]
    assert partitions.expired_partitions("events", dt.date(2001, 1, 31)) == []
    assert partitions.drop_partition("events_2001_01") == {None: 3}
    assert partitions.drop_partition("audit_logs_2001_01") == {None: 3}
    assert "events_2001_01" not in partitions.partitions("events")
    assert Event.select().where(Event.received_at < dt.datetime(2001, 2, 1)).count() == 0
    assert Event.select().where(Event.received_at < dt.datetime(2001, 3, 1)).count() == 1
    assert AuditLog.select().where(AuditLog.action == "x.old").count() == 0
    with pytest.raises(ValueError):
        partitions.drop_partition("events_default")
    with pytest.raises(ValueError):
        partitions.drop_partition("commits_2001_01")


def _deliver(repo: Repository, delivery_id: str, monkeypatch):
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "partition-test-secret")
    raw = json.dumps(
        {
            "ref": "refs/heads/main",
            "repository": {"id": repo.github_id, "full_name": repo.full_name},
        }
    ).encode()
    digest = hmac.new(b"partition-test-secret", raw, hashlib.sha256).hexdigest()
    headers = {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery_id,
        "X-GitHub-Hook-ID": "4242",
        "X-Hub-Signature-256": f"sha256={digest}",
        "Content-Type": "application/json",
    }
    return receive_webhook(raw, headers)


def test_redelivery_dedupe_is_exact_across_a_month_boundary(seeded, monkeypatch):
    repo = Repository.select().where(Repository.github_id.is_null(False)).first()
    first = _deliver(repo, "5f1e-boundary", monkeypatch)
    assert first.status == 202
    # The original arrived last month (another partition on PostgreSQL); GitHub redelivers now.
    event = Event.get(Event.delivery_id == "5f1e-boundary")
    last_month = (dt.datetime.now(UTC).replace(day=1) - dt.timedelta(days=1)).replace(hour=23)
    Event.update(received_at=last_month).where(Event.id == event.id).execute()
    if backend_name() == "postgresql":
        assert _where("events", event.id) != partitions.partition_of("events", dt.datetime.now(UTC))

    again = _deliver(repo, "5f1e-boundary", monkeypatch)

    assert again.status == 200 and again.body["status"] == "duplicate"
    assert Event.select().where(Event.delivery_id == "5f1e-boundary").count() == 1
    assert [
        d.event_id
        for d in EventDelivery.select().where(EventDelivery.delivery_id == "5f1e-boundary")
    ] == [event.id]
    other = _deliver(repo, "5f1e-other", monkeypatch)
    assert other.status == 202


def test_sqlite_keeps_plain_tables(tx):
    if backend_name() != "sqlite":
        pytest.skip("SQLite behaviour")
    assert partitions.ensure_partitions() == []
    assert partitions.expired_partitions("events", dt.date(2100, 1, 1)) == []
    assert partitions.partitions("audit_logs") == []
    assert partitions.partition_of("events", dt.datetime.now(UTC)) == "events"
    event = _event(dt.datetime(2001, 1, 1, tzinfo=UTC))
    assert Event.get_by_id(event.id).status == EventStatus.PENDING
