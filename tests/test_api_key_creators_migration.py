"""Migration 013 on keys made before it (issue 17 item 7): each key without a creating person
gets one from its `api_key.created` audit entry, or becomes an organization key when it was
made outside any request (the CLI) or its record is gone."""

from shared import migrations
from tests.conftest import connect, run_cli

AT = "'2026-01-05 10:00:00'"
AUDIT_KEY_LINKS = "SELECT id, actor_api_key_id FROM audit_logs ORDER BY id"
# name -> (created_by login, its audit entry: (actor login, actor key name, ip) or None)
KEYS = {
    "session": ("alice", ("alice", None, "10.0.0.1")),
    "cli": (None, (None, None, None)),
    "by-session-key": (None, ("alice", "session", "10.0.0.1")),
    "by-cli-key": (None, (None, "cli", "10.0.0.1")),
    "by-deleted-person": (None, (None, None, "10.0.0.1")),
    "no-record": (None, None),
}
# name -> (created_by login, creating key name, organization key) after 013
EXPECTED = {
    "session": ("alice", None, False),
    "cli": (None, None, True),
    "by-session-key": ("alice", "session", False),
    "by-cli-key": (None, "cli", True),
    "by-deleted-person": (None, None, False),
    "no-record": (None, None, True),
}


def test_013_fills_in_creators_from_the_audit_log(fresh_database_url):
    before = run_cli(
        "db", "migrate", "--to", "010_metric_read_indexes", database_url=fresh_database_url
    )
    assert before.returncode == 0, before.stderr
    database = connect(fresh_database_url)
    sql = database.execute_sql
    sql(
        "INSERT INTO organizations (name, slug, plan, is_personal, settings, created_at, "
        f"updated_at) VALUES ('Org', 'org', 'PRO', {database.param}, '{{}}', {AT}, {AT})",
        (False,),
    )
    org = sql("SELECT id FROM organizations").fetchone()[0]
    sql(
        "INSERT INTO users (github_id, login, is_bot, created_at, updated_at) "
        f"VALUES (1, 'alice', {database.param}, {AT}, {AT})",
        (False,),
    )
    users = dict(sql("SELECT login, id FROM users").fetchall())
    ids = {}
    for n, (name, (creator, entry)) in enumerate(KEYS.items()):
        sql(
            "INSERT INTO api_keys (organization_id, created_by_id, name, prefix, key_hash, "
            f"scopes, created_at) VALUES ({org}, {database.param}, {database.param}, "
            f"'prefix{n}', 'hash', '[\"metrics:read\"]', {AT})",
            (users.get(creator), name),
        )
        ids[name] = sql("SELECT MAX(id) FROM api_keys").fetchone()[0]
        if entry is not None:
            actor, actor_key, ip = entry
            sql(
                "INSERT INTO audit_logs (organization_id, actor_user_id, actor_api_key_id, "
                "action, target_type, target_id, ip, metadata, created_at) VALUES "
                f"({org}, {database.param}, {database.param}, 'api_key.created', 'api_key', "
                f"'{ids[name]}', {database.param}, '{{}}', CURRENT_TIMESTAMP)",
                (users.get(actor), ids.get(actor_key), ip),
            )
    links = sql(AUDIT_KEY_LINKS).fetchall()
    assert sum(key is not None for _, key in links) == 2
    database.close()

    to_013 = ("--to", "013_api_keys_follow_their_creator")  # later migrations are not its
    after = run_cli("db", "migrate", *to_013, database_url=fresh_database_url)
    assert after.returncode == 0, after.stderr
    database = connect(fresh_database_url)
    assert migrations.applied(database)[-1] == "013_api_keys_follow_their_creator"
    rows = database.execute_sql(
        "SELECT name, created_by_id, created_by_key_id, organization_key FROM api_keys"
    ).fetchall()
    # The audit entries still name the keys that acted (SQLite rebuilds api_keys to add a
    # NOT NULL column, which would clear them).
    assert database.execute_sql(AUDIT_KEY_LINKS).fetchall() == links
    database.close()
    logins = {v: k for k, v in users.items()}
    names = {v: k for k, v in ids.items()}
    found = {
        name: (logins.get(by), names.get(by_key), bool(org_key))
        for name, by, by_key, org_key in rows
    }
    assert found == EXPECTED

    rolled = run_cli("db", "rollback", "--yes", database_url=fresh_database_url)
    assert rolled.returncode == 0, rolled.stderr
    assert "rolled back 013_api_keys_follow_their_creator" in rolled.stdout
    database = connect(fresh_database_url)
    assert database.execute_sql(AUDIT_KEY_LINKS).fetchall() == links
    assert "organization_key" not in {c.name for c in database.get_columns("api_keys")}
    database.close()
