"""The GitHub App's settings and JWT (shared/config.py, shared/github.py GitHubApp)."""

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.config import ConfigError, Settings
from shared.github import GitHubApp


@pytest.fixture(scope="module")
def keys():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem, public


def test_app_settings_need_an_id_and_a_pem_key(keys, tmp_path):
    pem, _ = keys
    assert not GitHubApp(Settings.from_env({})).configured
    with pytest.raises(ConfigError, match="needs GITHUB_APP_ID"):
        Settings.from_env({"GITHUB_APP_PRIVATE_KEY": pem})
    with pytest.raises(ConfigError, match="PEM private key"):
        Settings.from_env({"GITHUB_APP_ID": "1", "GITHUB_APP_PRIVATE_KEY": "not a key"})
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match="cannot read"):
        Settings.from_env({"GITHUB_APP_ID": "1", "GITHUB_APP_PRIVATE_KEY_FILE": str(missing)})
    key_file = tmp_path / "app.pem"
    key_file.write_text(pem)
    settings = Settings.from_env(
        {"GITHUB_APP_ID": "7", "GITHUB_APP_PRIVATE_KEY_FILE": str(key_file)}
    )
    assert GitHubApp(settings).configured and settings.github_app_private_key == pem.strip()


def test_the_jwt_is_the_apps_rs256_token_valid_ten_minutes(keys):
    pem, public = keys
    app = GitHubApp(Settings.from_env({"GITHUB_APP_ID": "7", "GITHUB_APP_PRIVATE_KEY": pem}))
    claims = jwt.decode(app.jwt(), public, algorithms=["RS256"])
    assert claims["iss"] == "7" and claims["exp"] - claims["iat"] == 600  # GitHub's maximum
