"""Migration 011 on a database with activity (issue 17 items 1 and 2): no row is lost on either
backend (on SQLite a table rebuild of `repositories` would cascade-delete every row that
references it), repositories that had a GitHub id stay accepted (verified as of their
connection, no token owner), and each webhook dedupe row names its event's repository."""

from shared import migrations
from tests.conftest import connect, run_cli

AT = "'2026-01-05 10:00:00'"
COUNTS = (
    "SELECT (SELECT COUNT(*) FROM commits), (SELECT COUNT(*) FROM events), "
    "(SELECT COUNT(*) FROM event_deliveries), (SELECT COUNT(*) FROM repositories)"
)


def test_011_keeps_every_row_and_fills_its_new_columns(fresh_database_url):
    before = run_cli(
        "db", "migrate", "--to", "010_metric_read_indexes", database_url=fresh_database_url
    )
    assert before.returncode == 0, before.stderr
    database = connect(fresh_database_url)
    sql, p = database.execute_sql, database.param
    sql(
        "INSERT INTO organizations (id, name, slug, plan, is_personal, settings, created_at, "
        f"updated_at) VALUES (1, 'Org', 'org', 'PRO', {p}, '{{}}', {AT}, {AT})",
        (False,),
    )
    for repo_id, github_id in ((1, 42), (2, None)):  # the second never had a webhook
        sql(
            "INSERT INTO repositories (id, organization_id, github_id, full_name, "
            "default_branch, private, sensitivity, is_active, connected_at, created_at, "
            f"updated_at, settings, backfill_state) VALUES ({repo_id}, 1, {p}, "
            f"'org/r{repo_id}', 'main', {p}, 'INTERNAL', {p}, {AT}, {AT}, {AT}, '{{}}', '{{}}')",
            (github_id, False, True),
        )
    sql(
        "INSERT INTO commits (repository_id, organization_id, sha, message, additions, "
        "deletions, files_changed, authored_at, committed_at, created_at, author_is_bot) "
        f"VALUES (1, 1, 'abc', 'm', 1, 1, 1, {AT}, {AT}, {AT}, {p})",
        (False,),
    )
    sql(
        "INSERT INTO events (id, source, delivery_id, event_type, repository_id, "
        "organization_id, payload, received_at, status, attempts, hook_id, headers) "
        f"VALUES (5, 'github', 'd1', 'push', 1, 1, '{{}}', {AT}, 'PROCESSED', 1, 'h', '{{}}')"
    )
    for delivery, event_id in (("d1", 5), ("d2", 99)):  # d2's event retention removed
        sql(
            "INSERT INTO event_deliveries (source, hook_id, delivery_id, event_id, received_at)"
            f" VALUES ('github', 'h', {p}, {p}, {AT})",
            (delivery, event_id),
        )
    assert sql(COUNTS).fetchone() == (1, 1, 2, 2)

    after = run_cli("db", "migrate", database_url=fresh_database_url)
    assert after.returncode == 0, after.stderr
    assert sql(COUNTS).fetchone() == (1, 1, 2, 2)
    repositories = sql(
        "SELECT id, verified_at IS NOT NULL, connected_by_id FROM repositories ORDER BY id"
    ).fetchall()
    assert [(r[0], bool(r[1]), r[2]) for r in repositories] == [(1, True, None), (2, False, None)]
    deliveries = sql(
        "SELECT delivery_id, repository_id FROM event_deliveries ORDER BY delivery_id"
    ).fetchall()
    assert deliveries == [("d1", 1), ("d2", 0)]

    # The later ones, then 011 itself: nothing lost on the way back either.
    for name in reversed([n for n in migrations.available() if n >= "011_tenant_security"]):
        rolled = run_cli("db", "rollback", "--yes", database_url=fresh_database_url)
        assert rolled.returncode == 0, rolled.stderr
        assert f"rolled back {name}" in rolled.stdout
    assert sql(COUNTS).fetchone() == (1, 1, 2, 2)
    database.close()
