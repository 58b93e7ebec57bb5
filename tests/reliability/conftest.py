"""The reliability suite's stack: real gunicorn services and `devmetrics worker` processes on
a fresh migrated and seeded PostgreSQL database, reached through a TCP proxy the tests can
sever and restore (the database "cut"), plus signed webhook deliveries in bulk.

PostgreSQL only: these faults need several writer processes and a database over TCP.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import pytest
import requests

from shared import crypto, outbox
from shared.models import Event, EventStatus, Organization, Repository, utcnow
from tests.conftest import BACKEND, DEVMETRICS, ROOT, run_cli
from tests.helpers import (
    SERVICE_NAMES,
    WEBHOOK_SAMPLES,
    bound_to,
    free_port,
    service_env,
    start_service,
    stop,
    wait_ready,
    wait_until,
)

SAMPLES = WEBHOOK_SAMPLES
SECRET = "reliability-webhook-secret"
REPO_GITHUB_ID = 900000001
REPO_FULL_NAME = "reliability/load-target"


def pytest_collection_modifyitems(config, items):
    if BACKEND == "sqlite":
        skip = pytest.mark.skip(
            reason="PostgreSQL-only: several writer processes and a TCP proxy to the database"
        )
        for item in items:
            if "tests/reliability" in str(item.fspath):
                item.add_marker(skip)


class TcpProxy:
    """A loopback TCP relay in front of PostgreSQL. `sever()` resets every open connection
    and refuses new ones (the database is gone); `restore()` lets connections through again."""

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = free_port()
        self.cut = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", self.port), backlog=128)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self):
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.cut.is_set():
                _reset(client)  # refused: the client sees the connection die at once
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                if self.cut.is_set():  # severed while we were connecting
                    _reset(client)
                    _reset(upstream)
                    continue
                self._open.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with self._lock:
                    self._open.discard(s)
                _reset(s)

    def sever(self) -> int:
        """Cut the database off; returns how many live connections were reset."""
        with self._lock:
            self.cut.set()
            live = list(self._open)
            self._open.clear()
        for s in live:
            _reset(s)
        return len(live) // 2

    def restore(self) -> None:
        self.cut.clear()

    def close(self) -> None:
        self._stopped.set()
        self.sever()
        self._listener.close()


def _reset(sock: socket.socket) -> None:
    """Drop a connection the way a broken network path is reported: an abortive close.
    shutdown() first: close() alone would not wake a thread blocked in recv() on it, and
    the connection would silently live on."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sock.close()


@dataclass
class ReliabilityStack:
    """Services and workers on one database; `database_url` is direct (for the test's own
    reads), `proxied_url` is what every service and worker uses."""

    database_url: str
    proxied_url: str
    proxy: TcpProxy
    ports: dict[str, int]
    env: dict
    log_dir: Path
    processes: dict = field(default_factory=dict)
    workers: list = field(default_factory=list)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def start(self, service: str, **env) -> subprocess.Popen:
        env = {**self.env, **{k: str(v) for k, v in env.items()}}
        proc = start_service(service, self.ports[service], env, self.log_dir)
        self.processes[service] = proc
        wait_ready(self.url(service), timeout=30)
        return proc

    def stop(self, service: str, sig=signal.SIGTERM) -> int:
        return stop(self.processes.pop(service), sig)

    def start_worker(self, kind: str, **env) -> subprocess.Popen:
        log = open(self.log_dir / f"worker-{kind}.log", "ab")  # noqa: SIM115 (lives with it)
        proc = subprocess.Popen(
            [str(DEVMETRICS), "worker", kind],
            cwd=ROOT,
            env={**self.env, **{k: str(v) for k, v in env.items()}},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers.append(proc)
        return proc

    def log(self, name: str) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.log_dir.glob(f"{name}*.log"))

    def db(self):
        """Bind the shared `db` to this database (directly, not through the proxy)."""
        return bound_to(self.database_url)

    def close(self):
        for proc in self.workers:
            stop(proc, timeout=10)
        for name in list(self.processes):
            self.stop(name)
        self.proxy.close()


@pytest.fixture(autouse=True)
def _stop_workers_after_each_test(request):
    """Workers a test started do not outlive it (SIGKILL: they are built to survive it, and
    SIGTERM would wait for a whole batch of retries to a service that is down)."""
    yield
    if "rstack" in request.fixturenames:
        stack = request.getfixturevalue("rstack")
        for proc in stack.workers:
            if proc.poll() is None:
                kill(proc)
        stack.workers.clear()


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the process group: no handler runs, nothing is cleaned up."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


@pytest.fixture(scope="module")
def rstack(database_factory, tmp_path_factory):
    """A fresh migrated and seeded database with a repository whose webhook secret the
    tests know; no service started (each test starts what it needs)."""
    url = database_factory.new_url()
    parsed = urlparse(url)
    proxy = TcpProxy(parsed.hostname or "127.0.0.1", parsed.port or 5432)
    userinfo = parsed.netloc.rpartition("@")[0]
    proxied = urlunparse(
        parsed._replace(netloc=(f"{userinfo}@" if userinfo else "") + f"127.0.0.1:{proxy.port}")
    )
    ports = {name: free_port() for name in SERVICE_NAMES}
    env = service_env(
        proxied,
        ports,
        NOTIFICATIONS_ALLOW_PRIVATE_TARGETS="true",
        METRICS_SCHEDULE_SECONDS=86400,
        LOG_LEVEL="WARNING",
    )
    assert run_cli("db", "migrate", database_url=url, env=env).returncode == 0
    seeded = run_cli("db", "seed", database_url=url, env=env)
    assert seeded.returncode == 0, seeded.stderr
    with bound_to(url):
        org = Organization.get(Organization.slug == "techcorp")
        Repository.create(
            organization=org,
            github_id=REPO_GITHUB_ID,
            full_name=REPO_FULL_NAME,
            webhook_secret_encrypted=crypto.encrypt(SECRET),
            verified_at=utcnow(),  # GitHub's API confirmed it
        )
    stack = ReliabilityStack(
        url, proxied, proxy, ports, env, tmp_path_factory.mktemp("reliability-logs")
    )
    try:
        yield stack
    finally:
        stack.close()


