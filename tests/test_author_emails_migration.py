"""Migration 014 on a database with commits (issue 18 item 4), on both backends: the e-mails of
the commits already stored become `author_emails`, paired by the first commit that showed
each with a username; a signed-in person's e-mail is their claim (`user_emails`); commits
without a username follow their e-mail's owner. Only new tables and an index: no row of
another table is lost, either way."""

from shared import migrations
from tests.conftest import connect, run_cli

AT = "'2026-01-05 10:00:00'"
COUNTS = (
    "SELECT (SELECT COUNT(*) FROM commits), (SELECT COUNT(*) FROM users), "
    "(SELECT COUNT(*) FROM repositories), (SELECT COUNT(*) FROM organizations)"
)
# sha, authored, e-mail, author id, login (the username GitHub showed), bot
COMMITS = [
    ("a", "2026-01-02 10:00:00", "erin@x.example", 2, "erin", False),
    ("b", "2026-01-01 09:00:00", "erin@x.example", None, None, False),  # earlier, no username
    ("c", "2026-01-02 11:00:00", "Dana@Example.com", None, None, False),  # a signed-in e-mail
    ("d", "2026-01-02 12:00:00", "nobody@x.example", None, None, False),  # never paired
    ("e", "2026-01-02 13:00:00", "ci@x.example", None, "ci[bot]", True),
    ("f", "2026-01-02 14:00:00", "ci@x.example", None, None, False),  # the bot's e-mail
]


def test_014_pairs_the_stored_commits_emails_and_rolls_back(fresh_database_url):
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
    for user_id, login, email in ((1, "dana", "Dana@Example.com"), (2, "erin", None)):
        sql(
            "INSERT INTO users (id, github_id, login, email, is_bot, created_at, updated_at) "
            f"VALUES ({user_id}, {p}, {p}, {p}, {p}, {AT}, {AT})",
            (1000 + user_id, login, email, False),
        )
    sql(
        "INSERT INTO repositories (id, organization_id, github_id, full_name, default_branch, "
        "private, sensitivity, is_active, connected_at, created_at, updated_at, settings, "
        f"backfill_state) VALUES (1, 1, 42, 'org/r', 'main', {p}, 'INTERNAL', {p}, {AT}, {AT}, "
        f"{AT}, '{{}}', '{{}}')",
        (False, True),
    )
    for sha, authored, email, author, login, bot in COMMITS:
        sql(
            "INSERT INTO commits (repository_id, organization_id, sha, author_id, author_login, "
            "author_email, message, additions, deletions, files_changed, authored_at, "
            f"committed_at, created_at, author_is_bot) VALUES (1, 1, {p}, {p}, {p}, {p}, 'm', "
            f"0, 0, 0, {p}, {p}, {AT}, {p})",
            (sha, author, login, email, authored, authored, bot),
        )
    counts = sql(COUNTS).fetchone()
    assert counts == (6, 2, 1, 1)

    after = run_cli("db", "migrate", database_url=fresh_database_url)
    assert after.returncode == 0, after.stderr
    assert "014_author_emails" in migrations.applied(database)
    assert sql(COUNTS).fetchone() == counts
    emails = sql(
        "SELECT organization_id, email, github_login, paired_user_id, user_id FROM author_emails"
    ).fetchall()
    assert sorted(emails) == [
        (1, "ci@x.example", "ci[bot]", None, None),  # a bot's: nobody owns it
        (1, "dana@example.com", None, None, 1),  # Dana's own (signed in with it)
        (1, "erin@x.example", "erin", 2, 2),  # GitHub showed it with erin's username
        (1, "nobody@x.example", None, None, None),  # an unlinked contributor
    ]
    claims = sql("SELECT user_id, email, verified, linked FROM user_emails").fetchall()
    assert [(u, e, bool(v), bool(linked)) for u, e, v, linked in claims] == [
        (1, "dana@example.com", True, True)
    ]
    commits = {
        sha: (email, author, bool(bot))
        for sha, email, author, bot in sql(
            "SELECT sha, author_email, author_id, author_is_bot FROM commits"
        ).fetchall()
    }
    assert commits == {
        "a": ("erin@x.example", 2, False),
        "b": ("erin@x.example", 2, False),  # the earlier commit follows the pairing
        "c": ("dana@example.com", 1, False),
        "d": ("nobody@x.example", None, False),
        "e": ("ci@x.example", None, True),
        "f": ("ci@x.example", None, True),
    }
    assert run_cli("db", "verify", database_url=fresh_database_url).returncode == 0

    # The later ones, then 014 itself.
    for name in reversed([n for n in migrations.available() if n >= "014_author_emails"]):
        rolled = run_cli("db", "rollback", "--yes", database_url=fresh_database_url)
        assert rolled.returncode == 0, rolled.stderr
        assert f"rolled back {name}" in rolled.stdout
    assert sql(COUNTS).fetchone() == counts
    assert not {"author_emails", "user_emails"} & set(database.get_tables())
    # And forward again: the same rows.
    again = run_cli("db", "migrate", database_url=fresh_database_url)
    assert again.returncode == 0, again.stderr
    assert sorted(
        sql(
            "SELECT organization_id, email, github_login, paired_user_id, user_id "
            "FROM author_emails"
        ).fetchall()
    ) == sorted(emails)
    database.close()
