"""Item 10: a full flow (GitHub sign-in, organization, API key, repository with its webhook
secret, a signed delivery, reads with the key, logout) with every service's log captured;
neither the logs nor a `pg_dump` of the database contain any plaintext secret used."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
import requests

from tests.conftest import BACKEND
from tests.reliability.report import record
from tests.security.conftest import github_sign_in, sign

pytestmark = pytest.mark.skipif(
    BACKEND != "postgresql" or shutil.which("pg_dump") is None,
    reason="scans a pg_dump: PostgreSQL only",
)


def test_no_plaintext_secret_in_logs_or_database_dump(secure_stack, fake_github_server):
    accounts, activity = secure_stack.url("accounts"), secure_stack.url("activity")
    session, github_token = github_sign_in(secure_stack, fake_github_server, "keeper", 9_900_002)
    as_user = {"Authorization": f"Bearer {session}"}
    org = requests.post(f"{accounts}/api/v1/orgs", json={"name": "Secret Co"}, headers=as_user)
    assert org.status_code == 201, org.text
    slug = org.json()["slug"]
    key = requests.post(
        f"{accounts}/api/v1/orgs/{slug}/api-keys",
        json={"name": "ci", "scopes": ["activity:read", "activity:write", "metrics:read"]},
        headers=as_user,
        timeout=10,
    )
    assert key.status_code == 201, key.text
    api_key = key.json()["key"]
    as_key = {"Authorization": f"Bearer {api_key}"}
    fake_github_server.rest["repository"] = {
        "id": 9_900_100,
        "full_name": "secret-co/vault",
        "name": "vault",
        "private": True,
        "default_branch": "main",
    }
    repo = requests.post(
        f"{activity}/api/v1/orgs/{slug}/repositories",
        json={"full_name": "secret-co/vault"},
        headers=as_key,
        timeout=10,
    )
    assert repo.status_code == 201, repo.text
    webhook_secret = repo.json()["webhook_secret"]
    payload = json.dumps(
        {"zen": "hi", "repository": {"id": 9_900_100, "full_name": "secret-co/vault"}}
    ).encode()
    ping = requests.post(
        f"{activity}/webhooks/github",
        data=payload,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "ping",
            "X-GitHub-Delivery": "secret-flow-1",
            "X-Hub-Signature-256": sign(payload, webhook_secret),
        },
        timeout=10,
    )
    assert ping.status_code == 200, ping.text
    for url in (
        f"{activity}/api/v1/orgs/{slug}/repositories",
        f"{secure_stack.url('metrics')}/api/v1/orgs/{slug}/metrics/daily",
    ):
        assert requests.get(url, headers=as_key, timeout=10).status_code == 200
    assert requests.post(f"{accounts}/api/v1/auth/logout", headers=as_user).status_code == 204
    time.sleep(1)  # access log lines are written just after each response

    secrets = {
        "API key": api_key,
        "seeded API keys": list(secure_stack.keys.values()),
        "session token": session,
        "webhook secret": webhook_secret,
        "GitHub token": github_token,
    }
    plaintexts = [
        (what, value) for what, v in secrets.items() for value in ([v] if isinstance(v, str) else v)
    ]
    logs = {p.name: p.read_text(errors="replace") for p in secure_stack.log_dir.iterdir()}
    assert sum(len(text) for text in logs.values()) > 1000  # the logs really were captured
    dump = subprocess.run(
        ["pg_dump", "--no-owner", secure_stack.database_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "secret-co/vault" in dump and "keeper" in dump  # the flow's rows are in the dump
    for what, value in plaintexts:
        for name, text in logs.items():
            assert value not in text, f"{what} in the log {name}"
        assert value not in dump, f"{what} in the database dump"
    record(
        "10 secrets in logs and dumps",
        f"{len(plaintexts)} secrets (keys, session, webhook secret, GitHub token) "
        f"absent from {len(logs)} logs and pg_dump",
        passed=True,
    )
