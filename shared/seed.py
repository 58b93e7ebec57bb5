"""Demo data for development and tests: `devmetrics db seed`.

Idempotent: every row has a natural key (unique constraints, or a lookup for tables that
have none), so a second run inserts nothing and changes nothing. The data set is anchored
on fixed UTC days, never on "today", so it is the same whenever it is loaded.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections import defaultdict
from dataclasses import dataclass, field

from peewee import chunked

from shared import crypto
from shared.database import db
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
    # org, full_name, github_id, language, private, sensitivity
    ("techcorp", "techcorp/api-server", 70001, "Python", True, "CONFIDENTIAL"),
    ("techcorp", "techcorp/web-dashboard", 70002, "TypeScript", True, "INTERNAL"),
    ("startup-inc", "startup-inc/mobile-app", 70003, "Kotlin", False, "PUBLIC"),
]

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
     ["bug", "p1"], (1, 7), (1, 16)),
]  # fmt: skip

AI_REVIEWS = [
    # repo, pr number, provider, model, score, level, summary, findings
    ("techcorp/api-server", 1, "anthropic", "claude-sonnet", 72, "HIGH",
     "Rate limiter changes authentication paths.",
     [{"file": "api/limits.py", "line": 42, "severity": "high",
       "message": "Limit keyed on a client-supplied header"}]),
    ("techcorp/api-server", 2, "anthropic", "claude-sonnet", 35, "MEDIUM",
     "Export streams user data; check access control.",
     [{"file": "api/export.py", "line": 10, "severity": "medium",
       "message": "No org scope on the export query"}]),
    ("techcorp/web-dashboard", 1, "heuristic", None, 12, "LOW",
     "Small UI change with tests.", []),
    ("startup-inc/mobile-app", 1, "heuristic", None, 55, "MEDIUM",
     "Large change touching nine files.",
     [{"file": "app/Onboarding.kt", "line": 1, "severity": "medium",
       "message": "300 lines added without tests"}]),
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
        _seed_metrics(report, users, orgs, repos)
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
                # A fresh random secret is only stored when the row is new.
                "webhook_secret_encrypted": crypto.encrypt(secrets.token_hex(20)),
                "connected_at": at(0, 0),
                "created_at": at(0, 0),
                "updated_at": at(0, 0),
            }
            for org, full_name, gid, language, private, sensitivity in REPOSITORIES
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
                "review_comments": 2 if reviewed else 0,
                "created_at": at(*opened),
                "ready_at": at(*opened),
                "first_commit_at": min((at(c[2], c[3]) for c in branch_commits), default=None),
                "first_review_at": at(*reviewed) if reviewed else None,
                "approved_at": at(*reviewed) if reviewed and state == "MERGED" else None,
                "merged_at": at(*ended) if state == "MERGED" else None,
                "closed_at": at(*ended) if ended else None,
                "merge_commit_sha": fake_sha(repo, "merge", number) if state == "MERGED" else None,
                "updated_at": at(*(ended or reviewed or opened)),
            }
        )
    _insert_ignore(PullRequest, rows, report)
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


def _seed_metrics(report: SeedReport, users, orgs, repos) -> None:
    """Daily figures derived from the seeded activity, so the numbers agree with the rows."""
    org_of_repo = {name: r.organization_id for name, r in repos.items()}
    dev = defaultdict(lambda: defaultdict(int))  # (user, org, date) -> counters
    team = defaultdict(lambda: defaultdict(int))  # (org, date) -> counters
    repo_day = defaultdict(lambda: defaultdict(int))  # (repo, date) -> counters
    authors = defaultdict(set)  # (org, date) -> active developers
    repo_authors = defaultdict(set)

    def bump(repo, user, day, **counters):
        org, date = org_of_repo[repo], DAYS[day]
        for name, n in counters.items():
            dev[(users[user].id, org, date)][name] += n
            team[(org, date)][name] += n
            repo_day[(repos[repo].id, date)][name] += n
        authors[(org, date)].add(user)
        repo_authors[(repos[repo].id, date)].add(user)

    for repo, author, day, _h, adds, dels, _f, _b, _m in COMMITS:
        bump(repo, author, day, commits=1, additions=adds, deletions=dels)
    for repo, _n, author, _t, state, _ref, opened, reviewed, ended in PULL_REQUESTS:
        bump(repo, author, opened[0], prs_opened=1)
        if reviewed:
            bump(repo, REVIEWERS[author], reviewed[0], reviews=1, review_comments=2)
        if state == "MERGED":
            bump(repo, author, ended[0], prs_merged=1)
    for repo, _n, author, _t, _s, _l, opened, closed in ISSUES:
        bump(repo, author, opened[0], issues_opened=1)
        if closed:
            bump(repo, author, closed[0], issues_closed=1)

    merged_cycle = defaultdict(list)  # (org, date) -> cycle times of PRs merged that day
    for repo, _n, _a, _t, state, head_ref, _o, _r, ended in PULL_REQUESTS:
        if state == "MERGED":
            first = min(at(c[2], c[3]) for c in COMMITS if c[0] == repo and c[7] == head_ref)
            key = (org_of_repo[repo], DAYS[ended[0]])
            merged_cycle[key].append((at(*ended) - first).total_seconds())

    dev_fields = ("commits", "additions", "deletions", "prs_opened", "prs_merged")
    _insert_ignore(
        DeveloperMetric,
        [
            {
                "user": user,
                "organization": org,
                "date": date,
                **{name: c.get(name, 0) for name in dev_fields},
                "prs_reviewed": c.get("reviews", 0),
                "reviews_given": c.get("reviews", 0),
                "review_comments": c.get("review_comments", 0),
                "issues_opened": c.get("issues_opened", 0),
                "issues_closed": c.get("issues_closed", 0),
                "computed_at": at(1, 23),
            }
            for (user, org, date), c in sorted(dev.items())
        ],
        report,
    )
    team_fields = dev_fields + ("reviews", "review_comments", "issues_opened", "issues_closed")
    _insert_ignore(
        TeamMetric,
        [
            {
                "organization": org,
                "date": date,
                "active_developers": len(authors[(org, date)]),
                **{name: c.get(name, 0) for name in team_fields},
                "cycle_time_median_s": _median(merged_cycle.get((org, date), [])),
                "computed_at": at(1, 23),
            }
            for (org, date), c in sorted(team.items())
        ],
        report,
    )
    _insert_ignore(
        RepositoryStats,
        [
            {
                "repository": repo,
                "organization": next(r.organization_id for r in repos.values() if r.id == repo),
                "date": date,
                "contributors": len(repo_authors[(repo, date)]),
                **{name: c.get(name, 0) for name in team_fields},
                "computed_at": at(1, 23),
            }
            for (repo, date), c in sorted(repo_day.items())
        ],
        report,
    )
    pulls = {(p.repository.full_name, p.number): p for p in PullRequest.select().join(Repository)}
    _insert_ignore(
        AIReview,
        [
            {
                "pull_request": pulls[(repo, number)],
                "organization": org_of_repo[repo],
                "head_sha": pulls[(repo, number)].head_sha,
                "provider": provider,
                "model": model,
                "risk_score": score,
                "risk_level": level,
                "summary": summary,
                "findings": findings,
                "created_at": pulls[(repo, number)].created_at + dt.timedelta(minutes=5),
            }
            for repo, number, provider, model, score, level, summary, findings in AI_REVIEWS
        ],
        report,
    )


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


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
