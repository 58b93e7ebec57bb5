"""Item 6: peak memory (RSS) of the events worker on a 25 MB push, and of each service under
load.

    python -m bench.memory [--quick]

Worker: a push payload just under the 25 MB webhook cap, built from the real sample
(tests/fixtures/github/webhooks/push/with-new-branch.payload.json): its one commit repeated to
2,048 commits (GitHub's cap on a push's commit list; at the cap the worker also queues the
compare-API completion job, as in production), each with a unique sha, one of 50 authors, a
multi-paragraph message and ~80 added/modified paths, padded until the body is 25 MB minus a
margin. (quick: 256 commits, ~2 MB.) It goes through the real webhook endpoint, then
`devmetrics worker events --once` processes it in a child process whose peak RSS is the
kernel's own high-water mark (wait4's ru_maxrss). The limit column is the same command with
nothing to do (the interpreter and imports).

Services: all four run under gunicorn with the production settings; each gets wrk load on an
authenticated read for its seconds (activity: webhook deliveries, then a commits listing over
the 2,048 commits). Peak RSS is each process's VmHWM from /proc after the load. Workers do not
share memory with the master (no preload), so the bar is applied per worker process; the sum
of the master and all workers (what the container holds) is reported beside it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import psycopg2

from bench import ingest, lib, loadgen
from tests.helpers import BIN, free_port

MB = 1024 * 1024
SAMPLE = lib.WEBHOOKS / "push" / "with-new-branch.payload.json"
SERVICES = ("accounts", "activity", "metrics", "notifications")


def big_push(commits: int, target_bytes: int) -> bytes:
    """A push of `commits` commits whose JSON body is close to (and under) target_bytes."""
    payload = json.loads(SAMPLE.read_bytes())
    template = payload["commits"][0]
    per_commit = target_bytes // commits
    items = []
    for i in range(commits):
        author = {
            "name": f"Developer {i % 50}",
            "email": f"dev{i % 50}@example.com",
            "username": f"dev-{i % 50}",
        }
        sha = uuid.UUID(int=i + 1).hex + f"{i:08x}"
        paths = [f"src/module_{i % 97}/component_{j}/file_{j}.py" for j in range(80)]
        commit = {
            **template,
            "id": sha,
            "tree_id": sha[::-1],
            "url": template["url"].rsplit("/", 1)[0] + "/" + sha,
            "author": author,
            "committer": author,
            "added": paths[:40],
            "modified": paths[40:],
            "removed": [],
            "message": "",
        }
        head = f"Change {i}: refactor the module and its tests\n\n"
        room = per_commit - len(json.dumps(commit)) - len(head)
        line = "Explain why the change is needed, what it touches and how it was tested. "
        commit["message"] = head + (line * (max(room, 0) // len(line) + 1))[: max(room, 0)]
        items.append(commit)
    payload["commits"] = items
    payload["head_commit"] = items[-1]
    payload["after"] = items[-1]["id"]
    body = json.dumps(payload).encode()
    while len(body) > target_bytes:  # trim the messages until it fits
        for commit in items:
            commit["message"] = commit["message"][:-64]
        body = json.dumps(payload).encode()
    return body


def peak_rss_of_command(args: list[str], env: dict) -> tuple[float, str]:
    """Run a command; its peak RSS in MB (the kernel's high-water mark) and its output."""
    proc = subprocess.Popen(
        args, cwd=lib.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    out = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}:\n{out[-3000:]}")
    return usage.ru_maxrss / 1024, out  # Linux: kilobytes


def vm_hwm_mb(pid: int) -> float:
    """A process's peak resident set so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def create_admin_key(database_url: str) -> str:
    from shared import crypto
    from shared.database import db, open_database
    from shared.models import ApiKey, Organization

    database = open_database(database_url, pool_min=0, pool_max=1)
    previous = db.obj
    db.initialize(database)
    try:
        with database.connection_context():
            org = Organization.get(Organization.slug == ingest.ORG_SLUG)
            plaintext, prefix, key_hash = crypto.new_api_key()
            ApiKey.create(
                organization=org,
                name="bench",
                prefix=prefix,
                key_hash=key_hash,
                scopes=["admin"],
                organization_key=True,  # no creating person (as the CLI's)
            )
    finally:
        database.close_all()
        db.initialize(previous)
    return plaintext


def main() -> None:
    results = lib.Results("memory")
    settings = loadgen.gunicorn_settings()
    print(f"gunicorn (gunicorn.conf.py defaults): {settings}", flush=True)
    commits = lib.size(2048, 256)
    target = lib.size(25 * MB - 64 * 1024, 2 * MB)
    body = big_push(commits, target)
    print(f"push payload: {commits} commits, {len(body) / MB:.1f} MB", flush=True)
    log_dir = Path(tempfile.mkdtemp(prefix="devmetrics-bench-memory-"))
    try:
        with lib.bench_database("memory") as url:
            found = ingest.samples()
            ingest.connect_repositories(url, found)
            key = create_admin_key(url)
            worker_env = {**loadgen.production_gunicorn_env(ingest.server_env(url))}
            worker = [str(BIN / "devmetrics"), "worker", "events", "--once"]
            idle_rss, _ = peak_rss_of_command(worker, worker_env)  # nothing pending yet

            ports = {name: free_port() for name in SERVICES}
            apps = {name: f"services.{name}:create_app()" for name in SERVICES}
            extra = {f"{name.upper()}_URL": f"http://127.0.0.1:{p}" for name, p in ports.items()}
            extra["RATE_LIMIT_API"] = "1000000 per minute"  # one key drives all the load
            # The push is accepted by an activity instance of its own, so its peak is reported
            # against the 25 MB bar and the services' "under load" figures below are the
            # steady traffic's, not this one-off body's.
            receiver = {"activity": free_port()}
            with ingest.servers(
                url, {"activity": apps["activity"]}, log_dir, ports=receiver, **extra
            ) as one:
                deliver_big_push(receiver["activity"], body)
                accepting = max(map(vm_hwm_mb, loadgen.gunicorn_workers(one["activity"][1].pid)))
            results.record(
                f"activity web worker peak RSS accepting the {len(body) / MB:.0f} MB push",
                accepting,
                "MB",
                bar="<= 300 MB",
                passed=accepting <= 300,
            )
            with ingest.servers(url, apps, log_dir, ports=ports, **extra) as up:
                worker_rss, out = peak_rss_of_command(worker, worker_env)
                check_processed(url)
                results.record(
                    f"events worker peak RSS, one {len(body) / MB:.0f} MB push "
                    f"({commits:,} commits)",
                    worker_rss,
                    "MB",
                    limit=idle_rss,
                    limit_name="same worker, nothing to process",
                    bar="<= 300 MB",
                    passed=worker_rss <= 300,
                )
                load_services(results, up, key, found, log_dir)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    results.write()


def deliver_big_push(port: int, body: bytes) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request(
            "POST",
            "/webhooks/github",
            body=body,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": f"big-push-{uuid.uuid4().hex}",
                "X-Hub-Signature-256": ingest.sign(body),
            },
        )
        response = conn.getresponse()
        answer = response.read()
    finally:
        conn.close()
    if response.status != 202:
        raise RuntimeError(f"the big push was refused: {response.status} {answer[:300]!r}")


def check_processed(url: str) -> None:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT status, last_error FROM events WHERE delivery_id LIKE 'big-push-%'")
            status, error = cur.fetchone()
            cur.execute("SELECT count(*) FROM commits")
            stored = cur.fetchone()[0]
    finally:
        conn.close()
    print(f"  big push: event {status}, {stored:,} commits stored", flush=True)
    if status != "PROCESSED":
        raise RuntimeError(f"the big push was not processed: {status} {error}")


def load_services(results, up, key, found, log_dir) -> None:
    seconds = lib.size(10, 2)
    org = ingest.ORG_SLUG
    reads = {
        "accounts": f"/api/v1/orgs/{org}/api-keys",
        "activity": f"/api/v1/orgs/{org}/commits?page_size=100",
        "metrics": f"/api/v1/orgs/{org}/metrics/daily",
        "notifications": f"/api/v1/orgs/{org}/notification-rules",
    }
    manifest = ingest.write_manifest(found, log_dir)
    # accounts last: its own API-key reads pay bcrypt per request (no introspection cache
    # there), and its backlog would otherwise slow the other services' introspection calls.
    for name in ("activity", "metrics", "notifications", "accounts"):
        port, master = up[name]
        url = f"http://127.0.0.1:{port}"
        if name == "activity":
            loadgen.wrk_post(f"{url}/webhooks/github", manifest, uuid.uuid4().hex[:8], seconds, 8)
        wrk_get(url + reads[name], key, seconds)
        workers = loadgen.gunicorn_workers(master.pid)
        peaks = [vm_hwm_mb(pid) for pid in workers]
        total = vm_hwm_mb(master.pid) + sum(peaks)
        results.record(
            f"{name} peak RSS per worker under load",
            max(peaks),
            "MB",
            bar="<= 150 MB",
            passed=max(peaks) <= 150,
            note=f"{len(workers)} workers; master + workers {total:.0f} MB",
        )


def wrk_get(url: str, key: str, seconds: float) -> None:
    done = subprocess.run(
        [
            loadgen.require_wrk(),
            "-t2",
            "-c8",
            f"-d{max(1, round(seconds))}s",
            "-H",
            f"Authorization: Bearer {key}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    summary = " ".join(line.strip() for line in done.stdout.splitlines() if "Non-2xx" in line)
    rate = [line for line in done.stdout.splitlines() if "Requests/sec" in line]
    print(f"  GET {url}: {rate[0].strip() if rate else done.stdout[-200:]} {summary}", flush=True)
    if summary:
        raise RuntimeError(f"{url} answered errors under load: {summary}")


if __name__ == "__main__":
    sys.exit(main())
