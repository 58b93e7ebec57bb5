"""`devmetrics db reset`: destructive, so confirmed, and refused in production."""

from tests.conftest import connect, run_cli


def _seeded(url):
    assert run_cli("db", "migrate", database_url=url).returncode == 0
    assert run_cli("db", "seed", database_url=url).returncode == 0


def _users(url) -> int:
    database = connect(url)
    n = database.execute_sql("SELECT COUNT(*) FROM users").fetchone()[0]
    database.close()
    return n


def test_reset_refuses_in_production(fresh_database_url):
    _seeded(fresh_database_url)
    result = run_cli(
        "db",
        "reset",
        "--yes",
        database_url=fresh_database_url,
        env={"DEVMETRICS_ENV": "production"},
    )
    assert result.returncode == 1
    assert "refusing to reset: DEVMETRICS_ENV=production" in result.stderr
    assert _users(fresh_database_url) == 3


def test_reset_asks_and_aborts_on_no(fresh_database_url):
    _seeded(fresh_database_url)
    result = run_cli("db", "reset", database_url=fresh_database_url, input="n\n")
    assert result.returncode != 0
    assert "Drop ALL tables" in result.stdout
    assert _users(fresh_database_url) == 3


def test_reset_drops_everything_and_migrates(fresh_database_url):
    _seeded(fresh_database_url)
    result = run_cli("db", "reset", database_url=fresh_database_url, input="y\n")
    assert result.returncode == 0, result.stderr
    assert "applied 001_initial" in result.stdout
    assert _users(fresh_database_url) == 0
    assert run_cli("db", "verify", database_url=fresh_database_url).returncode == 0
