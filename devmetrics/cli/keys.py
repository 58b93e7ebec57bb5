"""`devmetrics keys ...`: the encryption keys of secrets at rest."""

from __future__ import annotations

import click
from cryptography.fernet import Fernet
from peewee import chunked

from devmetrics.cli.common import with_database
from shared import crypto
from shared.database import db
from shared.models import NotificationRule, Repository, User

# Every column holding Fernet ciphertext.
ENCRYPTED_COLUMNS = [
    (User, User.oauth_token_encrypted),
    (Repository, Repository.webhook_secret_encrypted),
    (NotificationRule, NotificationRule.secret_encrypted),
]


@click.group("keys")
def keys_group():
    """Encryption keys (DEVMETRICS_ENCRYPTION_KEYS, comma-separated, newest first)."""


@keys_group.command("generate")
def generate_cmd():
    """Print a new key: put it first in DEVMETRICS_ENCRYPTION_KEYS, then run `keys rotate`."""
    click.echo(Fernet.generate_key().decode())


@keys_group.command("rotate")
@with_database
def rotate_cmd(settings):
    """Re-encrypt every stored secret with the newest key (batches of 500 rows)."""
    for model, column in ENCRYPTED_COLUMNS:
        ids = [r.id for r in model.select(model.id).where(column.is_null(False))]
        for batch in chunked(ids, 500):
            with db.atomic():
                rows = model.select(model.id, column).where(model.id.in_(batch))
                for row in rows:
                    value = crypto.reencrypt(getattr(row, column.name), settings)
                    model.update({column: value}).where(model.id == row.id).execute()
        click.echo(f"{model._meta.table_name}.{column.name}: {len(ids)} re-encrypted")