# Signed deliveries --------------------------------------------------------------------


@dataclass
class Delivery:
    delivery_id: str
    event: str
    body: bytes
    commits: tuple[str, ...] = ()
    pull_request: int | None = None


def _template(event: str, name: str) -> dict:
    payload = json.loads((SAMPLES / event / name).read_text())
    payload["repository"]["id"] = REPO_GITHUB_ID
    payload["repository"]["full_name"] = REPO_FULL_NAME
    return payload


class DeliveryMaker:
    """Unique push (one new commit each) and pull_request `opened` deliveries, built from
    GitHub's own sample payloads; one in five is a pull request."""

    def __init__(self):
        self.run = uuid.uuid4().hex[:8]
        self.push = _template("push", "with-new-branch.payload.json")
        self.pr = _template("pull_request", "opened.payload.json")
        self.n = 0
        self._lock = threading.Lock()

    def next(self) -> Delivery:
        with self._lock:
            self.n += 1
            n = self.n
        day = time.strftime("%Y-%m-%d", time.gmtime(time.time() - (n % 5) * 86400))
        if n % 5 == 0:
            payload = copy.deepcopy(self.pr)
            number = 100000 + n
            pr = payload["pull_request"]
            payload["number"] = pr["number"] = number
            pr["id"] = 5_000_000_000 + n
            pr["title"] = f"load {self.run} #{n}"
            pr["head"]["sha"] = hashlib.sha1(f"{self.run}-head-{n}".encode()).hexdigest()
            pr["created_at"] = pr["updated_at"] = f"{day}T10:00:00Z"
            return Delivery(str(uuid.uuid4()), "pull_request", _dump(payload), pull_request=number)
        payload = copy.deepcopy(self.push)
        sha = hashlib.sha1(f"{self.run}-commit-{n}".encode()).hexdigest()
        commit = payload["commits"][0]
        commit["id"] = sha
        commit["timestamp"] = f"{day}T09:00:00Z"
        payload["commits"] = [commit]
        payload["head_commit"] = commit
        payload["after"] = sha
        return Delivery(str(uuid.uuid4()), "push", _dump(payload), commits=(sha,))


def _dump(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


_sessions = threading.local()


def send(base_url: str, delivery: Delivery, timeout: float = 10.0) -> requests.Response:
    """POST one signed delivery (a per-thread keep-alive session, like GitHub's sender)."""
    session = getattr(_sessions, "session", None)
    if session is None:
        session = _sessions.session = requests.Session()
    return session.post(
        f"{base_url}/webhooks/github",
        data=delivery.body,
        headers={
            "X-GitHub-Event": delivery.event,
            "X-GitHub-Delivery": delivery.delivery_id,
            "X-GitHub-Hook-ID": "4711",
            "X-Hub-Signature-256": sign(delivery.body),
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/reliability",
        },
        timeout=timeout,
    )


@dataclass
class Outcome:
    delivery: Delivery
    status: int | None  # None: no answer (connection error or timeout)
    seconds: float
    error: str = ""


def send_all(base_url: str, deliveries: list[Delivery], senders: int = 20, timeout=10.0):
    """Send every delivery from `senders` concurrent threads; one Outcome each, in order."""

    def one(delivery: Delivery) -> Outcome:
        started = time.monotonic()
        try:
            status = send(base_url, delivery, timeout).status_code
            return Outcome(delivery, status, time.monotonic() - started)
        except requests.RequestException as exc:
            return Outcome(delivery, None, time.monotonic() - started, type(exc).__name__)

    with ThreadPoolExecutor(senders) as pool:
        return list(pool.map(one, deliveries))


def statuses(outcomes: list[Outcome]) -> Counter:
    return Counter(o.status for o in outcomes)


def stored_delivery_ids(stack: ReliabilityStack) -> set[str]:
    with stack.db():
        return {d for (d,) in Event.select(Event.delivery_id).tuples()}


def wait_processed(stack: ReliabilityStack, timeout: float = 120.0) -> None:
    """Until no event is waiting or being processed."""

    def done():
        with stack.db():
            return (
                not Event.select()
                .where(Event.status.in_([EventStatus.PENDING, EventStatus.PROCESSING]))
                .exists()
            )

    wait_until(done, timeout=timeout, interval=0.5, what="every event processed")


def publish_activity_changed(org, repo, count: int) -> list[str]:
    """`count` outbox messages telling metrics today's activity changed; their ids."""
    return [
        outbox.publish(
            "metrics",
            "activity.changed",
            {
                "organization_id": org.id,
                "repository_id": repo.id,
                "dates": [utcnow().date().isoformat()],
                "pull_request_ids": [],
            },
            organization=org,
        )
        for _ in range(count)
    ]
