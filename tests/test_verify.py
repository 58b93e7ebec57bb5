"""`devmetrics db verify`: exit 0 on a migrated database; exit 1 naming each hand-made drift."""

import pytest

from shared.models import MODELS
from tests.conftest import connect, run_cli


@pytest.fixture
def migrated_url(fresh_database_url):
    assert run_cli("db", "migrate", database_url=fresh_database_url).returncode == 0
    return fresh_database_url


def test_verify_passes_on_migrated_database(migrated_url):
    result = run_cli("db", "verify", database_url=migrated_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"schema matches the models: {len(MODELS)} tables" in result.stdout


def test_verify_names_extra_column_and_missing_index(migrated_url):
    database = connect(migrated_url)
    database.execute_sql("ALTER TABLE commits ADD COLUMN sneaky TEXT")
    database.execute_sql("DROP INDEX commits_author_login_authored_at")
    database.close()

    result = run_cli("db", "verify", database_url=migrated_url)
    assert result.returncode == 1
    assert "commits: extra column sneaky (not declared by the model)" in result.stdout
    assert "commits: missing index (author_login, authored_at)" in result.stdout
    assert "2 difference(s)" in result.stdout


def test_verify_names_missing_table(migrated_url):
    database = connect(migrated_url)
    database.execute_sql("DROP TABLE notification_logs")
    database.close()
    result = run_cli("db", "verify", database_url=migrated_url)
    assert result.returncode == 1
    assert "missing table notification_logs" in result.stdout


@pytest.mark.postgres_only
def test_verify_names_type_nullability_and_unique_changes(migrated_url):
    database = connect(migrated_url)
    database.execute_sql("ALTER TABLE commits ALTER COLUMN message DROP NOT NULL")
    database.execute_sql("ALTER TABLE commits ALTER COLUMN branch TYPE varchar(50)")
    database.execute_sql("DROP INDEX api_keys_prefix")
    database.execute_sql("CREATE INDEX api_keys_prefix ON api_keys (prefix)")
    database.close()

    result = run_cli("db", "verify", database_url=migrated_url)
    assert result.returncode == 1
    out = result.stdout
    assert "commits.message: is NULL, models declare NOT NULL" in out
    assert (
        "commits.branch: type is character varying(50), models declare character varying(255)"
        in out
    )
    assert "api_keys: missing unique index (prefix)" in out
    assert "api_keys: extra index (prefix)" in out
