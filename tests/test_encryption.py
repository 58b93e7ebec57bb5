"""Secrets at rest: Fernet with rotatable keys; production refuses to run without a key;
development generates one; `devmetrics keys rotate` re-encrypts every stored secret."""

import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from shared import crypto
from shared.config import ConfigError, Settings
from tests.conftest import ROOT, connect, run_cli


def settings(**env):
    return Settings.from_env(env)


def test_newest_key_encrypts_and_every_listed_key_decrypts():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed_old = crypto.encrypt("gho_secret", settings(DEVMETRICS_ENCRYPTION_KEYS=old))
    both = settings(DEVMETRICS_ENCRYPTION_KEYS=f"{new},{old}")
    assert crypto.decrypt(sealed_old, both) == "gho_secret"
    rotated = crypto.reencrypt(sealed_old, both)
    assert crypto.decrypt(rotated, settings(DEVMETRICS_ENCRYPTION_KEYS=new)) == "gho_secret"
    with pytest.raises(ValueError, match="no key in DEVMETRICS_ENCRYPTION_KEYS opens"):
        crypto.decrypt(sealed_old, settings(DEVMETRICS_ENCRYPTION_KEYS=new))


def test_production_without_a_key_refuses_with_a_clear_message(monkeypatch):
    production = settings(DEVMETRICS_ENV="production", INTERNAL_API_TOKEN="t")
    with pytest.raises(ConfigError, match="DEVMETRICS_ENCRYPTION_KEYS must be set"):
        crypto.check_keys(production)
    with pytest.raises(ConfigError, match="key #2 is not a Fernet key"):
        crypto.check_keys(
            settings(DEVMETRICS_ENCRYPTION_KEYS=f"{Fernet.generate_key().decode()},nope")
        )
    from services.metrics import create_app

    monkeypatch.setenv("DEVMETRICS_ENV", "production")
    monkeypatch.setenv("INTERNAL_API_TOKEN", "t")
    monkeypatch.delenv("DEVMETRICS_ENCRYPTION_KEYS")
    with pytest.raises(ConfigError, match="DEVMETRICS_ENCRYPTION_KEYS must be set"):
        create_app({"TESTING": True})


def test_development_generates_a_local_key_file_once(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DEVMETRICS_ENCRYPTION_KEYS"}
    code = "from shared import crypto; print(crypto.decrypt(crypto.encrypt('x')))"
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**env, "PYTHONPATH": str(ROOT)},
        )
        assert result.stdout.strip() == "x", result.stderr
    key_file = tmp_path / ".devmetrics-encryption-key"
    Fernet(key_file.read_text().strip().encode())  # a valid key
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"


def test_keys_rotate_reencrypts_every_stored_secret(fresh_database_url):
    old = os.environ["DEVMETRICS_ENCRYPTION_KEYS"]
    assert run_cli("db", "migrate", database_url=fresh_database_url).returncode == 0
    assert run_cli("db", "seed", database_url=fresh_database_url).returncode == 0
    new = run_cli("keys", "generate", database_url=fresh_database_url).stdout.strip()
    rotated = run_cli(
        "keys",
        "rotate",
        database_url=fresh_database_url,
        env={"DEVMETRICS_ENCRYPTION_KEYS": f"{new},{old}"},
    )
    assert rotated.returncode == 0, rotated.stderr
    assert "repositories.webhook_secret_encrypted: 3 re-encrypted" in rotated.stdout
    assert "notification_rules.secret_encrypted: 1 re-encrypted" in rotated.stdout
    database = connect(fresh_database_url)
    secrets = [
        r[0]
        for r in database.execute_sql(
            "SELECT webhook_secret_encrypted FROM repositories"
        ).fetchall()
    ]
    database.close()
    only_new = settings(DEVMETRICS_ENCRYPTION_KEYS=new)
    assert all(len(crypto.decrypt(value, only_new)) == 40 for value in secrets)
