"""Secrets at rest (OAuth tokens, webhook and rule secrets) and API key material."""

from __future__ import annotations

import base64
import hashlib
import secrets

import bcrypt
from cryptography.fernet import Fernet, InvalidToken

from shared.config import Settings

# Used only outside production when DEVMETRICS_SECRET_KEY is unset, so a fresh clone runs.
_DEVELOPMENT_SECRET = "devmetrics-development-secret-do-not-use-in-production"

API_KEY_PREFIX = "dm"
BCRYPT_ROUNDS = 12


class SecretKeyMissing(RuntimeError):
    pass


def _fernet(settings: Settings | None = None) -> Fernet:
    settings = settings or Settings.from_env()
    secret = settings.secret_key
    if not secret:
        if settings.is_production:
            raise SecretKeyMissing(
                "DEVMETRICS_SECRET_KEY must be set when DEVMETRICS_ENV=production"
            )
        secret = _DEVELOPMENT_SECRET
    # Any passphrase becomes a valid 32-byte Fernet key.
    key = base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())
    return Fernet(key)


def encrypt(plaintext: str, settings: Settings | None = None) -> str:
    return _fernet(settings).encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str, settings: Settings | None = None) -> str:
    try:
        return _fernet(settings).decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        raise ValueError("cannot decrypt: wrong DEVMETRICS_SECRET_KEY or corrupted value") from None


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


# A real hash of nothing, so a lookup miss costs the same bcrypt time as a wrong secret.
DUMMY_HASH = "$2b$12$C6UzMDM.H6dfI/f/IKcEeO5hL9uBd6s3Oj8WqY1m3Tq9kZp7v6o0K"


def check_api_key(plaintext: str, key_hash: str) -> bool:
    return bcrypt.checkpw(plaintext.encode(), key_hash.encode())
