"""DATABASE_URL handling, the connection settings per backend, and `db check`."""

import os
import subprocess
import sys

import pytest

from shared.config import DEFAULT_DATABASE_URL, ConfigError, Settings
from shared.database import PostgresPool, open_database
from tests.conftest import BACKEND, ROOT, TEST_DATABASE_URL, connect, run_cli


def test_default_is_an_embedded_sqlite_file_in_the_working_directory(tmp_path):
    settings = Settings.from_env({})
    assert settings.database_url == DEFAULT_DATABASE_URL == "sqlite:///devmetrics.db"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "devmetrics.cli", "db", "migrate"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "devmetrics.db").exists()


def test_sqlite_runs_with_wal_busy_timeout_and_foreign_keys(tmp_path):
    database = open_database(f"sqlite:///{tmp_path / 'x.db'}")
    database.connect()
    assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert database.execute_sql("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert database.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
    database.close()


def test_pool_settings_are_validated():
    assert (
        Settings.from_env({"DATABASE_POOL_MIN": "2", "DATABASE_POOL_MAX": "8"}).database_pool_max
        == 8
    )
    with pytest.raises(ConfigError, match="DATABASE_POOL_MAX must be an integer"):
        Settings.from_env({"DATABASE_POOL_MAX": "many"})
    with pytest.raises(ConfigError, match="must not exceed"):
        Settings.from_env({"DATABASE_POOL_MIN": "9", "DATABASE_POOL_MAX": "3"})


def test_migrations_may_connect_as_the_owner_and_grant_the_services_role():
    app, owner = "postgresql://app:a@db/devmetrics", "postgresql://owner:o@db/devmetrics"
    split = Settings.from_env({"DATABASE_URL": app, "MIGRATION_DATABASE_URL": owner})
    assert (split.database_url, split.owner_database_url) == (app, owner)
    assert split.database_app_role == "app"  # DATABASE_URL's user
    named = {"DATABASE_URL": app, "MIGRATION_DATABASE_URL": owner, "DATABASE_APP_ROLE": "svc"}
    assert Settings.from_env(named).database_app_role == "svc"
    one = Settings.from_env({"DATABASE_URL": app})
    assert (one.owner_database_url, one.database_app_role) == (app, None)
    same = Settings.from_env({"DATABASE_URL": app, "MIGRATION_DATABASE_URL": app})
    assert same.database_app_role is None


@pytest.mark.postgres_only
def test_postgres_pool_keeps_min_connections_and_url_parameters_reach_the_driver(
    fresh_database_url,
):
    database = open_database(fresh_database_url + "?application_name=dm_pool_test", 3, 5)
    assert isinstance(database, PostgresPool)
    database.connect()
    assert database.pool_size == 3
    name = database.execute_sql("SHOW application_name").fetchone()[0]
    assert name == "dm_pool_test"
    database.close()
    database.close_all()


@pytest.mark.postgres_only
def test_postgres_connections_detect_dead_peers_and_end_idle_transactions(fresh_database_url):
    database = open_database(fresh_database_url, 1, 2)
    database.connect()
    show = lambda name: database.execute_sql(f"SHOW {name}").fetchone()[0]  # noqa: E731
    assert show("idle_in_transaction_session_timeout") == "1min"
    client = database.connection().info.dsn_parameters  # the client side's TCP keepalives
    assert (client["keepalives_idle"], client["keepalives_count"]) == ("30", "3")
    database.close_all()
    # The URL's own settings win over the defaults.
    custom = open_database(fresh_database_url + "?keepalives_idle=5&options=-c%20work_mem=8MB")
    custom.connect()
    assert custom.execute_sql("SHOW work_mem").fetchone()[0] == "8MB"
    assert custom.connection().info.dsn_parameters["keepalives_idle"] == "5"
    custom.close_all()


@pytest.mark.parametrize(
    "url,message",
    [
        ("mysql://root@127.0.0.1/x", "unsupported scheme 'mysql'"),
        ("postgresql://postgres:hunter2@127.0.0.1:1/x", "cannot connect to PostgreSQL"),
        ("postgresql://postgres@127.0.0.1:5432/", "names no database"),
        ("sqlite:////nonexistent-dir/x.db", "cannot open SQLite database"),
    ],
)
def test_a_bad_url_gives_one_clear_line(url, message):
    result = run_cli("db", "check", database_url=url)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr


def test_check_reports_backend_version_and_latency(fresh_database_url):
    result = run_cli("db", "check", database_url=fresh_database_url)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.strip().splitlines()
    assert first.startswith(f"ok: {BACKEND} (")
    if BACKEND == "postgresql":
        server = connect(fresh_database_url)
        version = server.execute_sql("SHOW server_version").fetchone()[0]
        server.close()
        assert f"({version})" in first
    else:
        assert "(SQLite 3." in first
    assert second.startswith("SELECT 1 in ") and second.endswith(" ms")


@pytest.mark.postgres_only
def test_test_run_fails_when_postgres_is_unreachable():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "tests/test_database.py", "-k", "pool_settings"],
        cwd=ROOT,
        env={**os.environ, "TEST_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/postgres"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "cannot connect to PostgreSQL" in result.stdout + result.stderr
    assert TEST_DATABASE_URL  # the real run, by contrast, reached its server
