"""Issue 17 item 6: outside development no process runs on a default secret. A service (on
gunicorn, as deployed) or a worker started with DEVMETRICS_ENV=staging and no
INTERNAL_API_TOKEN, or with the public development token, or with no encryption key, refuses
to start with one line naming the setting; a staging service running with its own token
answers 401 to the development token on its internal routes."""

from __future__ import annotations

import subprocess

import pytest
import requests

from shared.config import DEVELOPMENT_INTERNAL_TOKEN, ConfigError, Settings
from tests.conftest import DEVMETRICS
from tests.helpers import ROOT, SERVICE_NAMES, stop
from tests.reliability.report import record
from tests.security.processes import start_or_refusal

STAGING_TOKEN = "staging-internal-token-9f3e1c"
TOKEN_MISSING = (
    "error: INTERNAL_API_TOKEN must be set when DEVMETRICS_ENV=staging "
    "(only development has a default)"
)
TOKEN_PUBLIC = (
    "error: INTERNAL_API_TOKEN is the public development token: set a secret of your own "
    "when DEVMETRICS_ENV=staging"
)
KEYS_MISSING = (
    "error: DEVMETRICS_ENCRYPTION_KEYS must be set when DEVMETRICS_ENV=staging (only "
    "development generates a key file; generate one with: devmetrics keys generate)"
)


def staging_env(stack, **changes) -> dict:
    env = {**stack.env, "DEVMETRICS_ENV": "staging"}
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def accepts_development_token(port: int) -> int:
    """The status of an internal message sent with the public development token."""
    return requests.post(
        f"http://127.0.0.1:{port}/internal/v1/messages",
        json={"id": "item-6-probe", "topic": "no-such-topic", "payload": {}},
        headers={"Authorization": f"Bearer {DEVELOPMENT_INTERNAL_TOKEN}"},
        timeout=10,
    ).status_code


def assert_refused(result, line: str, what: str) -> None:
    if result[0] is None:  # it started: show what the hole gives away, then fail
        _, process, port = result
        try:
            status = accepts_development_token(port)
        finally:
            stop(process)
        raise AssertionError(f"{what} started; the development token got {status}")
    code, stdout, stderr = result
    assert code != 0, (what, code)
    assert stderr.splitlines() == [line], (what, stderr)
    assert stdout == "", (what, stdout)


def test_staging_services_without_their_own_token_refuse_to_start(secure_stack, tmp_path):
    no_token = staging_env(secure_stack, INTERNAL_API_TOKEN=None)
    public_token = staging_env(secure_stack, INTERNAL_API_TOKEN=DEVELOPMENT_INTERNAL_TOKEN)
    for service in SERVICE_NAMES:
        missing = start_or_refusal(service, no_token, tmp_path)
        assert_refused(missing, TOKEN_MISSING, f"{service} without a token")
        public = start_or_refusal(service, public_token, tmp_path)
        assert_refused(public, TOKEN_PUBLIC, f"{service} with the development token")
    record(
        "17.6 development secrets",
        "each service on gunicorn with DEVMETRICS_ENV=staging and no token, or the public "
        "development token: refuses to start, one line naming INTERNAL_API_TOKEN",
        passed=True,
        bad_inputs=2 * len(SERVICE_NAMES),
    )


def test_staging_service_without_an_encryption_key_refuses_to_start(secure_stack, tmp_path):
    env = staging_env(
        secure_stack, INTERNAL_API_TOKEN=STAGING_TOKEN, DEVMETRICS_ENCRYPTION_KEYS=None
    )
    result = start_or_refusal("notifications", env, tmp_path)
    assert_refused(result, KEYS_MISSING, "notifications without an encryption key")
    assert not (tmp_path / ".devmetrics-encryption-key").exists()  # no key file generated
    record(
        "17.6 development secrets",
        "a service with DEVMETRICS_ENV=staging and no DEVMETRICS_ENCRYPTION_KEYS refuses to "
        "start (no generated key file), one line naming it",
        passed=True,
        bad_inputs=1,
    )


def test_running_staging_service_refuses_the_development_token(secure_stack, tmp_path):
    env = staging_env(secure_stack, INTERNAL_API_TOKEN=STAGING_TOKEN)
    started = start_or_refusal("notifications", env, tmp_path)
    assert started[0] is None, started
    _, process, port = started
    try:
        assert accepts_development_token(port) == 401
        own = requests.post(
            f"http://127.0.0.1:{port}/internal/v1/messages",
            json={"id": "item-6-probe", "topic": "no-such-topic", "payload": {}},
            headers={"Authorization": f"Bearer {STAGING_TOKEN}"},
            timeout=10,
        )
        assert own.status_code == 422  # its own token gets through (to an unknown topic)
    finally:
        stop(process)
    record(
        "17.6 development secrets",
        "a running staging service: the development token on an internal route is 401",
        passed=True,
        bad_inputs=1,
    )


def test_staging_worker_without_its_own_token_refuses_to_start(secure_stack, database_factory):
    # An empty database of its own: a worker that did start would claim nothing of the stack's.
    empty = database_factory.new_url()
    for token, line in ((None, TOKEN_MISSING), (DEVELOPMENT_INTERNAL_TOKEN, TOKEN_PUBLIC)):
        env = staging_env(secure_stack, INTERNAL_API_TOKEN=token, DATABASE_URL=empty)
        result = subprocess.run(
            [str(DEVMETRICS), "worker", "outbox", "--once"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert (result.returncode, result.stdout) == (1, ""), result
        assert result.stderr.splitlines() == [line], result.stderr
    record(
        "17.6 development secrets",
        "`devmetrics worker` with DEVMETRICS_ENV=staging, no token / the development token: "
        "refuses, one line naming INTERNAL_API_TOKEN",
        passed=True,
        bad_inputs=2,
    )


def test_development_still_runs_on_defaults():
    """A fresh clone (development, nothing set) keeps working: the default token is only
    ever accepted there."""
    development = Settings.from_env({})
    assert development.require_internal_token() == DEVELOPMENT_INTERNAL_TOKEN
    for environment in ("staging", "production", "test"):
        with pytest.raises(ConfigError, match="INTERNAL_API_TOKEN must be set"):
            Settings.from_env({"DEVMETRICS_ENV": environment}).require_internal_token()
