"""A deterministic org history for the recompute and read benchmarks, written straight into a
migrated PostgreSQL database with COPY (never through the ORM row by row).

    generate(url, commits=1_000_000, prs=100_000, deployments=5_000)  # the issue's sizes
    python -m bench.generate [--quick] [DATABASE_URL]                 # by hand

Same arguments, same rows: every value comes from one seeded `random.Random` and the history
ends at a fixed UTC day (`END`), never at "today". Ids are assigned here (fresh database), so
foreign keys need no round trip; the sequences are moved past them at the end.

Shapes (what the metrics engine reads: services/metrics/engine/derive.py and daily.py):
- developers are users (login, e-mail) with a membership; a few bots (`[bot]` logins, users
  with is_bot) open pull requests, comment, commit and create deployments;
- a pull request's lifecycle: commits pushed to its head branch (first one = first_commit_at,
  derived by the engine), opened (some as drafts, made ready later), first review by another
  developer, approval, merge (a merge commit on main), then the repository's next production
  deployment ships it; some are closed unmerged or still open; a few are reverted
  (`revert-<n>-...` branch) and a fifth list their commits in pull_request_commits (backfill);
- deployments: GitHub deployments to production (some to staging), mostly successful, some
  failed or errored, a few never finished; issues, some labelled `incident`, most closed with
  an issue closure by a developer;
- commits on main by developers, by bots, by an e-mail that maps to a user (attributed by the
  engine) and by authors who map to no one.
The engine's derived columns (first_commit_at, deployed_at, the stages, production
deployments, incidents) are left empty: computing them is part of the recompute.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import random
import sys
import time
from bisect import bisect_left

import psycopg2

END = dt.datetime(2026, 11, 1)  # the history ends before this UTC midnight (fixed)
ORG_SLUG = "bench-org"
BOTS = ("dependabot[bot]", "renovate[bot]", "github-actions[bot]", "codecov[bot]")
HOUR = 3600.0
DAY = 86400.0
FLUSH_ROWS = 50_000
LAST_MINUTE = dt.timedelta(minutes=1)


class Copier:
    """Rows buffered as COPY text and sent in batches of FLUSH_ROWS."""

    def __init__(self, cur, table: str, columns: tuple[str, ...], parent: Copier | None = None):
        self.cur, self.table, self.columns = cur, table, columns
        self.parent = parent  # rows this table's foreign keys point at go first
        self.lines: list[str] = []
        self.count = 0

    def add(self, *values) -> None:
        self.lines.append("\t".join(map(_text, values)))
        self.count += 1
        if len(self.lines) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.parent is not None:
            self.parent.flush()
        if not self.lines:
            return
        buffer = io.StringIO("\n".join(self.lines) + "\n")
        self.cur.copy_expert(
            f"COPY {self.table} ({', '.join(self.columns)}) FROM STDIN WITH (FORMAT text)", buffer
        )
        self.lines = []


def _text(value) -> str:
    # Every text value generated here is free of tabs, newlines and backslashes.
    if value is None:
        return r"\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, dt.datetime):
        return value.isoformat(" ")
    return str(value)


class History:
    """The random choices, kept in one place so that the same seed gives the same rows."""

    def __init__(self, seed: int, days: int):
        self.rng = random.Random(seed)
        self.start = END - dt.timedelta(days=days)
        self.span_s = days * DAY

    def moment(self, lo: float = 0.0, hi: float | None = None) -> dt.datetime:
        """A working-hours-weighted moment between lo and hi seconds after the start:
        weekends are quieter (most of their draws move to the Monday after)."""
        hi = self.span_s if hi is None else hi
        rng = self.rng
        at = self.start + dt.timedelta(seconds=rng.uniform(lo, hi))
        if at.weekday() >= 5 and rng.random() < 0.7:
            at += dt.timedelta(days=7 - at.weekday())
        hour = min(23, max(0, int(rng.gauss(14, 3.5))))
        at = at.replace(hour=hour, minute=rng.randrange(60), second=rng.randrange(60))
        return min(at, END - dt.timedelta(seconds=1))

    def after(self, moment: dt.datetime, mean_s: float, minimum_s: float = 60.0):
        return moment + dt.timedelta(seconds=minimum_s + self.rng.expovariate(1.0 / mean_s))

    def sha(self) -> str:
        return f"{self.rng.getrandbits(160):040x}"

    def lines(self) -> tuple[int, int]:
        size = int(math.exp(self.rng.gauss(4.0, 1.3)))
        return size, int(size * self.rng.uniform(0.05, 0.6))


def generate(
    database_url: str,
    *,
    commits: int,
    prs: int,
    deployments: int,
    developers: int = 200,
    repos: int = 20,
    days: int = 365,
    seed: int = 1,
) -> dict:
    """Write the history into the (migrated, empty) database; returns the org slug, the
    counts of rows per table and the generation time."""
    started = time.perf_counter()
    h = History(seed, days)
    rng = h.rng
    conn = psycopg2.connect(database_url)
    counts: dict[str, int] = {}
    try:
        with conn, conn.cursor() as cur:
            created = h.start - dt.timedelta(days=30)
            cur.execute(
                "INSERT INTO organizations (id, name, slug, plan, is_personal, github_login,"
                " settings, created_at, updated_at) VALUES (1, 'Bench Org', %s, 'ENTERPRISE',"
                " false, %s, '{}', %s, %s)",
                (ORG_SLUG, ORG_SLUG, created, created),
            )
            org = 1

            # People: developers (ids 1..n), then the bots.
            users = Copier(
                cur,
                "users",
                ("id", "github_id", "login", "name", "email", "is_bot", "created_at", "updated_at"),
            )
            members = Copier(
                cur,
                "user_organizations",
                ("id", "user_id", "organization_id", "role", "created_at", "updated_at"),
            )
            logins = {}
            for n in range(1, developers + 1):
                login = f"dev{n:03d}"
                logins[n] = login
                users.add(
                    n, 900_000 + n, login, f"Developer {n}", f"{login}@bench.example", False,
                    created, created,
                )  # fmt: skip
                role = "OWNER" if n == 1 else ("ADMIN" if n <= 5 else "MEMBER")
                members.add(n, n, org, role, created, created)
            bot_ids = {}
            for k, login in enumerate(BOTS, start=developers + 1):
                bot_ids[login] = k
                logins[k] = login
                users.add(k, 800_000 + k, login, None, None, True, created, created)
            users.flush()
            members.flush()
            counts["users"], counts["user_organizations"] = users.count, members.count
            people = list(range(1, developers + 1))
            # A few developers do most of the work (a long tail, as in real teams).
            weights = [1.0 / (1 + i / 25) for i in range(developers)]
            cumulative = _cumulative(weights)

            def developer() -> int:
                return people[bisect_left(cumulative, rng.random() * cumulative[-1])]

            # Repositories: some far busier than others.
            repo_copier = Copier(
                cur,
                "repositories",
                ("id", "organization_id", "github_id", "full_name", "default_branch",
                 "language", "private", "sensitivity", "is_active", "connected_at",
                 "verified_at", "created_at", "updated_at", "settings", "backfill_state"),
            )  # fmt: skip
            for r in range(1, repos + 1):
                repo_copier.add(
                    r, org, 700_000 + r, f"{ORG_SLUG}/service-{r:02d}", "main",
                    rng.choice(("Python", "Go", "TypeScript", "Kotlin")), True, "INTERNAL", True,
                    created, created, created, created, "{}", "{}",
                )  # fmt: skip
            repo_copier.flush()
            counts["repositories"] = repo_copier.count
            repo_weights = _cumulative([1.0 / (1 + r / 4) for r in range(repos)])

            def repository() -> int:
                return 1 + bisect_left(repo_weights, rng.random() * repo_weights[-1])

            commit_rows = Copier(
                cur,
                "commits",
                ("id", "repository_id", "organization_id", "sha", "author_id", "author_login",
                 "author_email", "author_name", "author_is_bot", "message", "additions",
                 "deletions", "files_changed", "authored_at", "committed_at", "branch",
                 "pushed_at", "created_at"),
            )  # fmt: skip
            commit_id = 0

            def commit(repo, author_id, login, email, is_bot, authored, branch) -> str:
                nonlocal commit_id
                commit_id += 1
                sha = h.sha()
                pushed = authored + dt.timedelta(seconds=rng.randrange(30, 1800))
                commit_rows.add(
                    commit_id, repo, org, sha, author_id, login, email,
                    login or "Someone", is_bot, "Change things", 0, 0, rng.randrange(1, 9),
                    authored, authored, branch, pushed, pushed,
                )  # fmt: skip
                return sha

            # Deployments first: a merged pull request waits for its repository's next one.
            deploy_rows = Copier(
                cur,
                "deployments",
                ("id", "repository_id", "organization_id", "kind", "github_id", "environment",
                 "sha", "ref", "creator_login", "state", "created_at", "status_at",
                 "finished_at"),
            )  # fmt: skip
            for d in range(1, deployments + 1):
                repo = repository()
                at = h.moment()
                environment = "production" if rng.random() < 0.9 else "staging"
                roll = rng.random()
                state = (
                    "SUCCESS" if roll < 0.88 else "FAILURE" if roll < 0.95
                    else "ERROR" if roll < 0.98 else "IN_PROGRESS"
                )  # fmt: skip
                finished = None if state == "IN_PROGRESS" else h.after(at, 600, 120)
                if finished is not None and finished >= END:
                    state, finished = "IN_PROGRESS", None  # still running when the history ends
                creator = "github-actions[bot]" if rng.random() < 0.6 else logins[developer()]
                deploy_rows.add(
                    d, repo, org, "DEPLOYMENT", 500_000 + d, environment, h.sha(), "main",
                    creator, state, at, finished or at, finished,
                )  # fmt: skip
            deploy_rows.flush()
            counts["deployments"] = deploy_rows.count

            # Pull requests, their commits and reviews; numbers follow creation order.
            pr_rows = Copier(
                cur,
                "pull_requests",
                ("id", "repository_id", "organization_id", "number", "github_id", "author_id",
                 "author_login", "author_is_bot", "title", "body", "state", "draft", "base_ref",
                 "head_ref", "head_sha", "additions", "deletions", "changed_files",
                 "commits_count", "review_comments", "comments", "created_at", "ready_at",
                 "first_review_at", "approved_at", "merged_at", "closed_at", "merge_commit_sha",
                 "reverts_number", "updated_at"),
            )  # fmt: skip
            listed = Copier(cur, "pull_request_commits", ("pull_request_id", "sha"), pr_rows)
            review_rows = Copier(
                cur,
                "reviews",
                ("id", "pull_request_id", "organization_id", "kind", "github_id", "reviewer_id",
                 "reviewer_login", "reviewer_is_bot", "state", "commit_sha", "submitted_at"),
                pr_rows,
            )  # fmt: skip
            review_id = 0
            pending = []  # rows of the pull request being made (its own row goes first)

            def review(pr_id, kind, reviewer, state, sha, at) -> None:
                nonlocal review_id
                if at >= END:
                    return
                review_id += 1
                is_bot = reviewer in bot_ids.values()
                pending.append((
                    review_rows, review_id, pr_id, org, kind, 300_000_000 + review_id, reviewer,
                    logins[reviewer], is_bot, state, sha, at,
                ))  # fmt: skip

            def add_pull_request(*values) -> None:
                """The pull request's row, then the rows pointing at it."""
                pr_rows.add(*values)
                for copier, *row in pending:
                    copier.add(*row)
                pending.clear()

            # A fraction of the commits goes to pull request branches, the rest to main.
            reverts = max(1, prs // 200)
            plain_prs = prs - reverts
            per_pr = max(1.0, 0.6 * commits / max(plain_prs, 1))
            plans = []
            for _ in range(plain_prs):
                repo = repository()
                is_bot = rng.random() < 0.05
                author = bot_ids[rng.choice(BOTS[:2])] if is_bot else developer()
                first_commit = h.moment(0, h.span_s - 2 * HOUR)
                plans.append((first_commit, repo, author, is_bot))
            plans.sort()
            numbers = dict.fromkeys(range(1, repos + 1), 0)
            pr_id = 0
            merged_prs = []  # (pr id, repo, number, title, merged_at, author)
            budget = commits
            for first_commit, repo, author, is_bot in plans:
                pr_id += 1
                numbers[repo] += 1
                number = numbers[repo]
                login = logins[author]
                head = f"feature/{login.removesuffix('[bot]')}/{number}"
                n_commits = max(1, min(budget, round(rng.expovariate(1.0 / per_pr))))
                coding = rng.expovariate(1.0 / (1.2 * DAY))
                times = [first_commit] + sorted(
                    first_commit + dt.timedelta(seconds=rng.uniform(0, coding))
                    for _ in range(n_commits - 1)
                )
                opened = min(h.after(first_commit, 0.5 * coding + HOUR, 300), END - LAST_MINUTE)
                draft = rng.random() < 0.15
                ready = h.after(opened, 8 * HOUR) if draft else opened
                if draft and (rng.random() < 0.05 or ready >= END):
                    ready = None  # a draft never made ready (or not yet)
                roll = rng.random()
                fate = "MERGED" if roll < 0.86 else "CLOSED" if roll < 0.94 else "OPEN"
                if ready is None:
                    fate = "CLOSED" if roll < 0.5 else "OPEN"
                first_review = approved = merged = closed = None
                reviewers = [p for p in (developer(), developer(), developer()) if p != author]
                review_times = []
                if ready is not None and reviewers and (fate != "OPEN" or rng.random() < 0.5):
                    first_review = h.after(ready, 5 * HOUR)
                    review_times = [first_review]
                if fate == "MERGED":
                    approved = h.after(first_review or ready or opened, 3 * HOUR)
                    merged = h.after(approved, 2 * HOUR)
                    closed = merged
                elif fate == "CLOSED":
                    closed = h.after(opened, 2 * DAY)
                ended = closed or END
                if ended >= END or opened >= END:
                    fate, merged, closed, approved = "OPEN", None, None, None
                    ended = END
                if first_review is not None and first_review >= ended:
                    first_review, review_times = None, []
                times = [t for t in times if t < ended] or [first_commit]
                shas = []
                for authored in times:
                    if budget <= 0:
                        break
                    shas.append(
                        commit(repo, author, login, f"{login}@bench.example", is_bot,
                               authored, head)
                    )  # fmt: skip
                    budget -= 1
                if shas and rng.random() < 0.2:  # backfilled: the API lists its commits
                    for sha in shas:
                        pending.append((listed, pr_id, sha))
                additions, deletions = h.lines()
                # Reviews: the first by another developer; approval; thread comments (the
                # author answers in threads too); conversation comments; a bot now and then.
                if first_review and reviewers:
                    review(pr_id, "REVIEW", reviewers[0], "COMMENTED", shas[-1] if shas else None,
                           first_review)  # fmt: skip
                    if rng.random() < 0.3:
                        review(pr_id, "REVIEW", reviewers[-1], "CHANGES_REQUESTED", None,
                               h.after(first_review, 2 * HOUR))  # fmt: skip
                    if approved:
                        review(pr_id, "REVIEW", reviewers[-1], "APPROVED", None, approved)
                    until = (merged or closed or END) - first_review
                    for _ in range(rng.randrange(0, 5)):
                        at = first_review + until * rng.random()
                        who = author if rng.random() < 0.3 else rng.choice(reviewers)
                        review(pr_id, "REVIEW_COMMENT", who, None, None, at)
                        review_times.append(at)
                for _ in range(rng.randrange(0, 3)):
                    at = h.after(opened, 6 * HOUR)
                    if at < (closed or END):
                        review(pr_id, "ISSUE_COMMENT", rng.choice(reviewers or [author]), None,
                               None, at)  # fmt: skip
                if rng.random() < 0.1:
                    review(pr_id, "ISSUE_COMMENT", bot_ids["codecov[bot]"], None, None,
                           h.after(opened, 600, 30))  # fmt: skip
                merge_sha = None
                if merged:
                    merge_sha = commit(repo, author, login, f"{login}@bench.example", is_bot,
                                       merged, "main") if budget > 0 else None  # fmt: skip
                    budget -= merge_sha is not None
                title = f"Change {number} of service {repo}"
                add_pull_request(
                    pr_id, repo, org, number, 600_000_000 + pr_id, author, login, is_bot, title,
                    "What and why.", fate, draft, "main", head, shas[-1] if shas else None,
                    additions, deletions, rng.randrange(1, 20), len(shas),
                    max(0, len(review_times) - 1), 0, opened, ready, first_review, approved,
                    merged, closed, merge_sha, None, max(filter(None, (opened, closed))),
                )  # fmt: skip
                if merged:
                    merged_prs.append((pr_id, repo, number, title, merged, author))

            # Reverts of merged pull requests (GitHub's "Revert" button), merged quickly.
            made = 0
            for _pr, repo, number, title, merged_at, author in rng.sample(
                merged_prs, len(merged_prs)
            ):
                opened = h.after(merged_at, DAY, 600)
                merged = h.after(opened, 2 * HOUR)
                if merged >= END:
                    continue
                made += 1
                if made > reverts:
                    break
                pr_id += 1
                numbers[repo] += 1
                reviewer = developer()
                review(pr_id, "REVIEW", reviewer, "APPROVED", None, h.after(opened, HOUR, 60))
                add_pull_request(
                    pr_id, repo, org, numbers[repo], 600_000_000 + pr_id, author, logins[author],
                    False, f'Revert "{title}"', None, "MERGED", False, "main",
                    f"revert-{number}-feature", None, 10, 10, 1, 1, 0, 0, opened, opened,
                    None, None, merged, merged, None, number, merged,
                )  # fmt: skip
            for copier in (pr_rows, listed, review_rows):
                copier.flush()
            counts["pull_requests"] = pr_rows.count
            counts["pull_request_commits"] = listed.count
            counts["reviews"] = review_rows.count

            # The rest of the commits land on main: developers, bots, authors known by
            # e-mail only (mapped by the engine), and authors who map to no one.
            while budget > 0:
                roll = rng.random()
                if roll < 0.88:
                    who = developer()
                    commit(repository(), who, logins[who], f"{logins[who]}@bench.example",
                           False, h.moment(), "main")  # fmt: skip
                elif roll < 0.94:
                    login = rng.choice(BOTS[:3])
                    commit(repository(), bot_ids[login], login, None, True, h.moment(), "main")
                elif roll < 0.97:
                    who = developer()
                    commit(repository(), None, None, f"{logins[who]}@bench.example", False,
                           h.moment(), "main")  # fmt: skip
                else:
                    stranger = rng.randrange(50)
                    commit(repository(), None, None, f"contractor{stranger}@elsewhere.example",
                           False, h.moment(), "main")  # fmt: skip
                budget -= 1
            commit_rows.flush()
            counts["commits"] = commit_rows.count

            # Issues: a tenth of the pull requests; some incidents; most get closed.
            issue_rows = Copier(
                cur,
                "issues",
                ("id", "repository_id", "organization_id", "number", "github_id", "author_id",
                 "author_login", "title", "state", "labels", "created_at", "closed_at",
                 "updated_at"),
            )  # fmt: skip
            closures = Copier(
                cur,
                "issue_closures",
                ("id", "issue_id", "organization_id", "repository_id", "closed_at", "closer_id",
                 "closer_login", "closer_is_bot"),
            )  # fmt: skip
            issue_plans = sorted((h.moment(), repository()) for _ in range(max(1, prs // 10)))
            issue_numbers = dict.fromkeys(range(1, repos + 1), 100_000)
            for issue_id, (opened, repo) in enumerate(issue_plans, start=1):
                issue_numbers[repo] += 1
                roll = rng.random()
                label = "incident" if roll < 0.03 else "bug" if roll < 0.5 else "enhancement"
                author = bot_ids["dependabot[bot]"] if rng.random() < 0.05 else developer()
                closed = h.after(opened, 4 * HOUR if label == "incident" else 5 * DAY)
                if closed >= END or rng.random() < 0.2:
                    closed = None
                issue_rows.add(
                    issue_id, repo, org, issue_numbers[repo], 400_000_000 + issue_id, author,
                    logins[author], f"Issue {issue_numbers[repo]}",
                    "CLOSED" if closed else "OPEN", json.dumps([label]), opened, closed,
                    closed or opened,
                )  # fmt: skip
                if closed:
                    closer = developer()
                    closures.add(
                        closures.count + 1, issue_id, org, repo, closed, closer, logins[closer],
                        False,
                    )  # fmt: skip
            issue_rows.flush()
            closures.flush()
            counts["issues"], counts["issue_closures"] = issue_rows.count, closures.count

            for table in (
                "organizations", "users", "user_organizations", "repositories", "commits",
                "deployments", "pull_requests", "reviews", "issues",
                "issue_closures",
            ):  # fmt: skip
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" (SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
                )
        # What autovacuum would have done by the time anyone reads this history: the planner
        # needs statistics, index-only scans a visibility map.
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
    finally:
        conn.close()
    seconds = time.perf_counter() - started
    return {
        "org_slug": ORG_SLUG,
        "organization_id": 1,
        "counts": counts,
        "first_day": (END - dt.timedelta(days=days)).date(),
        "last_day": (END - dt.timedelta(days=1)).date(),
        "seconds": seconds,
    }


def _cumulative(weights):
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


def sizes() -> dict:
    """The issue's sizes, or small ones in quick mode."""
    from bench.lib import size

    return {
        "commits": size(1_000_000, 10_000),
        "prs": size(100_000, 1_000),
        "deployments": size(5_000, 200),
        "developers": 200,
        "repos": 20,
        "days": 365,
    }


if __name__ == "__main__":
    from bench import lib

    urls = [a for a in sys.argv[1:] if not a.startswith("-")]
    if urls:
        summary = generate(urls[0], **sizes())
    else:
        with lib.bench_database("generate") as url:
            summary = generate(url, **sizes())
    print(f"generated {summary['counts']} in {summary['seconds']:.1f} s")
