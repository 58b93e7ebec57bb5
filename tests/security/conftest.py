"""The security suite's stack: the four services on gunicorn over one seeded database, an
app-wide webhook secret (so deliveries for the seeded repositories can be signed), sessions
made through the real login-link route, and the auth requirements of every route."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid

import pytest
import requests

from shared.database import db
from tests.fake_github import env_for
from tests.helpers import SERVICE_NAMES, WEBHOOK_SAMPLES, free_port, service_env
from tests.services.conftest import KEY_RE, Stack, github_sign_in  # noqa: F401

WEBHOOKS = WEBHOOK_SAMPLES
APP_WEBHOOK_SECRET = "security-suite-app-webhook-secret-5f1c"
# The seed: (login, org) pairs giving each role, and each org's repositories.
ROLE_SEATS = {
    "OWNER": ("alice", "techcorp"),
    "ADMIN": ("bob", "techcorp"),
    "MEMBER": ("charlie", "techcorp"),
    "VIEWER": ("alice", "startup-inc"),
}
SEEDED_REPO = {"id": 70001, "full_name": "techcorp/api-server", "name": "api-server"}


def start_stack(database_factory, tmp_path_factory, fake_github_server, **extra) -> Stack:
    url = database_factory.new_url()
    ports = {name: free_port() for name in SERVICE_NAMES}
    settings = {
        "INTROSPECTION_CACHE_SECONDS": 1,
        "GITHUB_WEBHOOK_SECRET": APP_WEBHOOK_SECRET,
        **env_for(fake_github_server),
        **extra,
    }
    env = service_env(url, ports, **settings)
    stack = Stack(url, ports, env, tmp_path_factory.mktemp("security-logs"))
    assert stack.cli("db", "migrate").returncode == 0
    seeded = stack.cli("db", "seed")
    assert seeded.returncode == 0, seeded.stderr
    stack.keys = {name: key for name, _org, key in KEY_RE.findall(seeded.stdout)}
    return stack


@pytest.fixture(scope="session")
def secure_stack(database_factory, tmp_path_factory, fake_github_server):
    stack = start_stack(database_factory, tmp_path_factory, fake_github_server)
    try:
        for name in SERVICE_NAMES:
            stack.start(name)
        yield stack
    finally:
        for name in list(stack.processes):
            stack.stop(name)


def admin_key(stack, name: str = "") -> str:
    """A new admin-scope API key of techcorp, made by the CLI."""
    name = name or f"security suite {time.time_ns()}"
    made = stack.cli("apikey", "create", "--org", "techcorp", "--name", name, "--scope", "admin")
    assert made.returncode == 0, made.stderr
    return re.search(r"^(dm_\S+)$", made.stdout, re.M).group(1)


def session_for(stack: Stack, login: str) -> str:
    """A real session token for a seeded user, through `devmetrics login-link` and the
    accounts route that consumes it (the cookie it sets is the token)."""
    made = stack.cli("login-link", "--user", login, "--base-url", stack.url("accounts"))
    assert made.returncode == 0, made.stderr
    response = requests.get(made.stdout.strip(), allow_redirects=False, timeout=10)
    assert response.status_code == 303, response.text
    return response.cookies["devmetrics_session"]


@pytest.fixture(scope="session")
def sessions(secure_stack) -> dict[str, str]:
    """login -> session token for the seeded users."""
    return {login: session_for(secure_stack, login) for login in ("alice", "bob", "charlie")}


def sign(body: bytes, secret: str = APP_WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def real_payload(event: str, name: str = "payload.json") -> dict:
    """A reference GitHub payload, pointed at a seeded repository."""
    payload = json.loads((WEBHOOKS / event / name).read_text())
    payload["repository"].update(SEEDED_REPO)
    return payload


def webhook_headers(event: str, body: bytes, **extra) -> dict:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body),
        **extra,
    }


def count_events(stack: Stack) -> int:
    from tests.conftest import connect

    database = connect(stack.database_url)
    try:
        return database.execute_sql("SELECT COUNT(*) FROM events").fetchone()[0]
    finally:
        database.close()


def specs(stack: Stack) -> dict[str, dict]:
    return {
        name: requests.get(stack.url(name) + "/openapi.json", timeout=10).json()
        for name in SERVICE_NAMES
    }


def _openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def route_requirements() -> dict[tuple[str, str, str], dict]:
    """(service, OpenAPI path, METHOD) -> {"scope", "role"} as declared by `require` on the
    view, read from each service's url_map (apps built in-process, nothing served)."""
    import importlib

    import peewee as pw

    previous = db.obj
    found = {}
    try:
        for service in SERVICE_NAMES:
            app = importlib.import_module(f"services.{service}").create_app(
                {"TESTING": True, "DATABASE": pw.SqliteDatabase(":memory:")}
            )
            for rule in app.url_map.iter_rules():
                view = app.view_functions[rule.endpoint]
                view_class = getattr(view, "view_class", None)
                for method in rule.methods - {"HEAD", "OPTIONS"}:
                    handler = getattr(view_class, method.lower(), None) if view_class else view
                    auth = getattr(handler, "_devmetrics_auth", None)
                    if auth is not None:
                        found[(service, _openapi_path(rule.rule), method)] = auth
    finally:
        db.initialize(previous)
    return found
