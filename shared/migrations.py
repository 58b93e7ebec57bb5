"""The single migration history in `migrations/`, driven through peewee-migrate."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from unittest import mock

import peewee as pw
from peewee_migrate import Router, auto
from peewee_migrate.logs import logger as migrate_logger
from peewee_migrate.router import compile_migrations

from shared.models import MODELS

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
MIGRATE_TABLE = "migratehistory"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,60}$")

# The CLI prints its own one-line outcome (and error); keep the library's logging out of it.
migrate_logger.setLevel(logging.CRITICAL)


class MigrationError(RuntimeError):
    pass


def router(database) -> Router:
    return Router(database, migrate_dir=MIGRATIONS_DIR, migrate_table=MIGRATE_TABLE)


def available() -> list[str]:
    return sorted(p.stem for p in MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.py"))


def applied(database) -> list[str]:
    return router(database).done


def pending(database) -> list[str]:
    return router(database).diff


def migrate(database, target: str | None = None) -> list[str]:
    """Apply pending migrations in order (up to and including `target`); returns their names."""
    r = router(database)
    if target and target not in r.todo:
        raise MigrationError(f"unknown migration {target!r}")
    return r.run(target)


def rollback(database) -> str:
    """Undo the latest applied migration; returns its name."""
    r = router(database)
    done = r.done
    if not done:
        raise MigrationError("nothing to roll back: no migration is applied")
    r.rollback()
    return done[-1]


def mark_applied(database, name: str) -> None:
    """Record `name` as applied without running it (to settle a conflict by hand)."""
    r = router(database)
    if name not in r.todo:
        raise MigrationError(f"unknown migration {name!r} (known: {', '.join(r.todo)})")
    if name in r.done:
        raise MigrationError(f"{name} is already recorded as applied")
    r.run_one(name, r.migrator, fake=True, force=True)


class _Column(auto.Column):
    """peewee-migrate's column writer, keeping two things it drops: a foreign key's
    `index=False` (ours are covered by composite indexes) and column CHECK constraints."""

    def get_field_parameters(self, *, change=False):
        params = super().get_field_parameters(change=change)
        if isinstance(self.field, pw.ForeignKeyField) and not self.field.index and not change:
            params["index"] = False
        if self.field.constraints and not change:
            rendered = ", ".join(f"pw.SQL({c.sql!r})" for c in self.field.constraints)
            params["constraints"] = f"[{rendered}]"
        return params


def _field_to_code(field: pw.Field, *, space: bool = True, **_kwargs) -> str:
    return _Column(field).get_field(" " if space else "")


def _history_router() -> Router:
    """A router over an in-memory database: the history's end state, with no server needed."""
    return router(pw.SqliteDatabase(":memory:"))


def model_changes() -> str:
    """The migration code that would take the history's end state to `shared.models`
    ("" when they match)."""
    r = _history_router()
    with mock.patch.object(auto, "field_to_code", _field_to_code):
        for name in r.diff:
            r.run_one(name, r.migrator, fake=True)
        return compile_migrations(r.migrator, list(MODELS))


def make_migration(name: str) -> Path | None:
    """Write the next migration from the diff between the history and `shared.models`.

    Returns the new file, or None when the models match the history.
    """
    if not NAME_RE.match(name):
        raise MigrationError(
            f"migration name {name!r} must be lowercase letters, digits and underscores"
        )
    with mock.patch.object(auto, "field_to_code", _field_to_code):
        created = _history_router().create(name, auto=list(MODELS))
    if not created:
        return None
    path = MIGRATIONS_DIR / f"{created}.py"
    # peewee-migrate writes JSON columns as postgres_ext.JSONField (json, not jsonb, and
    # PostgreSQL-only); the models use peewee.JSONField (jsonb on PostgreSQL, text on SQLite).
    code = path.read_text().replace("pw_pext.JSONField(", "pw.JSONField(")
    # The template's long docstring of examples would repeat in every file: one line instead.
    code = re.sub(
        r'^"""Peewee migrations -- (\S+)\.py\.\n\nSome examples.*?\n"""\n',
        lambda m: (
            f'"""Migration {m.group(1)} (peewee-migrate; the operations it offers are listed '
            'in\npeewee_migrate/template.py)."""\n'
        ),
        code,
        count=1,
        flags=re.S,
    )
    # Index names must start with the table name, as in the models and in add/drop_index.
    code = code.replace(
        "        class Meta:\n            table_name = ",
        "        class Meta:\n            legacy_table_names = False\n            table_name = ",
    )
    path.write_text(code)
    return path


def pending_names(database) -> list[str] | None:
    """Migrations not yet applied, read without side effects (the router would create its
    history table); None when the database has no migration history at all."""
    if MIGRATE_TABLE not in database.get_tables():
        return None
    done = {row[0] for row in database.execute_sql(f"SELECT name FROM {MIGRATE_TABLE}")}
    return [name for name in available() if name not in done]


def is_up_to_date(database) -> tuple[bool, str]:
    """(True, "") when every migration is applied; else (False, the reason). Read only, so
    the application role (which may not create the history table) can ask too."""
    try:
        todo = pending_names(database)
    except pw.DatabaseError as exc:
        return False, f"database error: {' '.join(str(exc).split())}"
    if todo is None:  # never migrated: every migration is pending
        todo = available()
    if todo:
        return False, f"{len(todo)} pending migration(s): {', '.join(todo)}"
    return True, ""
