"""Load for the HTTP benchmarks: gunicorn processes started like production, wrk for closed-loop
throughput, and a Python open-loop generator for latency at a fixed rate.

wrk (Debian's, C) is the throughput generator: `make bench-tools` installs it. Closed loop:
each connection sends its next request when the previous answer arrives, so the figure is the
server's sustained rate. Latency is measured open loop instead: requests are due on a fixed
schedule whatever the server does, and each latency is counted from the moment the request
was due (not sent), so a stalled server cannot hide its queue (coordinated omission).
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bench.lib import ROOT
from tests.helpers import BIN, stop, wait_until

WRK_SCRIPT = ROOT / "bench" / "wrk" / "webhook.lua"


def gunicorn_settings() -> dict:
    """The settings every service runs with in production (gunicorn.conf.py's defaults)."""
    printed = subprocess.run(
        [
            str(BIN / "gunicorn"),
            "-c",
            "gunicorn.conf.py",
            "--print-config",
            "bench.limit_app:trivial",
        ],
        cwd=ROOT,
        env=production_gunicorn_env(os.environ),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wanted = ("workers", "threads", "worker_class", "keepalive")
    found = dict(re.findall(r"^(\w+)\s+= (.*)$", printed, re.M))
    return {name: found[name] for name in wanted}


def production_gunicorn_env(env: dict) -> dict:
    """`env` without the overrides of gunicorn.conf.py's defaults (the tests set some)."""
    env = dict(env)
    for name in ("WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_MAX_REQUESTS", "BIND"):
        env.pop(name, None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each server gets its own, cleaned on exit
    return env


def start_gunicorn(app: str, port: int, env: dict, log: Path) -> subprocess.Popen:
    """gunicorn -c gunicorn.conf.py on 127.0.0.1:port (a process group: stop() ends it all)."""
    out = open(log, "ab")  # noqa: SIM115 (lives with the process)
    return subprocess.Popen(
        [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", app],
        cwd=ROOT,
        env=production_gunicorn_env(env),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_listening(url: str, path: str = "/", timeout: float = 30.0) -> None:
    wait_until(
        lambda: requests.get(url + path, timeout=1).status_code < 500,
        timeout,
        what=f"{url}{path}",
    )


def gunicorn_workers(master_pid: int) -> list[int]:
    """The worker processes (children) of a gunicorn master."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    try:
        return [int(pid) for pid in children.read_text().split()]
    except OSError:
        return []


def stop_all(processes) -> None:
    for proc in processes:
        if proc is not None:
            stop(proc)


# --- wrk (closed loop) ----------------------------------------------------------------------


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(
            "bench: wrk is not installed; run `make bench-tools` (installs Debian's wrk as root "
            "with apt-get) or `apt-get install wrk`"
        )
    return path


@dataclass
class WrkRun:
    seconds: float
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def count(self, *codes: int) -> int:
        return sum(self.statuses.get(code, 0) for code in codes)


def wrk_post(url: str, manifest: Path, run_id: str, seconds: float, connections: int) -> WrkRun:
    """Closed-loop signed deliveries for `seconds` over `connections` keep-alive connections."""
    done = subprocess.run(
        [
            require_wrk(),
            "-t2",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(WRK_SCRIPT),
            url,
            "--",
            str(manifest),
            run_id,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    statuses = {
        int(c): int(n) for c, n in re.findall(r"^wrk-status (\d+) (\d+)$", done.stdout, re.M)
    }
    duration = re.search(r"^wrk-duration-us (\d+)$", done.stdout, re.M)
    return WrkRun(int(duration.group(1)) / 1e6, statuses)


# --- Python generators ----------------------------------------------------------------------


@dataclass
class Delivery:
    event: str
    signature: str
    body: bytes


def _post(conn: http.client.HTTPConnection, delivery: Delivery, delivery_id: str) -> int:
    conn.request(
        "POST",
        "/webhooks/github",
        body=delivery.body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": delivery.event,
            "X-GitHub-Delivery": delivery_id,
            "X-GitHub-Hook-ID": "4242",
            "X-Hub-Signature-256": delivery.signature,
        },
    )
    response = conn.getresponse()
    response.read()
    return response.status


@dataclass
class OpenLoopRun:
    target_rate: float
    achieved_rate: float  # answers per second over the schedule's span
    latencies_ms: list[float]
    statuses: dict[int, int]
    late_starts: int  # requests sent > 5 ms after they were due (the generator falling behind)
    send_lags_ms: list[float] = field(default_factory=list)  # sent - due: the generator's own lag


def open_loop(
    port: int,
    deliveries: list[Delivery],
    run_id: str,
    rate: float,
    seconds: float,
    threads: int = 32,
) -> OpenLoopRun:
    """Request i is due at start + i / rate; thread k sends requests k, k + threads, ...
    Latency counts from the due time, so falling behind shows up as latency."""
    total = max(1, int(rate * seconds))
    start = time.perf_counter() + 0.2
    latencies: list[float] = []
    send_lags: list[float] = []
    statuses: dict[int, int] = {}
    late = [0]
    lock = threading.Lock()

    def sender(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for i in range(k, total, threads):
                due = start + i / rate
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                send_lag = time.perf_counter() - due
                sent_late = send_lag > 0.005
                try:
                    status = _post(conn, deliveries[i % len(deliveries)], f"{run_id}-{i}")
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    status = 0
                elapsed = (time.perf_counter() - due) * 1000
                with lock:
                    latencies.append(elapsed)
                    send_lags.append(send_lag * 1000)
                    statuses[status] = statuses.get(status, 0) + 1
                    late[0] += sent_late
        finally:
            conn.close()

    workers = [threading.Thread(target=sender, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    span = time.perf_counter() - start
    return OpenLoopRun(rate, total / span, latencies, statuses, late[0], send_lags)


def closed_loop_count(
    port: int, deliveries: list[Delivery], run_id: str, events: int, connections: int = 8
) -> tuple[float, dict[int, int]]:
    """Send exactly `events` deliveries over `connections` keep-alive connections, each sending
    its next one when the previous is answered. Returns (seconds, answers by status)."""
    counter = iter(range(events))
    lock = threading.Lock()
    statuses: dict[int, int] = {}

    def sender() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                try:
                    status = _post(conn, deliveries[i % len(deliveries)], f"{run_id}-{i}")
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                    status = 0
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
        finally:
            conn.close()

    started = time.perf_counter()
    workers = [threading.Thread(target=sender) for _ in range(connections)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return time.perf_counter() - started, statuses
