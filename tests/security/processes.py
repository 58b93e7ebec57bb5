"""Starting one service the way it is deployed, to see whether it starts or refuses."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import requests

from tests.helpers import BIN, ROOT, free_port, stop


def start_or_refusal(service: str, env: dict, cwd: Path, timeout: float = 30.0):
    """Start `service` on gunicorn (the repository's gunicorn.conf.py) from `cwd`: (None,
    process, port) once it answers /readyz, or (exit code, stdout, stderr) if it exits."""
    port = free_port()
    process = subprocess.Popen(
        [
            str(BIN / "gunicorn"),
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "--bind",
            f"127.0.0.1:{port}",
            f"services.{service}:create_app()",
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stdout, stderr = process.communicate(timeout=10)
            return process.returncode, stdout, stderr
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return None, process, port
        except requests.RequestException:
            pass
        time.sleep(0.1)
    stop(process)
    raise AssertionError(f"{service} neither started nor exited within {timeout}s")
