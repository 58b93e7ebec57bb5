"""Test databases: a session-wide migrated one (each test in a rolled-back transaction),
and throwaway empty ones for tests that run the real `devmetrics` command.

TEST_DATABASE_URL picks the backend: a PostgreSQL URL names the server on which throwaway
databases are created and dropped (it must be reachable: the run fails otherwise), and
`sqlite://` runs everything on SQLite files in a temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import peewee as pw
import psycopg2
import pytest

from shared import migrations
from shared.database import db, open_database
from tests.reliability import report as suite_report

# One fixed encryption key for the whole run (in-process and every subprocess), so no
# test writes a development key file into the checkout.
os.environ.setdefault("DEVMETRICS_ENCRYPTION_KEYS", "yLDBLddG1lAb9X2dsV_Q1ngzVu9mQHN6lMGeFfTvNSQ=")
# Rate limits out of the way of tests that send many requests (every service inherits these);
# tests/security/test_rate_limits.py starts services with low ones to prove them.
for _limit in (
    "RATE_LIMIT_API",
    "RATE_LIMIT_SIGN_IN",
    "RATE_LIMIT_WEBHOOK_FAILURES",
    "RATE_LIMIT_AUTH_FAILURES",
    "RATE_LIMIT_EXPORTS",
):
    os.environ.setdefault(_limit, "1000000 per minute")

ROOT = Path(__file__).resolve().parent.parent
DEVMETRICS = Path(sys.executable).with_name("devmetrics")
TEST_DATABASE_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKEND = "sqlite" if TEST_DATABASE_URL.startswith("sqlite") else "postgresql"


def pytest_sessionstart(session):
    # CI must test PostgreSQL: an unreachable server fails the run, it never skips.
    if BACKEND == "postgresql":
        try:
            psycopg2.connect(TEST_DATABASE_URL, connect_timeout=5).close()
        except psycopg2.Error as exc:
            pytest.exit(
                f"cannot connect to PostgreSQL at {TEST_DATABASE_URL}: "
                f"{' '.join(str(exc).split())}",
                returncode=3,
            )


def pytest_report_header(config):
    return f"database backend: {BACKEND} ({TEST_DATABASE_URL})"


def pytest_configure(config):
    # The reliability and security suite's table is printed at the end of every run that
    # includes it (the report script sets its own file; otherwise one for this run).
    if not os.environ.get(suite_report.REPORT_ENV):
        path = Path(config.rootpath) / "test-output" / f"suite-report-{os.getpid()}.jsonl"
        path.parent.mkdir(exist_ok=True)
        path.unlink(missing_ok=True)
        os.environ[suite_report.REPORT_ENV] = str(path)


def pytest_terminal_summary(terminalreporter):
    rows = suite_report.read(os.environ.get(suite_report.REPORT_ENV, ""))
    if rows:
        terminalreporter.section(f"reliability and security report ({BACKEND})")
        terminalreporter.write_line(suite_report.table(rows))


def pytest_collection_modifyitems(config, items):
    if BACKEND == "sqlite":
        skip = pytest.mark.skip(reason="PostgreSQL-only behaviour")
        for item in items:
            if "postgres_only" in item.keywords:
                item.add_marker(skip)


class DatabaseFactory:
    """Creates empty throwaway databases on the test server and drops them at the end."""

    def __init__(self, tmp_root: Path):
        self.tmp_root = tmp_root
        self.created: list[str] = []

    def _admin(self):
        conn = psycopg2.connect(TEST_DATABASE_URL, connect_timeout=5)
        conn.autocommit = True
        return conn

    def new_url(self) -> str:
        name = f"devmetrics_test_{uuid.uuid4().hex[:12]}"
        self.created.append(name)
        if BACKEND == "sqlite":
            return f"sqlite:///{self.tmp_root / (name + '.db')}"
        conn = self._admin()
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return urlunparse(urlparse(TEST_DATABASE_URL)._replace(path=f"/{name}"))

    def drop_all(self):
        if BACKEND != "postgresql":
            return
        conn = self._admin()
        with conn.cursor() as cur:
            for name in self.created:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


@pytest.fixture(scope="session")
def database_factory(tmp_path_factory):
    factory = DatabaseFactory(tmp_path_factory.mktemp("databases"))
    yield factory
    factory.drop_all()


@pytest.fixture
def fresh_database_url(database_factory) -> str:
    """An empty database of the backend under test, for one test."""
    return database_factory.new_url()


@pytest.fixture(scope="session")
def migrated_database(database_factory):
    """The session's database: migrated once through the real migration history."""
    url = database_factory.new_url()
    database = open_database(url, pool_min=1, pool_max=4)
    db.initialize(database)
    database.connect()
    migrations.migrate(database)
    yield database
    database.close()
    if hasattr(database, "close_all"):
        database.close_all()


@pytest.fixture
def tx(migrated_database):
    """Each test's changes happen in a transaction that is rolled back afterwards."""
    with migrated_database.atomic() as transaction:
        yield migrated_database
        transaction.rollback()


@pytest.fixture
def seeded(tx):
    from devmetrics.seed import seed

    seed()
    return tx


def run_cli(*args: str, database_url: str, env: dict | None = None, input: str | None = None):
    """Run the installed `devmetrics` command against `database_url`."""
    full_env = {**os.environ, "DATABASE_URL": database_url, **(env or {})}
    return subprocess.run(
        [str(DEVMETRICS), *args],
        env=full_env,
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def connect(url: str) -> pw.Database:
    """A separate connection to a database the test created (not through the shared proxy)."""
    database = open_database(url, pool_min=0, pool_max=2)
    database.connect()
    return database


@pytest.fixture(scope="session")
def fake_github_server():
    from tests.fake_github import FakeGitHubServer

    with FakeGitHubServer() as state:
        yield state


@pytest.fixture
def fake_github(fake_github_server):
    """The fake GitHub, reset for this test."""
    state = fake_github_server
    state.mode = "ok"
    state.codes.clear()
    state.users.clear()
    state.requests.clear()
    state.rest, state.page_cap = {}, 100
    state.rate_limit_once.clear()
    state.error502_once.clear()
    state.rest_requests.clear()
    state.repositories.clear()
    state.tokens_used.clear()
    state.app_id, state.app_public_key = "", ""
    state.installations.clear()
    state.installation_tokens.clear()
    return state


@pytest.fixture
def accounts_client(tx, fake_github, monkeypatch):
    """The accounts app in-process on the test's transaction, talking to the fake GitHub."""
    from services.accounts import create_app
    from tests.fake_github import env_for

    for name, value in env_for(fake_github).items():
        monkeypatch.setenv(name, value)
    app = create_app({"TESTING": True, "DATABASE": tx})
    return app.test_client()


@pytest.fixture
def restore_db():
    """For tests whose app factory points the shared `db` elsewhere: put it back after."""
    previous = db.obj
    yield
    if db.obj is not previous:
        if not db.is_closed():
            db.close()
        db.initialize(previous)
