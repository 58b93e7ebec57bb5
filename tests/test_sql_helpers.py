"""shared.sql's bulk insert (COPY on PostgreSQL, with its own text format), its prepared
statements and its planner setting: the rows and answers are the same as the plain way's."""

from __future__ import annotations

import datetime as dt

import psycopg2.extras
import pytest

from shared.database import db
from shared.models import Organization, PullRequest, Repository, TeamMetric
from shared.sql import PreparedStatement, _copy_text, insert_rows, is_postgres, without_bitmap_scans

AWKWARD_TEXT = [
    "tab\there",
    "new\nline and \r carriage",
    "back\\slash \\N and \\.",
    "\\.",
    "",
    "ünïcødé ✓ 🚀",
    "quote ' and \" and %s and %(x)s",
]


@pytest.fixture
def copy_only(monkeypatch):
    """On PostgreSQL these rows go through COPY: execute_values would fail the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("execute_values used where COPY should be")

    monkeypatch.setattr(psycopg2.extras, "execute_values", refuse)


@pytest.fixture
def repo(tx):
    org = Organization.create(name="sql", slug="sql-helpers")
    return Repository.create(organization=org, full_name="o/sql", github_id=991)


def test_bulk_insert_keeps_every_value_exactly(repo, copy_only):
    created = dt.datetime(2026, 11, 26, 7, 30, 15, 123456, tzinfo=dt.UTC)
    rows = [
        {
            "repository": repo.id,
            "organization": repo.organization_id,
            "number": n,
            "title": text,
            "body": None if n % 2 else text,
            "author_is_bot": n % 3 == 0,
            "base_ref": "main",
            "head_ref": f"feature/{n}",
            "created_at": created + dt.timedelta(days=n),
            "coding_s": [0.1, 1e-30, 12345.5, None, -0.0, 3.0, 2.5e10][n],
            "additions": 2**31 - 1 - n,
        }
        for n, text in enumerate(AWKWARD_TEXT)
    ]
    insert_rows(PullRequest, rows)
    stored = {pr.number: pr for pr in PullRequest.select().where(PullRequest.repository == repo.id)}
    assert sorted(stored) == list(range(len(AWKWARD_TEXT)))
    for row in rows:
        pr = stored[row["number"]]
        assert pr.title == row["title"]
        assert pr.body == row["body"]
        assert pr.author_is_bot is row["author_is_bot"]
        assert pr.created_at == row["created_at"]
        assert pr.additions == row["additions"]
        if row["coding_s"] is None:
            assert pr.coding_s is None
        else:  # a `real` column on PostgreSQL: as the plain INSERT stores it
            assert pr.coding_s == pytest.approx(row["coding_s"], rel=1e-6)


def test_copy_text_escapes_and_declines_what_it_cannot_format():
    text = _copy_text([("a\tb", None, True, 1.5, dt.date(2026, 1, 2))]).read()
    assert text == "a\\tb\t\\N\tt\t1.5\t2026-01-02\n"
    # An aware datetime (its offset would be dropped by a `timestamp` column) or an adapter
    # object: None, and insert_rows takes the execute_values path instead.
    assert _copy_text([(dt.datetime(2026, 1, 1, tzinfo=dt.UTC),)]) is None
    assert _copy_text([(object(),)]) is None


def test_daily_rows_inserted_in_bulk_read_back_equal(repo, copy_only):
    days = [dt.date(2026, 1, 1) + dt.timedelta(days=n) for n in range(40)]
    rows = [
        {
            "organization": repo.organization_id,
            "date": day,
            "commits": n,
            "cycle_time_median_s": None if n % 4 == 0 else n * 1.25,
        }
        for n, day in enumerate(days)
    ]
    insert_rows(TeamMetric, rows)
    stored = list(
        TeamMetric.select(TeamMetric.date, TeamMetric.commits, TeamMetric.cycle_time_median_s)
        .where(TeamMetric.organization == repo.organization_id)
        .order_by(TeamMetric.date)
        .tuples()
    )
    assert stored == [(r["date"], r["commits"], r["cycle_time_median_s"]) for r in rows]


def test_prepared_statement_is_prepared_once_per_connection(tx):
    if not is_postgres():
        pytest.skip("PREPARE: PostgreSQL")
    statement = PreparedStatement("test_add_numbers", "SELECT %(a)s::int + %(b)s::int, %(a)s::int")
    assert statement.execute({"b": 2, "a": 40, "unused": 1}).fetchone() == (42, 40)
    assert statement.execute({"a": 1, "b": 1}).fetchone() == (2, 1)
    (prepared,) = db.execute_sql(
        "SELECT count(*) FROM pg_prepared_statements WHERE name = 'test_add_numbers'"
    ).fetchone()
    assert prepared == 1
    db.execute_sql("DEALLOCATE test_add_numbers")


def test_bitmap_scans_are_off_inside_the_block_only(tx):
    if not is_postgres():
        pytest.skip("planner settings: PostgreSQL")

    def setting():
        return db.execute_sql("SELECT current_setting('enable_bitmapscan')").fetchone()[0]

    assert setting() == "on"
    with without_bitmap_scans():
        assert setting() == "off"
    assert setting() == "on"
