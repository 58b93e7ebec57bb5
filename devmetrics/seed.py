"""Demo data for development and tests: `devmetrics db seed`.

Idempotent: every row has a natural key (unique constraints, or a lookup for tables that
have none), so a second run inserts nothing and changes nothing. The activity is anchored
on fixed UTC days, never on "today", so it is the same whenever it is loaded; the metrics
are computed from it by the metrics engine (daily rows from the first seeded day to the
day of loading, as the running service would keep them) and every pull request gets a
heuristic AI review.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, field

from peewee import chunked

from shared import crypto
from shared.database import db
from shared.models import (
    AIReview,
    ApiKey,
    AuditLog,
    AuthorEmail,
    Commit,
    Deployment,
    Issue,
    IssueClosure,
    NotificationLog,
    NotificationRule,
    Organization,
    PullRequest,
    Repository,
    Review,
    User,
    UserEmail,
    UserOrganization,
)

DAYS = (dt.date(2026, 11, 2), dt.date(2026, 11, 3))

USERS = [
    # login, github_id, name, email
    ("alice", 583231, "Alice Anderson", "alice@techcorp.example"),
    ("bob", 1024025, "Bob Brown", "bob@techcorp.example"),
    ("charlie", 2003641, "Charlie Chen", "charlie@startup.example"),
]

ORGS = [
    # slug, name, plan, personal, github_login
    ("techcorp", "TechCorp", "PRO", False, "techcorp"),
    ("startup-inc", "Startup Inc", "FREE", False, "startup-inc"),
    ("alice-personal", "Alice Anderson (personal)", "FREE", True, "alice"),
]

MEMBERSHIPS = [
    ("alice", "techcorp", "OWNER"),
    ("bob", "techcorp", "ADMIN"),
    ("charlie", "techcorp", "MEMBER"),
    ("bob", "startup-inc", "OWNER"),
    ("charlie", "startup-inc", "ADMIN"),
    ("alice", "startup-inc", "VIEWER"),
    ("alice", "alice-personal", "OWNER"),
]

REPOSITORIES = [
    # org, full_name, github_id, language, private, sensitivity, settings
    ("techcorp", "techcorp/api-server", 70001, "Python", True, "CONFIDENTIAL", {}),
    ("techcorp", "techcorp/web-dashboard", 70002, "TypeScript", True, "INTERNAL",
     {"deployment_source": "merges"}),
    ("startup-inc", "startup-inc/mobile-app", 70003, "Kotlin", False, "PUBLIC", {}),
]  # fmt: skip

COMMITS = [
    # repo, author, day index, hour, additions, deletions, files, branch, message
    ("techcorp/api-server", "alice", 0, 9, 120, 14, 4, "feature/rate-limits", "Add rate limits"),
    ("techcorp/api-server", "alice", 0, 11, 35, 2, 2, "feature/rate-limits", "Test rate limits"),
    ("techcorp/api-server", "bob", 0, 14, 8, 30, 1, "fix/login-timeout", "Shorter login timeout"),
    ("techcorp/api-server", "charlie", 1, 10, 240, 60, 7, "feature/export", "CSV export"),
    ("techcorp/web-dashboard", "bob", 0, 16, 60, 5, 3, "feature/charts", "Cycle-time chart"),
    ("techcorp/web-dashboard", "charlie", 1, 9, 15, 15, 2, "chore/deps", "Bump dependencies"),
    ("techcorp/web-dashboard", "bob", 1, 13, 44, 3, 2, "feature/charts", "Chart legend"),
    ("startup-inc/mobile-app", "charlie", 0, 8, 300, 20, 9, "feature/onboarding", "Onboarding"),
    ("startup-inc/mobile-app", "bob", 1, 15, 12, 40, 2, "fix/crash-on-start", "Fix crash"),
]

PULL_REQUESTS = [
    # repo, number, author, title, state, head_ref, opened (day, hour), reviewed, merged/closed
    ("techcorp/api-server", 1, "alice", "Rate limits for the public API", "MERGED",
     "feature/rate-limits", (0, 12), (0, 15), (1, 9)),
    ("techcorp/api-server", 2, "charlie", "CSV export of metrics", "OPEN",
     "feature/export", (1, 11), None, None),
    ("techcorp/api-server", 3, "bob", "Shorter login timeout", "CLOSED",
     "fix/login-timeout", (0, 14), (0, 17), (1, 8)),
    ("techcorp/web-dashboard", 1, "bob", "Cycle-time chart", "MERGED",
     "feature/charts", (0, 17), (1, 10), (1, 14)),
    ("techcorp/web-dashboard", 2, "charlie", "Bump dependencies", "OPEN",
     "chore/deps", (1, 9), None, None),
    ("startup-inc/mobile-app", 1, "charlie", "New onboarding flow", "MERGED",
     "feature/onboarding", (0, 9), (0, 13), (1, 11)),
    ("startup-inc/mobile-app", 2, "bob", "Fix crash on start", "OPEN",
     "fix/crash-on-start", (1, 16), None, None),
]  # fmt: skip

REVIEWERS = {"alice": "bob", "bob": "alice", "charlie": "bob"}

ISSUES = [
    # repo, number, author, title, state, labels, opened (day, hour), closed
    ("techcorp/api-server", 10, "bob", "Login times out behind proxy", "CLOSED", ["bug"],
     (0, 8), (1, 9)),
    ("techcorp/api-server", 11, "alice", "Document rate limits", "OPEN", ["docs"], (1, 12), None),
    ("techcorp/web-dashboard", 10, "charlie", "Chart colours for colour-blind users", "OPEN",
     ["accessibility", "enhancement"], (0, 10), None),
    ("startup-inc/mobile-app", 10, "charlie", "Crash on Android 14 start", "CLOSED",
     ["bug", "incident", "p1"], (1, 7), (1, 16)),
]  # fmt: skip

# Who closed each closed issue (the sender of its `closed` event).
CLOSERS = {("techcorp/api-server", 10): "bob", ("startup-inc/mobile-app", 10): "bob"}

DEPLOYMENTS = [
    # repo, environment, created (day, hour), state, finished (day, hour, minute)
    ("techcorp/api-server", "production", (1, 10), "SUCCESS", (1, 10, 20)),
    ("techcorp/api-server", "staging", (1, 12), "SUCCESS", (1, 12, 5)),
    ("techcorp/api-server", "production", (1, 15), "FAILURE", (1, 15, 10)),
    ("techcorp/api-server", "production", (1, 17), "SUCCESS", (1, 17, 30)),
    ("startup-inc/mobile-app", "production", (0, 18), "SUCCESS", (0, 18, 30)),
    ("startup-inc/mobile-app", "production", (1, 12), "SUCCESS", (1, 12, 40)),
]  # fmt: skip

RULES = [
    # org, name, trigger, conditions, channel, target, cooldown seconds
    ("techcorp", "High-risk pull requests", "ai_review.completed",
     {"all": [{"field": "risk_score", "op": ">=", "value": 70}]},
     "SLACK", "https://hooks.slack.example/services/T000/B000/techcorp", 0),
    ("techcorp", "Failed deployments", "deployment.failed", {}, "EMAIL",
     "oncall@techcorp.example", 3600),
    ("startup-inc", "Merged pull requests", "pull_request.merged", {}, "WEBHOOK",
     "https://hooks.startup.example/devmetrics", 0),
]  # fmt: skip

NOTIFICATION_LOGS = [
    # org, rule name, event key, status, attempts, response code, last error, day, hour
    ("techcorp", "High-risk pull requests", "ai_review:techcorp/api-server#1", "SENT", 1, 200,
     None, 0, 15),
    ("startup-inc", "Merged pull requests", "pull_request.merged:startup-inc/mobile-app#1",
     "FAILED", 2, 503, "503 Service Unavailable", 1, 11),
]  # fmt: skip

API_KEYS = [
    # org, name, creator, scopes
    ("techcorp", "CI pipeline", "alice", ["activity:read", "metrics:read"]),
    ("startup-inc", "Read-only dashboard", "bob", ["metrics:read"]),
]


@dataclass
class SeedReport:
    created: dict[str, int] = field(default_factory=dict)
    api_keys: list[tuple[str, str, str]] = field(default_factory=list)  # (org, name, plaintext)

    def add(self, table: str, count: int):
        self.created[table] = self.created.get(table, 0) + count

    def lines(self) -> list[str]:
        total = sum(self.created.values())
        out = [f"seed: {total} row(s) created" + ("" if total else " (already seeded)")]
        out += [f"  {table}: {n}" for table, n in self.created.items() if n]
        for org, name, plaintext in self.api_keys:
            out.append(f"API key {name!r} for {org} (shown once, store it now): {plaintext}")
        return out


def at(day_index: int, hour: int) -> dt.datetime:
    return dt.datetime.combine(DAYS[day_index], dt.time(hour), tzinfo=dt.UTC)


def fake_sha(*parts) -> str:
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()


def _insert_ignore(model, rows: list[dict], report: SeedReport) -> None:
    """Insert rows whose natural key is new; rows that exist are left exactly as they are."""
    before = model.select().count()
    for batch in chunked(rows, 200):
        model.insert_many(batch).on_conflict_ignore().execute()
    report.add(model._meta.table_name, model.select().count() - before)


def _ensure(model, report: SeedReport, lookup: dict, values: dict):
    """Get-or-create for a table without a natural unique key (the audit log)."""
    query = model.select()
    for name, value in lookup.items():
        query = query.where(getattr(model, name) == value)
    row = query.first()
    if row is None:
        row = model.create(**lookup, **values)
        report.add(model._meta.table_name, 1)
        return row, True
    return row, False


def seed() -> SeedReport:
    report = SeedReport()
    with db.atomic():
        _seed_people(report)
        users = {u.login: u for u in User.select()}
        orgs = {o.slug: o for o in Organization.select()}
        repos = _seed_repositories(report, orgs)
        _seed_activity(report, users, repos)
        _seed_metrics(report, orgs)
        _seed_notifications(report, users, orgs)
        _seed_security(report, users, orgs, repos)
    return report


def _seed_people(report: SeedReport) -> None:
    _insert_ignore(
        User,
        [
            {
                "github_id": gid,
                "login": login,
                "name": name,
                "email": email,
                "avatar_url": f"https://avatars.githubusercontent.com/u/{gid}?v=4",
                # The demo's people have signed in (without GitHub: they hold no token).
                "last_login_at": at(0, 0),
                "created_at": at(0, 0),
                "updated_at": at(0, 0),
            }
            for login, gid, name, email in USERS
        ],
        report,
    )
    _insert_ignore(
        Organization,
        [
            {
                "slug": slug,
                "name": name,
                "plan": plan,
                "is_personal": personal,
                "github_login": login,
                "settings": {"timezone": "UTC", "digest_hour": 9},
                "created_at": at(0, 0),
                "updated_at": at(0, 0),
            }
            for slug, name, plan, personal, login in ORGS
        ],
        report,
    )
    users = {u.login: u.id for u in User.select(User.id, User.login)}
    # Their e-mails, as GitHub listed them verified at sign-in (commits with them are theirs).
    _insert_ignore(
        UserEmail,
        [
            {"user": users[login], "email": email, "verified": True, "linked": True}
            | {"created_at": at(0, 0), "updated_at": at(0, 0)}
            for login, _gid, _name, email in USERS
        ],
        report,
    )
    orgs = {o.slug: o.id for o in Organization.select(Organization.id, Organization.slug)}
    _insert_ignore(
        UserOrganization,
        [
            {"user": users[u], "organization": orgs[o], "role": role, "created_at": at(0, 0)}
            for u, o, role in MEMBERSHIPS
        ],
        report,
    )


def _seed_repositories(report: SeedReport, orgs) -> dict[str, Repository]:
    owners = {
        org: user
        for user, org, role in MEMBERSHIPS
        if role == "OWNER"  # each organization's OWNER connected its repositories
    }
    users = {u.login: u.id for u in User.select(User.id, User.login)}
    _insert_ignore(
        Repository,
        [
            {
                "organization": orgs[org],
                "full_name": full_name,
                "github_id": gid,
                "default_branch": "main",
                "language": language,
                "private": private,
                "sensitivity": sensitivity,
                "settings": settings,
                # A fresh random secret is only stored when the row is new.
                "webhook_secret_encrypted": crypto.encrypt(secrets.token_hex(20)),
                "verified_at": at(0, 0),
                "connected_by": users[owners[org]],
                "connected_at": at(0, 0),
                "created_at": at(0, 0),
                "updated_at": at(0, 0),
            }
            for org, full_name, gid, language, private, sensitivity, settings in REPOSITORIES
        ],
        report,
    )
    return {r.full_name: r for r in Repository.select()}


def _seed_activity(report: SeedReport, users, repos) -> None:
    _insert_ignore(
        Commit,
        [
            {
                "repository": repos[repo],
                "organization": repos[repo].organization_id,
                "sha": fake_sha(repo, i),
                "author": users[author],
                "author_login": author,
                "author_email": users[author].email,
                "author_name": users[author].name,
                "message": message,
                "additions": adds,
                "deletions": dels,
                "files_changed": files,
                "authored_at": at(day, hour),
                "committed_at": at(day, hour),
                "branch": branch,
                "pushed_at": at(day, hour),
                "created_at": at(day, hour),
            }
            for i, (repo, author, day, hour, adds, dels, files, branch, message) in enumerate(
                COMMITS
            )
        ],
        report,
    )
    # The commits' e-mails, each shown by GitHub with its author's username from the first.
    paired = {}
    for repo, author, day, hour, *_ in sorted(COMMITS, key=lambda c: (c[2], c[3])):
        key = (repos[repo].organization_id, users[author].email)
        paired.setdefault(key, (author, at(day, hour)))
    _insert_ignore(
        AuthorEmail,
        [
            {
                "organization": org_id,
                "email": email,
                "github_login": author,
                "paired_user": users[author],
                "user": users[author],
                "first_seen_at": moment,
                "paired_at": moment,
                "updated_at": moment,
            }
            for (org_id, email), (author, moment) in sorted(paired.items())
        ],
        report,
    )
    rows = []
    for repo, number, author, title, state, head_ref, opened, reviewed, ended in PULL_REQUESTS:
        branch_commits = [c for c in COMMITS if c[0] == repo and c[7] == head_ref]
        rows.append(
            {
                "repository": repos[repo],
                "organization": repos[repo].organization_id,
                "number": number,
                "github_id": repos[repo].github_id * 1000 + number,
                "author": users[author],
                "author_login": author,
                "title": title,
                "body": f"{title}.",
                "state": state,
                "base_ref": "main",
                "head_ref": head_ref,
                "head_sha": fake_sha(repo, "pr", number),
                "additions": sum(c[4] for c in branch_commits),
                "deletions": sum(c[5] for c in branch_commits),
                "changed_files": sum(c[6] for c in branch_commits),
                "commits_count": len(branch_commits),
                "created_at": at(*opened),
                "ready_at": at(*opened),
                "merged_at": at(*ended) if state == "MERGED" else None,
                "closed_at": at(*ended) if ended else None,
                "merge_commit_sha": fake_sha(repo, "merge", number) if state == "MERGED" else None,
                "updated_at": at(*(ended or reviewed or opened)),
            }
        )
    _insert_ignore(PullRequest, rows, report)
    pulls = {(p.repository.full_name, p.number): p for p in PullRequest.select().join(Repository)}
    reviews = []
    for repo, number, author, _t, state, _ref, _opened, reviewed, _ended in PULL_REQUESTS:
        if reviewed:
            reviewer = users[REVIEWERS[author]]
            pr = pulls[(repo, number)]
            when = at(*reviewed)
            reviews += [
                {"kind": "REVIEW_COMMENT", "github_id": pr.github_id * 10 + 1, "state": None,
                 "submitted_at": when - dt.timedelta(minutes=20)},
                {"kind": "REVIEW_COMMENT", "github_id": pr.github_id * 10 + 2, "state": None,
                 "submitted_at": when - dt.timedelta(minutes=10)},
                {"kind": "REVIEW", "github_id": pr.github_id * 10 + 3,
                 "state": "APPROVED" if state == "MERGED" else "CHANGES_REQUESTED",
                 "submitted_at": when},
            ]  # fmt: skip
            for row in reviews[-3:]:
                row.update(
                    pull_request=pr,
                    organization=pr.organization_id,
                    reviewer=reviewer,
                    reviewer_login=reviewer.login,
                )
    _insert_ignore(Review, reviews, report)
    from services.activity.processing import refresh_review_times  # as webhooks would

    for pr in pulls.values():
        refresh_review_times(pr)
    _insert_ignore(
        Issue,
        [
            {
                "repository": repos[repo],
                "organization": repos[repo].organization_id,
                "number": number,
                "github_id": repos[repo].github_id * 1000 + number,
                "author": users[author],
                "author_login": author,
                "title": title,
                "state": state,
                "labels": labels,
                "created_at": at(*opened),
                "closed_at": at(*closed) if closed else None,
                "updated_at": at(*(closed or opened)),
            }
            for repo, number, author, title, state, labels, opened, closed in ISSUES
        ],
        report,
    )
    issues = {(i.repository.full_name, i.number): i for i in Issue.select().join(Repository)}
    _insert_ignore(
        IssueClosure,
        [
            {
                "issue": issues[(repo, number)],
                "organization": repos[repo].organization_id,
                "repository": repos[repo],
                "closed_at": at(*closed),
                "closer": users[CLOSERS[(repo, number)]],
                "closer_login": CLOSERS[(repo, number)],
            }
            for repo, number, _a, _t, _s, _l, _o, closed in ISSUES
            if closed
        ],
        report,
    )
    _insert_ignore(
        Deployment,
        [
            {
                "repository": repos[repo],
                "organization": repos[repo].organization_id,
                "github_id": repos[repo].github_id * 1000 + 500 + i,
                "environment": environment,
                "sha": fake_sha(repo, "deploy", i),
                "ref": "main",
                "creator_login": "github-actions[bot]",
                "state": state,
                "created_at": at(*created),
                "status_at": at(*finished[:2]) + dt.timedelta(minutes=finished[2]),
                "finished_at": at(*finished[:2]) + dt.timedelta(minutes=finished[2]),
            }
            for i, (repo, environment, created, state, finished) in enumerate(DEPLOYMENTS)
        ],
        report,
    )


def _seed_metrics(report: SeedReport, orgs) -> None:
    """Metrics and AI reviews come from the seeded activity, computed as the services
    compute them (only when this run seeded something: a second run changes nothing)."""
    if not sum(report.created.values()):
        return
    from services.metrics.ai_review.logic import review_all
    from services.metrics.engine import recompute_full

    for org in orgs.values():
        recompute_full(org.id, announce=False)
    report.add(AIReview._meta.table_name, review_all())


def _seed_notifications(report: SeedReport, users, orgs) -> None:
    _insert_ignore(
        NotificationRule,
        [
            {
                "organization": orgs[org],
                "name": name,
                "trigger": trigger,
                "conditions": conditions,
                "channel": channel,
                "target": target,
                "secret_encrypted": (
                    crypto.encrypt(secrets.token_hex(20)) if channel == "WEBHOOK" else None
                ),
                "cooldown_seconds": cooldown,
                "created_by": users["alice" if org == "techcorp" else "bob"],
                "created_at": at(0, 1),
                "updated_at": at(0, 1),
            }
            for org, name, trigger, conditions, channel, target, cooldown in RULES
        ],
        report,
    )
    rules = {(r.organization_id, r.name): r for r in NotificationRule.select()}
    _insert_ignore(
        NotificationLog,
        [
            {
                "rule": rules[(orgs[org].id, rule)],
                "organization": orgs[org],
                "event_key": key,
                "status": status,
                "attempts": attempts,
                "response_code": code,
                "last_error": error,
                "payload": {"event_key": key},
                "sent_at": at(day, hour) if status == "SENT" else None,
                "created_at": at(day, hour),
            }
            for org, rule, key, status, attempts, code, error, day, hour in NOTIFICATION_LOGS
        ],
        report,
    )


def _seed_security(report: SeedReport, users, orgs, repos) -> None:
    for org, name, creator, scopes in API_KEYS:
        existing = (
            ApiKey.select()
            .where((ApiKey.organization == orgs[org]) & (ApiKey.name == name))
            .exists()
        )
        if existing:
            continue
        plaintext, prefix, key_hash = crypto.new_api_key()
        ApiKey.create(
            organization=orgs[org],
            name=name,
            created_by=users[creator],
            prefix=prefix,
            key_hash=key_hash,
            scopes=scopes,
            created_at=at(0, 2),
        )
        report.add(ApiKey._meta.table_name, 1)
        report.api_keys.append((org, name, plaintext))

    entries = [(org, users[u], "organization.created", "organization", orgs[org].id, 0)
               for u, org in (("alice", "techcorp"), ("bob", "startup-inc"),
                              ("alice", "alice-personal"))]  # fmt: skip
    entries += [
        (o, users["alice" if o == "techcorp" else "bob"], "member.added", "user", users[u].id, 0)
        for u, o, role in MEMBERSHIPS
        if role != "OWNER"
    ]
    entries += [
        (r.organization.slug, users["bob"], "repository.connected", "repository", r.id, 0)
        for r in repos.values()
    ]
    entries += [
        (o, users[c], "api_key.created", "api_key", k.id, 2)
        for o, n, c, _s in API_KEYS
        for k in ApiKey.select().where((ApiKey.organization == orgs[o]) & (ApiKey.name == n))
    ]
    for org, actor, action, target_type, target_id, hour in entries:
        _ensure(
            AuditLog,
            report,
            {
                "organization": orgs[org],
                "action": action,
                "target_type": target_type,
                "target_id": str(target_id),
            },
            {
                "actor_user": actor,
                "ip": "127.0.0.1",
                "user_agent": "devmetrics-seed",
                "metadata": {"source": "seed"},
                "created_at": at(0, hour),
            },
        )
