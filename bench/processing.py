"""Issue 9, item 2: event processing (stored webhook events -> commits, pull requests,
reviews, issues, deployments), side by side with its limit.

    python -m bench.processing [--quick]

What runs: realistic events built from the real payloads in tests/fixtures/github/webhooks (varied
deterministically: repositories of one organization, PR and issue numbers, shas, logins,
times over a year) are stored the way `POST /webhooks/github` stores them (an `events` row,
PENDING, plus its `event_deliveries` row, through the same models), in bulk and untimed.
Then the `events` worker's own batch function (`devmetrics.workers.batch_for("events")`, i.e.
`processing.process_batch`) runs in this process, batch after batch at the worker's batch
size, until nothing is left: exactly what `devmetrics worker events` loops over, without a
subprocess's start-up and idle polling in the timing (one worker: the machine has two cores
and PostgreSQL needs one).

The limit: the rows processing produced (users it created, commits, pull requests, reviews,
issues, issue closures, deployments) read back and bulk inserted (`execute_values`, pages of
1,000) into empty copies of those tables (same columns, defaults and indexes), timed.

Also measured, on their own copies: the same events processed by two real `devmetrics worker
events` processes (one per core, start-up included), and, for scale, reading the stored
events back (SELECT + JSON decoding of the payloads), the least any processing that maps
the payloads in the application (as ours does, in Python) must do.

Each repeat processes a fresh copy of the same stored events (CREATE DATABASE ... TEMPLATE),
so repeats are comparable; the figures are medians.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import peewee as pw
import psycopg2
import psycopg2.extras

from bench import lib

ORG_SLUG = "bench-processing"
REPOSITORIES = 20
DEVELOPERS = 200
WORKFLOW_FILE = "deploy.yml"
# Tables processing writes activity into, in foreign-key order (the limit inserts these).
RESULT_TABLES = (
    "users",
    "commits",
    "pull_requests",
    "reviews",
    "issues",
    "issue_closures",
    "deployments",
)
STORE_CHUNK = 500  # events per bulk insert while storing (payloads are 8-27 kB each)
DELIVERY_NAMESPACE = uuid.UUID("6f1d3c9e-8d7a-4a39-9d55-2f3c1a0b9e11")


# --- realistic events -----------------------------------------------------------------------


def _template(path: str) -> dict:
    return json.loads((lib.WEBHOOKS / path).read_text())


def _sha(*parts) -> str:
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class EventFactory:
    """Deterministic GitHub deliveries made from the reference payloads: the same arguments
    always give the same events. Nested objects that do not vary (links, installation,
    head repository...) are shared between payloads rather than copied: they are only
    serialized."""

    def __init__(self, *, days: int = 365, end: dt.datetime | None = None):
        self.t = {
            "push": _template("push/with-new-branch.payload.json"),
            "opened": _template("pull_request/opened.payload.json"),
            "synchronize": _template("pull_request/synchronize.payload.json"),
            "closed": _template("pull_request/closed.payload.json"),
            "review": _template("pull_request_review/submitted.payload.json"),
            "comment": _template("pull_request_review_comment/created.payload.json"),
            "issue": _template("issues/opened.payload.json"),
            "deployment": _template("deployment/payload.json"),
            "deployment_status": _template("deployment_status/payload.json"),
            "workflow_run": _template("workflow_run/completed.payload.json"),
        }
        self.end = end or dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
        self.start = self.end - dt.timedelta(days=days)
        self.developers = [self._account(i) for i in range(DEVELOPERS)]
        self.repositories = [self._repository(j) for j in range(REPOSITORIES)]
        self.numbers = [0] * REPOSITORIES  # GitHub numbers issues and PRs in one sequence
        self.serial = 0  # global ids (PRs, reviews, comments, deployments, runs)

    # accounts and repositories
    def _account(self, i: int) -> dict:
        account = dict(self.t["opened"]["pull_request"]["user"])
        login = f"dev-{i:03d}"
        account.update(
            login=login,
            id=7_000_000 + i,
            node_id=f"U_bench{i}",
            html_url=f"https://github.com/{login}",
            url=f"https://api.github.com/users/{login}",
            type="User",
        )
        return account

    def _repository(self, j: int) -> dict:
        repo = dict(self.t["opened"]["repository"])
        name = f"service-{j:02d}"
        repo.update(
            id=900_000_000 + j,
            node_id=f"R_bench{j}",
            name=name,
            full_name=f"bench-org/{name}",
            html_url=f"https://github.com/bench-org/{name}",
            default_branch="main",
            private=True,
        )
        return repo

    def repository_rows(self) -> list[dict]:
        return [
            {
                "github_id": r["id"],
                "full_name": r["full_name"],
                "default_branch": "main",
                "private": True,
                "language": r.get("language"),
                "settings": {"deployment_source": f"workflow:{WORKFLOW_FILE}"},
            }
            for r in self.repositories
        ]

    def _dev(self, n: int) -> dict:
        return self.developers[n % DEVELOPERS]

    def _next_id(self) -> int:
        self.serial += 1
        return self.serial

    def _at(self, position: float, hours: float = 0) -> dt.datetime:
        span = (self.end - self.start).total_seconds()
        return self.start + dt.timedelta(seconds=span * position + hours * 3600)

    # events: (event_type, payload)
    def push(self, repo_i: int, n: int, commits: int, position: float) -> tuple[str, dict]:
        repo = self.repositories[repo_i]
        pusher = self._dev(n * 7 + repo_i)
        base = self.t["push"]["commits"][0]
        at = self._at(position)
        rows = []
        for k in range(commits):
            author = self._dev(n * 7 + repo_i + (k % 3))  # mostly the pusher, some co-authors
            sha = _sha("commit", repo_i, n, k)
            commit = dict(base)
            who = {"name": author["login"].title(), "email": f"{author['login']}@example.com"}
            commit.update(
                id=sha,
                tree_id=_sha("tree", repo_i, n, k),
                message=f"Change {k} of push {n}\n\nDetails of the change.",
                timestamp=_iso(at + dt.timedelta(minutes=k)),
                url=f"{repo['html_url']}/commit/{sha}",
                author={**who, "username": author["login"]},
                committer={**who, "username": author["login"]},
                added=[f"src/module_{k % 5}/new_{n}_{k}.py"] if k % 4 == 0 else [],
                removed=[],
                modified=[f"src/module_{k % 5}/file_{j}.py" for j in range(1 + k % 3)],
            )
            rows.append(commit)
        payload = dict(self.t["push"])
        before = _sha("commit", repo_i, n - 1, 0)
        payload.update(
            ref="refs/heads/main",
            before=before,
            after=rows[-1]["id"],
            created=False,
            base_ref=None,
            compare=f"{repo['html_url']}/compare/{before[:12]}...{rows[-1]['id'][:12]}",
            commits=rows,
            head_commit=rows[-1],
            repository={**repo, "pushed_at": int(at.timestamp())},
            pusher={"name": pusher["login"], "email": f"{pusher['login']}@example.com"},
            sender=pusher,
        )
        return "push", payload

    def pull_request_story(self, repo_i: int, n: int, position: float) -> list[tuple[str, dict]]:
        """opened, synchronize, a review comment, an approving review, the author's reply,
        closed (merged): a pull request's life as its webhooks tell it."""
        repo = self.repositories[repo_i]
        self.numbers[repo_i] += 1
        number = self.numbers[repo_i]
        author, reviewer = self._dev(n * 3 + repo_i), self._dev(n * 3 + repo_i + 1)
        pr_id = 400_000_000 + self._next_id()
        opened = self._at(position)
        heads = [_sha("head", repo_i, number, k) for k in range(2)]
        base_pr = self.t["opened"]["pull_request"]

        def pr_at(state: str, hours: float, head: str, merged: bool = False) -> dict:
            updated = opened + dt.timedelta(hours=hours)
            pr = dict(base_pr)
            pr.update(
                id=pr_id,
                number=number,
                url=f"https://api.github.com/repos/{repo['full_name']}/pulls/{number}",
                html_url=f"{repo['html_url']}/pull/{number}",
                state=state,
                title=f"Improve service {repo_i} part {n}",
                body="What changed and why.\n\nTested locally.",
                user=author,
                created_at=_iso(opened),
                updated_at=_iso(updated),
                closed_at=_iso(updated) if state == "closed" else None,
                merged_at=_iso(updated) if merged else None,
                merged=merged,
                merge_commit_sha=_sha("merge", repo_i, number) if merged else None,
                head={
                    **base_pr["head"],
                    "ref": f"feature/{n}",
                    "sha": head,
                    "label": f"bench-org:feature/{n}",
                },
                base={**base_pr["base"], "ref": "main", "repo": repo},
                draft=False,
                commits=2,
                additions=10 + n % 200,
                deletions=n % 50,
                changed_files=1 + n % 9,
            )
            return pr

        def event(kind: str, action: str, pr: dict, sender: dict, **extra) -> tuple[str, dict]:
            template = self.t[kind if kind in ("review", "comment") else action]
            payload = dict(template)
            payload.update(action=action, pull_request=pr, repository=repo, sender=sender, **extra)
            if "number" in template:
                payload["number"] = number
            event_type = {"review": "pull_request_review", "comment": "pull_request_review_comment"}
            return event_type.get(kind, "pull_request"), payload

        def comment(hours: float, who: dict, head: str) -> dict:
            c = dict(self.t["comment"]["comment"])
            cid = 600_000_000 + self._next_id()
            at = _iso(opened + dt.timedelta(hours=hours))
            c.update(
                id=cid,
                node_id=f"PRRC_{cid}",
                user=who,
                body="Could this be simpler?",
                commit_id=head,
                original_commit_id=head,
                created_at=at,
                updated_at=at,
                pull_request_review_id=None,
                html_url=f"{repo['html_url']}/pull/{number}#discussion_r{cid}",
            )
            return c

        review = dict(self.t["review"]["review"])
        review_id = 500_000_000 + self._next_id()
        review.update(
            id=review_id,
            node_id=f"PRR_{review_id}",
            user=reviewer,
            state="approved",
            body="Looks good.",
            commit_id=heads[1],
            submitted_at=_iso(opened + dt.timedelta(hours=5)),
        )
        return [
            event("pr", "opened", pr_at("open", 0, heads[0]), author),
            event("pr", "synchronize", pr_at("open", 2, heads[1]), author, before=heads[0]),
            event(
                "comment",
                "created",
                pr_at("open", 3, heads[1]),
                reviewer,
                comment=comment(3, reviewer, heads[1]),
            ),
            event("review", "submitted", pr_at("open", 5, heads[1]), reviewer, review=review),
            event(
                "comment",
                "created",
                pr_at("open", 6, heads[1]),
                author,
                comment=comment(6, author, heads[1]),
            ),
            event("pr", "closed", pr_at("closed", 8, heads[1], merged=True), author),
        ]

    def issue_story(self, repo_i: int, n: int, position: float) -> list[tuple[str, dict]]:
        repo = self.repositories[repo_i]
        self.numbers[repo_i] += 1
        number = self.numbers[repo_i]
        author, closer = self._dev(n * 5 + repo_i), self._dev(n * 5 + repo_i + 2)
        opened = self._at(position)
        closed = opened + dt.timedelta(hours=30)
        base = self.t["issue"]

        def issue_at(state: str) -> dict:
            issue = dict(base["issue"])
            issue.update(
                id=800_000_000 + number * REPOSITORIES + repo_i,
                number=number,
                title=f"Bug {n} in service {repo_i}",
                user=author,
                state=state,
                labels=[{**base["issue"]["labels"][0], "name": ("bug", "incident")[n % 2]}]
                if base["issue"].get("labels")
                else [],
                created_at=_iso(opened),
                updated_at=_iso(closed if state == "closed" else opened),
                closed_at=_iso(closed) if state == "closed" else None,
                html_url=f"{repo['html_url']}/issues/{number}",
            )
            return issue

        return [
            (
                "issues",
                {
                    **base,
                    "action": "opened",
                    "issue": issue_at("open"),
                    "repository": repo,
                    "sender": author,
                },
            ),
            (
                "issues",
                {
                    **base,
                    "action": "closed",
                    "issue": issue_at("closed"),
                    "repository": repo,
                    "sender": closer,
                },
            ),
        ]

    def deployment_story(self, repo_i: int, n: int, position: float) -> list[tuple[str, dict]]:
        repo = self.repositories[repo_i]
        creator = self._dev(n * 11 + repo_i)
        created = self._at(position)
        deployment = dict(self.t["deployment"]["deployment"])
        deployment_id = 300_000_000 + self._next_id()
        deployment.update(
            id=deployment_id,
            sha=_sha("deploy", repo_i, n),
            ref="main",
            environment="production",
            creator=creator,
            created_at=_iso(created),
            updated_at=_iso(created),
        )
        status = dict(self.t["deployment_status"]["deployment_status"])
        status.update(
            id=deployment_id,
            state="failure" if n % 10 == 0 else "success",
            creator=creator,
            environment="production",
            created_at=_iso(created + dt.timedelta(minutes=7)),
            updated_at=_iso(created + dt.timedelta(minutes=7)),
        )
        return [
            (
                "deployment",
                {
                    **self.t["deployment"],
                    "deployment": deployment,
                    "repository": repo,
                    "sender": creator,
                },
            ),
            (
                "deployment_status",
                {
                    **self.t["deployment_status"],
                    "deployment": deployment,
                    "deployment_status": status,
                    "repository": repo,
                    "sender": creator,
                },
            ),
        ]

    def workflow_run(self, repo_i: int, n: int, position: float) -> tuple[str, dict]:
        repo = self.repositories[repo_i]
        actor = self._dev(n * 13 + repo_i)
        started = self._at(position)
        base = self.t["workflow_run"]
        run = dict(base["workflow_run"])
        run_id = 200_000_000 + self._next_id()
        path = f".github/workflows/{WORKFLOW_FILE}"
        run.update(
            id=run_id,
            name="Deploy",
            path=path,
            head_sha=_sha("run", repo_i, n),
            head_branch="main",
            conclusion="failure" if n % 12 == 0 else "success",
            status="completed",
            created_at=_iso(started),
            run_started_at=_iso(started),
            updated_at=_iso(started + dt.timedelta(minutes=12)),
            actor=actor,
            triggering_actor=actor,
            repository=repo,
            head_repository=repo,
            html_url=f"{repo['html_url']}/actions/runs/{run_id}",
        )
        workflow = {**base["workflow"], "path": path, "name": "Deploy"}
        return "workflow_run", {
            **base,
            "action": "completed",
            "workflow_run": run,
            "workflow": workflow,
            "repository": repo,
            "sender": actor,
        }

    # mixes
    def mixed(self, count: int, commits_per_push: int = 4):
        """`count` events in rounds of 14, in time order: 3 pushes (1-7 commits, 4 on
        average), one pull request's 6 events, an issue opened and closed, a deployment
        and its status, a completed deploy workflow run."""
        rounds = max(1, -(-count // 14))
        produced = 0
        for r in range(rounds):
            position = r / rounds
            batch = []
            for p in range(3):
                n = r * 3 + p
                batch.append(self.push(n % REPOSITORIES, n, 1 + (n * 5) % 7, position))
            batch += self.pull_request_story((r * 7) % REPOSITORIES, r, position)
            batch += self.issue_story((r * 3 + 1) % REPOSITORIES, r, position)
            batch += self.deployment_story((r * 11 + 2) % REPOSITORIES, r, position)
            batch.append(self.workflow_run((r * 13 + 3) % REPOSITORIES, r, position))
            for item in batch:
                if produced == count:
                    return
                produced += 1
                yield item

    def pushes(self, commits: int, commits_per_push: int):
        """Push events carrying `commits` commits in all (`commits_per_push` each)."""
        count = -(-commits // commits_per_push)
        left = commits
        for n in range(count):
            size = min(commits_per_push, left)
            left -= size
            yield self.push(n % REPOSITORIES, n, size, n / count)


# --- storing them as the webhook endpoint does ----------------------------------------------


def connect_db(url: str):
    """Point the project's shared `db` at `url` (the models and processing use it)."""
    from shared.database import init_db

    return init_db(url, pool_min=1, pool_max=2)


def ensure_organization(factory: EventFactory):
    """The organization and its connected repositories (webhook metadata already learnt)."""
    from shared.models import Organization, Plan, Repository

    org, _ = Organization.get_or_create(
        slug=ORG_SLUG, defaults={"name": "Bench processing", "plan": Plan.ENTERPRISE}
    )
    repos = {}
    for row in factory.repository_rows():
        repo = Repository.get_or_none(Repository.github_id == row["github_id"])
        if repo is None:
            repo = Repository.create(organization=org, **row)
        repos[row["github_id"]] = repo
    return org, repos


def store_events(url: str, factory: EventFactory, events) -> int:
    """Insert `events` ((type, payload) pairs) in bulk as PENDING `events` rows with their
    `event_deliveries` rows, through the same models and field conversions as the
    endpoint's Event.create/EventDelivery.create. Returns how many were stored."""
    from shared.database import db
    from shared.models import Event, EventDelivery, EventStatus, utcnow

    database = connect_db(url)
    try:
        _, repos = ensure_organization(factory)
        stored = 0
        chunk: list[dict] = []
        received = utcnow()

        def flush():
            with db.atomic():
                ids = (
                    Event.insert_many(chunk)
                    .returning(
                        Event.id,
                        Event.received_at,
                        Event.hook_id,
                        Event.delivery_id,
                        Event.repository,
                    )
                    .execute()
                )
                EventDelivery.insert_many(
                    [
                        {
                            "source": "github",
                            "hook_id": row.hook_id,
                            "delivery_id": row.delivery_id,
                            "repository_id": row.repository_id,
                            "event_id": row.id,
                            "received_at": row.received_at,
                        }
                        for row in ids
                    ]
                ).execute()
            chunk.clear()

        for event_type, payload in events:
            repo = repos[payload["repository"]["id"]]
            delivery = str(uuid.uuid5(DELIVERY_NAMESPACE, f"{stored}"))
            hook_id = str(40_000_000 + repo.github_id % 1000)
            chunk.append(
                {
                    "source": "github",
                    "hook_id": hook_id,
                    "delivery_id": delivery,
                    "event_type": event_type,
                    "action": payload.get("action"),
                    "repository": repo.id,
                    "organization": repo.organization_id,
                    "headers": {
                        "X-GitHub-Event": event_type,
                        "X-GitHub-Delivery": delivery,
                        "X-GitHub-Hook-ID": hook_id,
                        "X-GitHub-Hook-Installation-Target-ID": str(repo.github_id),
                        "X-GitHub-Hook-Installation-Target-Type": "repository",
                        "User-Agent": "GitHub-Hookshot/7c2a0d4",
                        "Content-Type": "application/json",
                    },
                    "payload": payload,
                    # Arrival order is delivery order (a millisecond apart), as received now.
                    "received_at": received + dt.timedelta(milliseconds=stored),
                    "status": EventStatus.PENDING,
                }
            )
            stored += 1
            if len(chunk) >= STORE_CHUNK:
                flush()
        if chunk:
            flush()
        return stored
    finally:
        database.close_all()


# --- processing and its limit ---------------------------------------------------------------


def worker_batch_size() -> int:
    from devmetrics import workers as worker

    return getattr(worker, "BATCH_SIZES", {}).get("events", getattr(worker, "BATCH_SIZE", 10))


def process_all(url: str) -> dict:
    """Run the `events` worker's batch function until no event is due; time it."""
    from devmetrics import workers as worker
    from shared.models import Event, EventStatus

    database = connect_db(url)
    try:
        batch = worker.batch_for("events")
        size = worker_batch_size()
        batches = processed = 0
        with lib.stopwatch() as elapsed:
            while True:
                claimed = batch(f"bench:{os.getpid()}:events", size)
                if not claimed:
                    break
                batches += 1
                processed += claimed
        seconds = elapsed()
        statuses = dict(
            Event.select(Event.status, pw.fn.COUNT(Event.id)).group_by(Event.status).tuples()
        )
        left = sum(n for s, n in statuses.items() if s not in (EventStatus.PROCESSED,))
        if left:
            # Every generated event is one processing models: anything else is a bug here.
            raise RuntimeError(f"events not processed: {statuses}")
        return {
            "events": processed,
            "batches": batches,
            "batch_size": size,
            "seconds": seconds,
            "events_per_s": processed / seconds if seconds else None,
        }
    finally:
        database.close_all()


def process_with_workers(url: str, workers: int) -> dict:
    """The same work done by `workers` real `devmetrics worker events` processes (as
    deployed: several may run, claims never overlap), timed from their start until no event
    is left to process (their start-up is included: a second or so)."""
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    command = [str(Path(sys.executable).parent / "devmetrics"), "worker", "events", "--poll", "0.2"]
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM events")
        total = cur.fetchone()[0]
    procs = []
    try:
        with lib.stopwatch() as elapsed:
            for _ in range(workers):
                procs.append(
                    subprocess.Popen(
                        command,
                        cwd=lib.ROOT,
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                        start_new_session=True,
                    )
                )
            while True:
                with conn.cursor() as cur:
                    # Cheap (an index probe), so polling takes nothing from the workers.
                    cur.execute(
                        "SELECT EXISTS (SELECT 1 FROM events"
                        " WHERE status IN ('PENDING', 'PROCESSING', 'FAILED'))"
                    )
                    if not cur.fetchone()[0]:
                        break
                crashed = [p for p in procs if p.poll() is not None]
                if crashed:
                    raise RuntimeError(f"an events worker exited: {crashed[0].stderr.read()!r}")
                time.sleep(0.2)
        seconds = elapsed()
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        conn.close()
    return {"events": total, "seconds": seconds, "events_per_s": total / seconds}


def read_seconds(url: str) -> float:
    """Reading every stored event back (SELECT and JSON decoding of its payload), for scale:
    processing has to do at least this much."""
    conn = psycopg2.connect(url)
    try:
        with lib.stopwatch() as elapsed, conn.cursor(name="read_events") as cur:
            cur.itersize = 1000
            cur.execute("SELECT id, headers, payload FROM events")
            for _ in cur:
                pass
        return elapsed()
    finally:
        conn.close()


def result_counts(url: str) -> dict:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        counts = {}
        for table in RESULT_TABLES:
            cur.execute(f"SELECT count(*) FROM {table}")
            counts[table] = cur.fetchone()[0]
    conn.close()
    return counts


def limit_insert(url: str, users_before: int = 0) -> dict:
    """Read back every row processing produced and time bulk-inserting them (execute_values,
    pages of 1,000, one transaction) into empty copies of their tables."""
    conn = psycopg2.connect(url)
    try:
        data = {}
        with conn.cursor() as cur:
            for table in RESULT_TABLES:
                where = f" WHERE id > {int(users_before)}" if table == "users" else ""
                cur.execute(f"SELECT * FROM {table}{where} ORDER BY id")
                columns = [c.name for c in cur.description]
                rows = [
                    tuple(psycopg2.extras.Json(v) if isinstance(v, (dict, list)) else v for v in r)
                    for r in cur.fetchall()
                ]
                data[table] = (columns, rows)
                cur.execute(f"DROP TABLE IF EXISTS limit_{table}")
                cur.execute(f"CREATE TABLE limit_{table} (LIKE {table} INCLUDING ALL)")
        conn.commit()
        with lib.stopwatch() as elapsed, conn.cursor() as cur:
            for table, (columns, rows) in data.items():
                if rows:
                    psycopg2.extras.execute_values(
                        cur,
                        f"INSERT INTO limit_{table} ({', '.join(columns)}) VALUES %s",
                        rows,
                        page_size=1000,
                    )
            conn.commit()
        seconds = elapsed()
        with conn.cursor() as cur:
            for table in RESULT_TABLES:
                cur.execute(f"DROP TABLE limit_{table}")
        conn.commit()
        return {
            "rows": {table: len(rows) for table, (_, rows) in data.items()},
            "seconds": seconds,
        }
    finally:
        conn.close()


def _users(url: str) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT coalesce(max(id), 0) FROM users")
        value = cur.fetchone()[0]
    conn.close()
    return value


def measure_processing(
    database_url: str,
    *,
    events: int | None = None,
    commits: int | None = None,
    commits_per_push: int = 10,
    limit: bool = True,
) -> dict:
    """Store then process `events` mixed realistic events, or push events carrying
    `commits` commits (`commits_per_push` each), in the migrated PostgreSQL database at
    `database_url`; returns the processing figures, and with `limit` its bulk-insert limit:
        {events, commits, seconds, events_per_s, commits_per_s, store_seconds,
         limit_seconds, limit_rows, limit_events_per_s, rows}"""
    if (events is None) == (commits is None):
        raise ValueError("give events or commits")
    factory = EventFactory()
    stream = (
        factory.mixed(events) if events is not None else factory.pushes(commits, commits_per_push)
    )
    users_before = _users(database_url)
    with lib.stopwatch() as store_elapsed:
        stored = store_events(database_url, factory, stream)
    result = process_all(database_url)
    counts = result_counts(database_url)
    result.update(
        stored=stored,
        store_seconds=store_elapsed(),
        commits=counts["commits"],
        commits_per_s=counts["commits"] / result["seconds"] if result["seconds"] else None,
        rows=counts,
    )
    if limit:
        bound = limit_insert(database_url, users_before)
        result.update(
            limit_seconds=bound["seconds"],
            limit_rows=sum(bound["rows"].values()),
            limit_events_per_s=result["events"] / bound["seconds"],
        )
    return result


# --- the benchmark --------------------------------------------------------------------------


WORKER_PROCESSES = 2  # one per core: this machine has two


def main() -> int:
    results = lib.Results("processing")
    count = lib.size(100_000, 2_000)
    runs = lib.repeats(3, 1)  # each run processes 100k events: 3 keeps `make bench` bounded
    print(f"processing: {count:,} events, {runs} run(s)", flush=True)
    figures = []
    with lib.bench_database("processing") as template:
        factory = EventFactory()
        with lib.stopwatch() as elapsed:
            stored = store_events(template, factory, factory.mixed(count))
        print(f"  stored {stored:,} events in {elapsed():.1f} s (untimed setup)", flush=True)
        users_before = _users(template)
        for run in range(runs):
            # Each figure processes its own copy of the same stored events.
            url = lib.clone_database(template, "processing_run")
            try:
                read = read_seconds(url)
                measured = process_all(url)
                bound = limit_insert(url, users_before)
            finally:
                lib.drop_database(url)
            url = lib.clone_database(template, "processing_workers")
            try:
                workers = process_with_workers(url, WORKER_PROCESSES)
            finally:
                lib.drop_database(url)
            measured.update(
                rows=bound["rows"],
                limit_events_per_s=measured["events"] / bound["seconds"],
                read_events_per_s=measured["events"] / read,
                workers_events_per_s=workers["events_per_s"],
            )
            figures.append(measured)
            print(
                f"  run {run + 1}: {measured['events_per_s']:,.0f} events/s in "
                f"{measured['seconds']:.1f} s ({WORKER_PROCESSES} workers: "
                f"{workers['events_per_s']:,.0f}/s); limit {bound['seconds']:.2f} s for "
                f"{sum(bound['rows'].values()):,} rows; reading the events {read:.1f} s",
                flush=True,
            )
    rate = lib.median([f["events_per_s"] for f in figures])
    parallel = lib.median([f["workers_events_per_s"] for f in figures])
    bound = lib.median([f["limit_events_per_s"] for f in figures])
    read = lib.median([f["read_events_per_s"] for f in figures])
    rows = figures[0]["rows"]
    common = f"{count:,} events -> {sum(rows.values()):,} rows; median of {runs}"
    bar = ">= 2,000 events/s and >= 0.3 x limit"
    limit_name = "execute_values of the same rows"
    results.record(
        "events processed/s, one worker",
        rate,
        "events/s",
        limit=bound,
        limit_name=limit_name,
        bar=bar,
        passed=rate >= 2000 and rate >= 0.3 * bound,
        note=f"{common}; the events worker's batch function in-process, "
        f"{figures[0]['batch_size']} events a batch "
        f"({', '.join(f'{k} {v:,}' for k, v in rows.items())})",
    )
    results.record(
        f"events processed/s, {WORKER_PROCESSES} worker processes",
        parallel,
        "events/s",
        limit=bound,
        limit_name=limit_name,
        bar=bar,
        passed=parallel >= 2000 and parallel >= 0.3 * bound,
        note=f"{common}; `devmetrics worker events` x {WORKER_PROCESSES}, start-up included",
    )
    results.record(
        "stored events read back (SELECT + JSON decode)",
        read,
        "events/s",
        limit=bound,
        limit_name=limit_name,
        note="for scale: the least any processing that maps the payloads in the application"
        " must do before writing a row",
    )
    results.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
