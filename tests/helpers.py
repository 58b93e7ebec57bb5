"""Starting real DevMetrics processes on loopback ports for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

from shared.database import db, open_database

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
INTERNAL_TOKEN = "test-internal-token-0123456789"
SERVICE_NAMES = ("accounts", "activity", "metrics", "notifications")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except requests.RequestException:
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_ready(url: str, timeout: float = 20.0) -> None:
    wait_until(
        lambda: requests.get(f"{url}/readyz", timeout=1).status_code == 200,
        timeout,
        what=f"{url}/readyz",
    )


def service_env(database_url: str, ports: dict[str, int], **extra) -> dict:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "INTERNAL_API_TOKEN": INTERNAL_TOKEN,
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "4",
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    for name, port in ports.items():
        env[f"{name.upper()}_URL"] = f"http://127.0.0.1:{port}"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_service(name: str, port: int, env: dict, log_dir: Path) -> subprocess.Popen:
    log = open(log_dir / f"{name}-{port}.log", "ab")  # noqa: SIM115 (lives with the process)
    return subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "-c",
            "gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{port}",
            f"services.{name}:create_app()",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 20.0) -> int:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.returncode


@contextmanager
def bound_to(url: str):
    """Point the shared `db` proxy at another database for a block, then restore it."""
    previous = db.obj
    database = open_database(url, pool_min=0, pool_max=4)
    db.initialize(database)
    try:
        yield database
    finally:
        if not database.is_closed():
            database.close()
        if hasattr(database, "close_all"):
            database.close_all()
        db.initialize(previous)


# Real GitHub payloads and REST exchanges, kept in the repository (tests/fixtures/github/).
GITHUB_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "github"
WEBHOOK_SAMPLES = GITHUB_FIXTURES / "webhooks"
GITHUB_API = GITHUB_FIXTURES / "api"
