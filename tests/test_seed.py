"""`devmetrics db seed`: the exact demo data set, loaded idempotently."""

import datetime as dt
import re

from shared import crypto, schema
from shared.models import (
    AIReview,
    ApiKey,
    AuditLog,
    Commit,
    DeveloperMetric,
    Issue,
    NotificationLog,
    NotificationRule,
    Organization,
    PullRequest,
    Repository,
    RepositoryStats,
    TeamMetric,
    User,
    UserOrganization,
)
from tests.conftest import connect, run_cli

KEY_RE = re.compile(r"API key '(.+)' for (\S+) \(shown once, store it now\): (dm_\S+)")


def dump(url: str) -> dict[str, list[tuple]]:
    database = connect(url)
    # The model tables as `db verify` sees them (PostgreSQL partitions are their parent's rows).
    rows = {
        table: database.execute_sql(f'SELECT * FROM "{table}" ORDER BY id').fetchall()
        for table in schema.describe_database(database)
    }
    database.close()
    return rows


def test_seed_twice_leaves_the_same_rows(fresh_database_url):
    assert run_cli("db", "migrate", database_url=fresh_database_url).returncode == 0
    first = run_cli("db", "seed", database_url=fresh_database_url)
    assert first.returncode == 0, first.stderr
    keys = KEY_RE.findall(first.stdout)
    assert {(name, org) for name, org, _ in keys} == {
        ("CI pipeline", "techcorp"),
        ("Read-only dashboard", "startup-inc"),
    }
    after_first = dump(fresh_database_url)

    second = run_cli("db", "seed", database_url=fresh_database_url)
    assert second.returncode == 0, second.stderr
    assert "0 row(s) created (already seeded)" in second.stdout
    assert KEY_RE.findall(second.stdout) == []  # plaintext keys are printed once only
    assert dump(fresh_database_url) == after_first
    # Every table holds demo rows, except raw webhook events (they only come from GitHub)
    # the background-work tables, and invitations (nobody is a member without accepting one;
    # the demo's people are members already).
    assert sorted(t for t in after_first if not after_first[t]) == [
        "event_deliveries",
        "events",
        "inbox_messages",
        "invitations",
        "jobs",
        "login_links",
        "pull_request_commits",
        "sessions",
    ]

    # The printed plaintext is a working key: its prefix finds the row, bcrypt accepts it.
    database = connect(fresh_database_url)
    for _name, _org, plaintext in keys:
        prefix = crypto.split_api_key(plaintext)
        (key_hash,) = database.execute_sql(
            "SELECT key_hash FROM api_keys WHERE prefix = " + database.param, (prefix,)
        ).fetchone()
        assert key_hash.startswith("$2b$12$")
        assert crypto.check_api_key(plaintext, key_hash)
        assert not crypto.check_api_key(plaintext + "x", key_hash)
    database.close()


def test_seed_refuses_unmigrated_database(fresh_database_url):
    result = run_cli("db", "seed", database_url=fresh_database_url)
    assert result.returncode == 1
    assert "pending migration" in result.stderr and "devmetrics db migrate" in result.stderr


def test_seeded_people_orgs_and_plans(seeded):
    assert sorted(User.select(User.name).tuples()) == [
        ("Alice Anderson",),
        ("Bob Brown",),
        ("Charlie Chen",),
    ]
    orgs = {o.name: (o.plan, o.is_personal) for o in Organization.select()}
    assert orgs == {
        "TechCorp": ("PRO", False),
        "Startup Inc": ("FREE", False),
        "Alice Anderson (personal)": ("FREE", True),
    }
    roles = {
        (m.user.login, m.organization.slug): m.role
        for m in UserOrganization.select(UserOrganization, User, Organization)
        .join(User)
        .switch(UserOrganization)
        .join(Organization)
    }
    assert roles[("alice", "techcorp")] == "OWNER"
    assert roles[("bob", "techcorp")] == "ADMIN"
    assert roles[("charlie", "techcorp")] == "MEMBER"
    assert roles[("alice", "startup-inc")] == "VIEWER"
    assert set(roles.values()) == {"OWNER", "ADMIN", "MEMBER", "VIEWER"}
    personal = Organization.get(Organization.is_personal == True)  # noqa: E712
    assert personal.memberships.count() == 1


def test_seeded_activity_covers_every_state(seeded):
    languages = {r.language for r in Repository.select()}
    assert len(languages) == 3
    assert {p.state for p in PullRequest.select()} == {"OPEN", "MERGED", "CLOSED"}
    assert {i.state for i in Issue.select()} == {"OPEN", "CLOSED"}
    assert Commit.select().count() == 9
    assert {r.risk_level for r in AIReview.select()} >= {"LOW", "MEDIUM"}
    assert all(0 <= r.risk_score <= 100 for r in AIReview.select())
    assert NotificationRule.select().count() == 3
    assert {log.status for log in NotificationLog.select()} == {"SENT", "FAILED"}
    assert ApiKey.select().count() == 2
    assert AuditLog.select().count() >= 10
    # Secrets at rest are ciphertext that decrypts, never the plaintext.
    for repo in Repository.select():
        assert len(crypto.decrypt(repo.webhook_secret_encrypted)) == 40
        assert repo.webhook_secret_encrypted.startswith("gAAAA")


def test_seeded_metrics_agree_with_seeded_activity(seeded):
    """Totals agree across the tables (the values themselves: tests/test_seed_metrics.py)."""
    from peewee import fn

    first_day = dt.date(2026, 11, 2)
    dates = sorted({d for (d,) in TeamMetric.select(TeamMetric.date).tuples()})
    assert dates[0] == first_day and dates[-1] >= dt.datetime.now(dt.UTC).date()
    assert len(dates) == (dates[-1] - first_day).days + 1  # a row for every day
    assert DeveloperMetric.select(fn.COUNT(fn.DISTINCT(DeveloperMetric.date))).scalar() == 2
    for org in Organization.select():
        commits = Commit.select().where(Commit.organization == org).count()
        totals = [
            model.select(fn.SUM(model.commits)).where(model.organization == org).scalar() or 0
            for model in (TeamMetric, DeveloperMetric, RepositoryStats)
        ]
        assert totals == [commits] * 3, org.slug
    merged = PullRequest.select().where(PullRequest.state == "MERGED").count()
    assert TeamMetric.select(fn.SUM(TeamMetric.prs_merged)).scalar() == merged
    # Every pull request has an explained AI review at its head commit.
    for pr in PullRequest.select():
        review = AIReview.get((AIReview.pull_request == pr) & (AIReview.head_sha == pr.head_sha))
        assert review.summary and review.findings and review.features
