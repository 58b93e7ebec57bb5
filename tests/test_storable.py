"""What a column can hold (shared/storable.py): the same refusal on PostgreSQL and SQLite,
naming the column, and which failures are permanent (a value that never fits) or may pass on
a retry. Real statements on the database under test."""

from __future__ import annotations

import datetime as dt

import pytest

from shared.models import Commit, Organization, PullRequest, Repository
from shared.sql import insert_rows, is_postgres
from shared.storable import Unstorable, unstorable_reason


@pytest.fixture
def repo(tx):
    org = Organization.create(name="Storable", slug="storable")
    return Repository.create(organization=org, github_id=1, full_name="o/storable")


def pull_request(repo, **fields) -> dict:
    return {
        "repository": repo.id,
        "organization": repo.organization_id,
        "number": 1,
        "title": "t",
        "author_login": "a",
        "base_ref": "main",
        "head_ref": "topic",
        "created_at": dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
        **fields,
    }


def failure(write) -> Exception:
    # In a savepoint: the test's transaction goes on.
    with pytest.raises(Exception) as caught, Commit._meta.database.atomic():
        write()
    return caught.value


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"number": 2**31}, "value out of range for pull_requests.number: 2147483648"),
        ({"number": -(2**31) - 1}, "value out of range for pull_requests.number: -2147483649"),
        ({"github_id": 2**63}, f"value out of range for pull_requests.github_id: {2**63}"),
    ],
)
def test_every_write_path_refuses_what_postgresql_refuses_naming_the_column(repo, fields, reason):
    row = pull_request(repo, **fields)
    for write in (
        lambda: PullRequest.insert(**row).execute(),
        lambda: PullRequest.insert_many([row]).execute(),
        lambda: insert_rows(PullRequest, [row]),
        lambda: PullRequest.create(**row),
    ):
        exc = failure(write)
        assert isinstance(exc, Unstorable) and unstorable_reason(exc) == reason
    pr = PullRequest.create(**pull_request(repo))
    exc = failure(lambda: PullRequest.update(**fields).where(PullRequest.id == pr.id).execute())
    assert unstorable_reason(exc) == reason
    # The largest values that fit are stored.
    PullRequest.create(**pull_request(repo, number=2**31 - 1, github_id=2**63 - 1))


def test_a_varchar_holds_at_most_its_length(repo):
    commit = {"repository": repo.id, "sha": "a" * 65, "message": "m"}
    exc = failure(lambda: insert_rows(Commit, [commit]))
    assert unstorable_reason(exc) == "value too long for commits.sha: 65 characters, at most 64"


def database_failure(sql: str, params=()) -> Exception:
    return failure(lambda: Commit._meta.database.execute_sql(sql, params))


def test_the_databases_data_exceptions_are_permanent_and_other_failures_are_not(repo):
    if is_postgres():
        for sql, code in [
            ("SELECT 'x'::integer", "22P02"),  # invalid text representation
            ("SELECT 2147483647::integer + 1", "22003"),  # numeric value out of range
            ("SELECT '294277-01-01'::timestamp", "22008"),  # datetime field overflow
        ]:
            reason = unstorable_reason(database_failure(sql))
            assert reason is not None and reason.endswith(f"[SQLSTATE {code}]"), (sql, reason)
        timeout = database_failure("SET LOCAL statement_timeout = 10; SELECT pg_sleep(1)")
        assert unstorable_reason(timeout) is None  # 57014: it may pass next time
    else:
        # sqlite3 cannot bind an integer past 64 bits.
        overflow = database_failure("SELECT ?", (2**64,))
        assert isinstance(overflow, OverflowError)
        assert unstorable_reason(overflow).startswith("value out of range: Python int too large")
    missing = database_failure("SELECT * FROM no_such_table")
    assert unstorable_reason(missing) is None
