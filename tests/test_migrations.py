"""One migration history: it yields exactly the schema the models declare, on this backend."""

from shared import migrations, schema
from shared.models import MODELS
from tests.conftest import connect, run_cli


def test_models_and_history_agree():
    # A model change without its migration would show up here as generated code.
    assert migrations.model_changes() == ""


def test_migrated_schema_equals_the_models_own_ddl(database_factory):
    migrated_url, reference_url = database_factory.new_url(), database_factory.new_url()
    result = run_cli("db", "migrate", database_url=migrated_url)
    assert result.returncode == 0, result.stderr
    assert "applied 001_initial" in result.stdout

    reference = connect(reference_url)
    with reference.bind_ctx(MODELS):
        reference.create_tables(MODELS)
    migrated = connect(migrated_url)

    expected, actual = schema.describe_database(reference), schema.describe_database(migrated)
    # Columns, types, nullability, defaults, CHECKs, foreign keys with ON DELETE, indexes.
    assert schema.diff_schemas(expected, actual) == []
    assert set(actual) == {m._meta.table_name for m in MODELS}
    assert schema.verify(MODELS, migrated) == []
    assert schema.index_count(migrated) >= 50
    cascades = {
        (t, fk.column, fk.on_delete) for t, table in actual.items() for fk in table.foreign_keys
    }
    assert ("commits", "repository_id", "CASCADE") in cascades
    assert ("commits", "author_id", "SET NULL") in cascades
    reference.close()
    migrated.close()


def test_status_rollback_and_migrate_again(fresh_database_url):
    status = run_cli("db", "status", database_url=fresh_database_url)
    assert status.returncode == 0, status.stderr
    n = len(migrations.available())
    assert "[ ] 001_initial" in status.stdout and f"0 applied, {n} pending" in status.stdout

    assert run_cli("db", "migrate", database_url=fresh_database_url).returncode == 0
    status = run_cli("db", "status", database_url=fresh_database_url)
    assert "[x] 001_initial" in status.stdout and f"{n} applied, 0 pending" in status.stdout
    again = run_cli("db", "migrate", database_url=fresh_database_url)
    assert "nothing to migrate" in again.stdout

    # Every migration's rollback works, newest first, down to an empty schema.
    for name in reversed(migrations.available()):
        rolled = run_cli("db", "rollback", "--yes", database_url=fresh_database_url)
        assert rolled.returncode == 0, rolled.stderr
        assert f"rolled back {name}" in rolled.stdout
    database = connect(fresh_database_url)
    assert set(database.get_tables()) == {migrations.MIGRATE_TABLE}
    database.close()

    assert run_cli("db", "migrate", database_url=fresh_database_url).returncode == 0
    assert run_cli("db", "verify", database_url=fresh_database_url).returncode == 0


def test_mark_applied_records_without_running(fresh_database_url):
    result = run_cli("db", "mark-applied", "001_initial", database_url=fresh_database_url)
    assert result.returncode == 0, result.stderr
    database = connect(fresh_database_url)
    assert set(database.get_tables()) == {migrations.MIGRATE_TABLE}
    assert migrations.applied(database) == ["001_initial"]
    database.close()

    twice = run_cli("db", "mark-applied", "001_initial", database_url=fresh_database_url)
    assert twice.returncode == 1
    assert "already recorded as applied" in twice.stderr
    unknown = run_cli("db", "mark-applied", "999_nope", database_url=fresh_database_url)
    assert unknown.returncode == 1 and "unknown migration '999_nope'" in unknown.stderr


def test_makemigration_reports_no_changes(fresh_database_url):
    # Never let this test write a migration into the checkout.
    assert migrations.model_changes() == "", "models changed: run devmetrics db makemigration"
    result = run_cli("db", "makemigration", "nothing_new", database_url=fresh_database_url)
    assert result.returncode == 0, result.stderr
    assert "no changes" in result.stdout
    assert migrations.available()[0] == "001_initial"
    assert not any("nothing_new" in name for name in migrations.available())
    bad = run_cli("db", "makemigration", "Bad Name", database_url=fresh_database_url)
    assert bad.returncode == 1 and "must be lowercase" in bad.stderr
