"""Secrets at rest (OAuth tokens, webhook and rule secrets) and API key material.

Encryption is Fernet with the keys in DEVMETRICS_ENCRYPTION_KEYS (comma-separated, newest
first): new values are encrypted with the newest key, any listed key decrypts, so keys can
be rotated (`devmetrics keys rotate` re-encrypts everything with the newest). Only in
development is one generated into a local file when none is set; in every other environment
(production, staging, ...) a missing key is an error.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from functools import lru_cache
from pathlib import Path

import bcrypt
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from shared.config import ConfigError, Settings
from shared.observability import API_KEY_BCRYPT_CHECKS

log = logging.getLogger(__name__)

API_KEY_PREFIX = "dm"
SESSION_PREFIX = "dms"
BCRYPT_ROUNDS = 12
DEVELOPMENT_KEY_FILE = ".devmetrics-encryption-key"


def _load_keys(settings: Settings) -> tuple[str, ...]:
    if settings.encryption_keys:
        return settings.encryption_keys
    if not settings.is_development:
        # A key generated on one host sits next to the code, differs on every host and is
        # lost with the container: outside development the stored secrets need a real one.
        raise ConfigError(
            f"DEVMETRICS_ENCRYPTION_KEYS must be set when DEVMETRICS_ENV={settings.environment} "
            "(only development generates a key file; generate one with: devmetrics keys generate)"
        )
    path = Path(settings.key_file or DEVELOPMENT_KEY_FILE)
    if not path.exists():
        path.write_text(Fernet.generate_key().decode() + "\n")
        os.chmod(path, 0o600)
        log.warning("generated a development encryption key in %s", path.resolve())
    return (path.read_text().strip(),)


@lru_cache(maxsize=8)
def _fernet_for(keys: tuple[str, ...]) -> MultiFernet:
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.strip().encode()))
        except (ValueError, TypeError):
            raise ConfigError(
                f"DEVMETRICS_ENCRYPTION_KEYS: key #{position} is not a Fernet key "
                "(32 url-safe base64-encoded bytes)"
            ) from None
    return MultiFernet(fernets)


def fernet(settings: Settings | None = None) -> MultiFernet:
    return _fernet_for(_load_keys(settings or Settings.from_env()))


def check_keys(settings: Settings | None = None) -> None:
    """Fail now, with a clear message, rather than on the first secret (used at startup)."""
    fernet(settings)


def encrypt(plaintext: str, settings: Settings | None = None) -> str:
    return fernet(settings).encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str, settings: Settings | None = None, ttl: int | None = None) -> str:
    """The plaintext; with `ttl`, only if encrypted less than `ttl` seconds ago."""
    try:
        return fernet(settings).decrypt(ciphertext.encode(), ttl=ttl).decode()
    except InvalidToken:
        raise ValueError(
            "cannot decrypt: no key in DEVMETRICS_ENCRYPTION_KEYS opens this value"
        ) from None


def reencrypt(ciphertext: str, settings: Settings | None = None) -> str:
    """The same secret under the newest key."""
    return fernet(settings).rotate(ciphertext.encode()).decode()


def new_api_key() -> tuple[str, str, str]:
    """A new key as (plaintext, public prefix, bcrypt hash). Only the plaintext grants access."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    plaintext = f"{API_KEY_PREFIX}_{prefix}_{secret}"
    key_hash = bcrypt.hashpw(plaintext.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()
    return plaintext, prefix, key_hash


def split_api_key(plaintext: str) -> str | None:
    """The public prefix of a well-formed key, else None (lookup never scans)."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX or len(parts[1]) != 12:
        return None
    return parts[1]


def check_api_key(plaintext: str, key_hash: str) -> bool:
    """bcrypt (~250 ms of CPU): only for a key whose prefix names a stored key."""
    valid = bcrypt.checkpw(plaintext.encode(), key_hash.encode())
    API_KEY_BCRYPT_CHECKS.labels("accepted" if valid else "refused").inc()
    return valid


def new_session_token() -> str:
    # 256 bits of randomness: a fast hash (sha256) is enough to store it, unlike passwords.
    return f"{SESSION_PREFIX}_{secrets.token_urlsafe(32)}"


def is_session_token(token: str) -> bool:
    """A session token (checked by its SHA-256 digest, cheap) rather than an API key."""
    return token.startswith(SESSION_PREFIX + "_")


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
