"""What every `devmetrics` command shares: one-line errors and opening the database."""

from __future__ import annotations

import functools
import os
import sys

import click
import peewee as pw

from shared import migrations
from shared.config import ConfigError, Settings
from shared.database import (
    DatabaseConfigError,
    DatabaseUnavailable,
    connect_or_explain,
    db,
    init_db,
)
from shared.roles import RoleError


def fail(message: str, code: int = 1):
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _opening(url_of):
    """A decorator: open the database `url_of(settings)` names first; any problem becomes one
    clear line, not a traceback."""

    def decorator(command):
        @functools.wraps(command)
        def wrapper(*args, **kwargs):
            try:
                settings = Settings.from_env()
                url = url_of(settings)
                database = init_db(url)
                connect_or_explain(database, url)
            except (ConfigError, DatabaseConfigError, DatabaseUnavailable) as exc:
                fail(str(exc))
            try:
                return command(settings, *args, **kwargs)
            except (migrations.MigrationError, RoleError, ConfigError) as exc:
                fail(str(exc))
            except (pw.DatabaseError, pw.InterfaceError) as exc:
                fail(f"database error: {' '.join(str(exc).split())}")
            except (click.exceptions.Abort, click.exceptions.ClickException):
                raise
            except Exception as exc:  # one line for people; DEVMETRICS_DEBUG=1 for the traceback
                if os.environ.get("DEVMETRICS_DEBUG"):
                    raise
                detail = " ".join(str(exc).split())
                fail(f"{type(exc).__name__}: {detail} (DEVMETRICS_DEBUG=1 for details)")
            finally:
                if not db.is_closed():
                    db.close()

        return wrapper

    return decorator


# The services' connection (DATABASE_URL): the application role in production.
with_database = _opening(lambda settings: settings.database_url)
# The owner's (MIGRATION_DATABASE_URL, else DATABASE_URL): migrations and grants.
with_owner_database = _opening(lambda settings: settings.owner_database_url)
