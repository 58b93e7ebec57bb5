"""The four services as real gunicorn processes on loopback ports, on one seeded database."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import requests

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


# The seed's people and their GitHub ids.
SEEDED_GITHUB_IDS = {"alice": 583231, "bob": 1024025, "charlie": 2003641}


def github_sign_in(stack: Stack, fake_github, login: str, github_id: int) -> tuple[str, str]:
    """Sign a person in through the (fake) GitHub OAuth flow: (session token, the GitHub
    access token the fake issued for them, which DevMetrics now holds for them)."""
    github_token = fake_github.add_user(f"{login}-code", login, github_id, login.title())
    browser = requests.Session()
    accounts = stack.url("accounts")
    start = browser.get(f"{accounts}/api/v1/auth/github/login", allow_redirects=False, timeout=10)
    state = parse_qs(urlparse(start.headers["Location"]).query)["state"][0]
    done = browser.get(
        f"{accounts}/api/v1/auth/github/callback",
        params={"code": f"{login}-code", "state": state},
        timeout=10,
    )
    assert done.status_code == 200, done.text
    return done.json()["token"], github_token


def connect_verified(
    stack: Stack,
    fake_github,
    org: str,
    full_name: str,
    github_id: int,
    *,
    login: str = "bob",
    **body,
) -> dict:
    """Connect `full_name` to `org` as a seeded person signed in with GitHub, whose token
    the fake GitHub lets read it: the repository is verified at once (201 body returned)."""
    session, github_token = github_sign_in(stack, fake_github, login, SEEDED_GITHUB_IDS[login])
    fake_github.add_repository(full_name, github_id, readers=[github_token])
    response = requests.post(
        f"{stack.url('activity')}/api/v1/orgs/{org}/repositories",
        json={"full_name": full_name, **body},
        headers={"Authorization": f"Bearer {session}"},
        timeout=10,
    )
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "verified", response.json()
    return response.json()


def join(stack: Stack, org: str, role: str, *, inviter: str, invitee: str) -> dict:
    """Make the signed-in person `invitee` (a session token) a member of `org` the only way
    there is: `inviter` (an OWNER's or ADMIN's session) invites their login, they accept."""
    accounts = stack.url("accounts")
    me = requests.get(
        f"{accounts}/api/v1/me", headers={"Authorization": f"Bearer {invitee}"}, timeout=10
    )
    invited = requests.post(
        f"{accounts}/api/v1/orgs/{org}/invitations",
        json={"login": me.json()["user"]["login"], "role": role},
        headers={"Authorization": f"Bearer {inviter}"},
        timeout=10,
    )
    assert invited.status_code == 201, invited.text
    accepted = requests.post(
        f"{accounts}/api/v1/me/invitations/{invited.json()['id']}/accept",
        headers={"Authorization": f"Bearer {invitee}"},
        timeout=10,
    )
    assert accepted.status_code == 200, accepted.text
    return accepted.json()
