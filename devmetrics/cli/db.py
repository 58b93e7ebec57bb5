"""`devmetrics db ...`: migrations, the application role's grants, schema checks, reset and
seed. The commands that change the schema or privileges connect as the owner of the tables
(MIGRATION_DATABASE_URL, else DATABASE_URL); `check` and `seed` as the services do."""

from __future__ import annotations

import sys
import time

import click

from devmetrics.cli.common import fail, with_database, with_owner_database
from shared import migrations, roles, schema
from shared.database import backend_name, db, redact_url, server_version
from shared.models import MODELS, Organization


@click.group("db")
def db_group():
    """Database: migrations, schema verification, reset and seed."""


@db_group.command("migrate")
@click.option("--to", "target", help="Stop after this migration.")
@with_owner_database
def migrate_cmd(settings, target):
    """Apply pending migrations (as the owner), then grant the application role
    (DATABASE_APP_ROLE) what the services need."""
    done = migrations.migrate(db.obj, target)
    for name in done:
        click.echo(f"applied {name}")
    click.echo(f"{len(done)} migration(s) applied" if done else "nothing to migrate: up to date")
    _grant_configured_role(settings)


def _grant_configured_role(settings) -> None:
    role = settings.database_app_role
    if not role:
        return
    if backend_name() != "postgresql":
        click.echo(f"DATABASE_APP_ROLE={role} ignored: SQLite has no roles")
        return
    for line in roles.grant_app_role(db.obj, role):
        click.echo(line)


@db_group.command("grant-app-role")
@click.argument("role", required=False)
@with_owner_database
def grant_app_role_cmd(settings, role):
    """Grant ROLE (default DATABASE_APP_ROLE) what the services and workers need and nothing
    more (PostgreSQL; idempotent; run as the owner after each migration, as `db migrate`
    does when DATABASE_APP_ROLE is set)."""
    role = role or settings.database_app_role
    if not role:
        fail("name the application role: devmetrics db grant-app-role ROLE (or DATABASE_APP_ROLE)")
    for line in roles.grant_app_role(db.obj, role):
        click.echo(line)


@db_group.command("status")
@with_owner_database
def status_cmd(settings):
    """List applied and pending migrations."""
    applied = migrations.applied(db.obj)
    files = migrations.available()
    click.echo(f"database: {redact_url(settings.owner_database_url)}")
    for name in files:
        click.echo(f"  [{'x' if name in applied else ' '}] {name}")
    for name in applied:
        if name not in files:
            click.echo(f"  [?] {name} (applied, but its file is missing)")
    todo = [n for n in files if n not in applied]
    click.echo(f"{len(applied)} applied, {len(todo)} pending")


@db_group.command("makemigration")
@click.argument("name")
def makemigration_cmd(name):
    """Generate the next migration from the models (auto-diff). Review it before committing."""
    try:
        path = migrations.make_migration(name)
    except migrations.MigrationError as exc:
        fail(str(exc))
    if path is None:
        click.echo("no changes: the models match the migration history")
        return
    click.echo(f"created {path}")
    click.echo("review it: defaults of JSON fields, data moves, and the rollback()")


@db_group.command("rollback")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_owner_database
def rollback_cmd(settings, yes):
    """Undo the latest applied migration."""
    applied = migrations.applied(db.obj)
    if not applied:
        fail("nothing to roll back: no migration is applied")
    if not yes:
        click.confirm(
            f"Roll back {applied[-1]} on {redact_url(settings.owner_database_url)}?", abort=True
        )
    click.echo(f"rolled back {migrations.rollback(db.obj)}")


@db_group.command("mark-applied")
@click.argument("name")
@with_owner_database
def mark_applied_cmd(settings, name):
    """Record a migration as applied without running it (to resolve conflicts)."""
    migrations.mark_applied(db.obj, name)
    click.echo(f"marked {name} as applied (not run)")


@db_group.command("verify")
@with_owner_database
def verify_cmd(settings):
    """Compare the live schema with the models; exit 1 listing every difference."""
    problems = schema.verify(MODELS, db.obj)
    if problems:
        click.echo(f"schema drift: {len(problems)} difference(s) from the models")
        for line in problems:
            click.echo(f"  - {line}")
        sys.exit(1)
    click.echo(
        f"schema matches the models: {len(MODELS)} tables, "
        f"{schema.index_count(db.obj)} indexes ({backend_name()})"
    )


@db_group.command("check")
@with_database
def check_cmd(settings):
    """Connection test: SELECT 1, backend, server version and latency."""
    start = time.perf_counter()
    db.execute_sql("SELECT 1").fetchone()
    latency_ms = (time.perf_counter() - start) * 1000
    click.echo(f"ok: {backend_name()} ({server_version()}) at {redact_url(settings.database_url)}")
    click.echo(f"SELECT 1 in {latency_ms:.2f} ms")


@db_group.command("reset")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_owner_database
def reset_cmd(settings, yes):
    """Drop every table, then migrate. Destructive; refused when DEVMETRICS_ENV=production."""
    if settings.is_production:
        fail("refusing to reset: DEVMETRICS_ENV=production")
    if not yes:
        click.confirm(
            f"Drop ALL tables and data in {redact_url(settings.owner_database_url)}?", abort=True
        )
    dropped = drop_all_tables(db.obj)
    click.echo(f"dropped {dropped} table(s)")
    for name in migrations.migrate(db.obj):
        click.echo(f"applied {name}")
    _grant_configured_role(settings)


def drop_all_tables(database) -> int:
    tables = database.get_tables()
    sqlite = backend_name(database) == "sqlite"
    if sqlite:
        # Dropping a parent before its children would trip the foreign-key checks;
        # the pragma only takes effect outside a transaction.
        database.execute_sql("PRAGMA foreign_keys = OFF")
    try:
        with database.atomic():
            for table in tables:
                quoted = '"' + table.replace('"', '""') + '"'
                database.execute_sql(f"DROP TABLE IF EXISTS {quoted}{'' if sqlite else ' CASCADE'}")
    finally:
        if sqlite:
            database.execute_sql("PRAGMA foreign_keys = ON")
    return len(tables)


@db_group.command("seed")
@click.option("--if-empty", is_flag=True, help="Only seed a database with no organization yet.")
@with_database
def seed_cmd(settings, if_empty):
    """Load the demo data set (idempotent: a second run changes nothing)."""
    from devmetrics.seed import seed

    ok, reason = migrations.is_up_to_date(db.obj)
    if not ok:
        fail(f"cannot seed: {reason} (run `devmetrics db migrate` first)")
    if if_empty and Organization.select().exists():
        click.echo("seed: skipped, the database already has data")
        return
    report = seed()
    for line in report.lines():
        click.echo(line)
