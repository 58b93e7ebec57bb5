"""Migration 015 on activity stored before it (issue 18 items 1 and 2): no pull request or
review is lost (SQLite would cascade-delete reviews if pull_requests were rebuilt), a pull
request whose sizes a partial object zeroed is marked for its next full payload to set, and
issues that were pull requests go with their closings and incidents."""

import json

from tests.conftest import connect, run_cli

AT = "'2026-01-05 10:00:00'"
LATER = "'2026-01-07 10:00:00'"
COUNTS = (
    "SELECT (SELECT COUNT(*) FROM pull_requests), (SELECT COUNT(*) FROM reviews), "
    "(SELECT COUNT(*) FROM issues), (SELECT COUNT(*) FROM issue_closures), "
    "(SELECT COUNT(*) FROM incidents)"
)


def test_015_marks_zeroed_sizes_and_removes_issues_that_are_pull_requests(fresh_database_url):
    before = run_cli(
        "db",
        "migrate",
        "--to",
        "013_api_keys_follow_their_creator",
        database_url=fresh_database_url,
    )
    assert before.returncode == 0, before.stderr
    database = connect(fresh_database_url)
    sql, p = database.execute_sql, database.param
    sql(
        "INSERT INTO organizations (id, name, slug, plan, is_personal, settings, created_at, "
        f"updated_at) VALUES (1, 'Org', 'org', 'PRO', {p}, '{{}}', {AT}, {AT})",
        (False,),
    )
    sql(
        "INSERT INTO repositories (id, organization_id, github_id, full_name, default_branch, "
        "private, sensitivity, is_active, connected_at, created_at, updated_at, settings, "
        f"backfill_state) VALUES (1, 1, 42, 'org/r', 'main', {p}, 'INTERNAL', {p}, {AT}, {AT}, "
        f"{AT}, '{{}}', '{{}}')",
        (False, True),
    )
    # PR #2: a review (updated_at LATER) zeroed its sizes; PR #3: its last payload was full.
    for number, commits, additions in ((2, 0, 0), (3, 4, 50)):
        sql(
            "INSERT INTO pull_requests (id, repository_id, organization_id, number, "
            "author_is_bot, title, state, draft, base_ref, head_ref, additions, deletions, "
            "changed_files, commits_count, review_comments, comments, created_at, updated_at) "
            f"VALUES ({number}, 1, 1, {number}, {p}, 't', 'OPEN', {p}, 'main', 'b{number}', "
            f"{additions}, 0, 0, {commits}, 0, 0, {AT}, {LATER})",
            (False, False),
        )
    sql(
        "INSERT INTO reviews (pull_request_id, organization_id, kind, github_id, "
        f"reviewer_is_bot, state, submitted_at) VALUES (2, 1, 'REVIEW', 9, {p}, 'APPROVED', "
        f"{LATER})",
        (False,),
    )
    # Issue #2 is PR #2 (an `issues` event about it, stored as an issue before 015), with an
    # incident its label made; issue #7 is a plain issue.
    for issue_id, number in ((1, 2), (2, 7)):
        sql(
            "INSERT INTO issues (id, repository_id, organization_id, number, title, state, "
            f"labels, created_at, closed_at, updated_at) VALUES ({issue_id}, 1, 1, {number}, "
            f"'t', 'CLOSED', '[\"incident\"]', {AT}, {LATER}, {LATER})"
        )
        sql(
            "INSERT INTO issue_closures (issue_id, organization_id, repository_id, closed_at, "
            f"closer_is_bot) VALUES ({issue_id}, 1, 1, {LATER}, {p})",
            (False,),
        )
        sql(
            "INSERT INTO incidents (repository_id, organization_id, kind, source_id, title, "
            f"opened_at) VALUES (1, 1, 'LABELED_ISSUE', {issue_id}, 't', {AT})"
        )
    assert sql(COUNTS).fetchone() == (2, 1, 2, 2, 2)
    database.close()

    after = run_cli("db", "migrate", database_url=fresh_database_url)
    assert after.returncode == 0, after.stderr
    database = connect(fresh_database_url)
    sql = database.execute_sql
    assert sql(COUNTS).fetchone() == (2, 1, 1, 1, 1)
    assert sql("SELECT number FROM issues").fetchall() == [(7,)]
    assert sql("SELECT issue_id FROM issue_closures").fetchall() == [(2,)]
    assert sql("SELECT source_id FROM incidents").fetchall() == [(2,)]
    stamps = {
        number: value if isinstance(value, dict) else json.loads(value)
        for number, value in sql("SELECT number, fields_updated_at FROM pull_requests")
    }
    never = {"labels": None, "milestone": None}
    sizes = dict.fromkeys(("additions", "deletions", "changed_files", "commits"))
    assert stamps == {2: {**sizes, **never}, 3: never}
    database.close()

    rolled = run_cli("db", "rollback", "--yes", database_url=fresh_database_url)
    assert rolled.returncode == 0, rolled.stderr
    assert "rolled back 015_partial_pull_request_objects" in rolled.stdout
    database = connect(fresh_database_url)
    assert database.execute_sql(COUNTS).fetchone() == (2, 1, 1, 1, 1)
    columns = {c.name for c in database.get_columns("pull_requests")}
    assert not {"labels", "milestone", "fields_updated_at"} & columns
    database.close()
