"""The four services as real gunicorn processes on loopback ports, on one seeded database."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.fake_github import env_for
from tests.helpers import (
    SERVICE_NAMES,
    free_port,
    service_env,
    start_service,
    stop,
    wait_ready,
)

KEY_RE = re.compile(r"API key '(.+)' for (\S+) \(shown once, store it now\): (dm_\S+)")
CACHE_SECONDS = 1.0


@dataclass
class Stack:
    database_url: str
    ports: dict[str, int]
    env: dict
    log_dir: Path
    keys: dict[str, str] = field(default_factory=dict)  # seed key name -> plaintext
    processes: dict = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def start(self, service: str) -> None:
        self.processes[service] = start_service(
            service, self.ports[service], self.env, self.log_dir
        )
        wait_ready(self.url(service))

    def stop(self, service: str) -> None:
        stop(self.processes.pop(service))

    def log(self, service: str) -> str:
        return (self.log_dir / f"{service}-{self.ports[service]}.log").read_text()

    def cli(self, *args: str):
        return run_cli(*args, database_url=self.database_url, env=self.env)


@pytest.fixture(scope="session")
def stack(database_factory, tmp_path_factory, fake_github_server):
    url = database_factory.new_url()
    ports = {name: free_port() for name in SERVICE_NAMES}
    env = service_env(
        url, ports, INTROSPECTION_CACHE_SECONDS=CACHE_SECONDS, **env_for(fake_github_server)
    )
    stack = Stack(url, ports, env, tmp_path_factory.mktemp("service-logs"))
    assert stack.cli("db", "migrate").returncode == 0
    seeded = stack.cli("db", "seed")
    assert seeded.returncode == 0, seeded.stderr
    stack.keys = {name: key for name, _org, key in KEY_RE.findall(seeded.stdout)}
    try:
        for name in SERVICE_NAMES:
            stack.start(name)
        yield stack
    finally:
        for name in list(stack.processes):
            stack.stop(name)
