"""Issue 17, item 12: the audit log stays append-only for the role the services run as.

A real two-role setup on the test server: a throwaway owner role that owns the database and
runs the migrations (`devmetrics db migrate` with MIGRATION_DATABASE_URL), and a throwaway
application role that `db migrate` grants and that the services, the workers and the
retention pass connect as (DATABASE_URL). Both roles are dropped at the end.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from dataclasses import dataclass
from urllib.parse import urlparse, urlunparse

import psycopg2
import pytest
import requests

from shared import partitions
from shared.models import AuditLog, Organization
from tests.conftest import TEST_DATABASE_URL, connect, run_cli
from tests.helpers import free_port, service_env
from tests.reliability.report import record
from tests.security.conftest import session_for
from tests.services.conftest import Stack

pytestmark = pytest.mark.postgres_only
ITEM = "17.12 audit log append-only"


@dataclass
class Roles:
    owner: str
    app: str
    owner_url: str
    app_url: str


def _url(user: str, password: str, database: str) -> str:
    server = urlparse(TEST_DATABASE_URL)
    netloc = f"{user}:{password}@{server.hostname}:{server.port or 5432}"
    return urlunparse(server._replace(netloc=netloc, path=f"/{database}"))


@pytest.fixture(scope="module")
def roles():
    """The two roles and their database, migrated by the owner and seeded by the app role."""
    suffix = uuid.uuid4().hex[:10]
    owner, app, name = f"dm_owner_{suffix}", f"dm_app_{suffix}", f"devmetrics_roles_{suffix}"
    passwords = {owner: secrets.token_hex(12), app: secrets.token_hex(12)}
    admin = psycopg2.connect(TEST_DATABASE_URL, connect_timeout=5)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            for role, password in passwords.items():
                cur.execute(f'CREATE ROLE "{role}" LOGIN PASSWORD %s', (password,))
            cur.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        found = Roles(
            owner,
            app,
            _url(owner, passwords[owner], name),
            _url(app, passwords[app], name),
        )
        migrated = run_cli(
            "db",
            "migrate",
            database_url=found.app_url,
            env={"MIGRATION_DATABASE_URL": found.owner_url},
        )
        assert migrated.returncode == 0, migrated.stderr
        # `db migrate` granted the services' role (DATABASE_URL's user) what it needs.
        assert f"app role {app}: not a superuser" in migrated.stdout
        assert "granted SELECT, INSERT on audit_logs" in migrated.stdout
        seeded = run_cli("db", "seed", database_url=found.app_url)
        assert seeded.returncode == 0, seeded.stderr
        yield found
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for role in (app, owner):
                cur.execute(f'DROP ROLE IF EXISTS "{role}"')
        admin.close()


def _count(url: str, sql: str, params=()) -> int:
    database = connect(url)
    try:
        return database.execute_sql(sql, params).fetchone()[0]
    finally:
        database.close()


def _rows(url: str, sql: str, params=()) -> list[tuple]:
    database = connect(url)
    try:
        return database.execute_sql(sql, params).fetchall()
    finally:
        database.close()


def _sqlstate(conn, statement: str) -> str:
    """Run `statement` in its own transaction; the SQLSTATE it failed with ('' if it ran)."""
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
        conn.commit()
        return ""
    except psycopg2.Error as exc:
        conn.rollback()
        return exc.pgcode


def test_app_role_cannot_switch_the_audit_log_off(roles):
    month = dt.datetime.now(dt.UTC).date()
    current = partitions.partition_name("audit_logs", month)
    coming = partitions.partition_name("audit_logs", month + dt.timedelta(days=32))
    before = _count(roles.owner_url, "SELECT count(*) FROM audit_logs")
    assert before > 0
    conn = psycopg2.connect(roles.app_url, connect_timeout=5)
    denied = "42501"  # insufficient_privilege (also "must be owner of table")
    attacks = {
        # The old escape hatch: any session could set it, and the trigger let it delete.
        "SET LOCAL devmetrics.audit_retention = 'on'; DELETE FROM audit_logs": denied,
        "SET LOCAL devmetrics.audit_retention = 'on'; "
        f"DELETE FROM {current} WHERE action = 'organization.created'": denied,
        "SET LOCAL devmetrics.audit_retention = 'on'; DELETE FROM audit_logs_default": denied,
        "UPDATE audit_logs SET action = 'forged'": denied,
        "UPDATE audit_logs SET actor_user_id = NULL": denied,
        "TRUNCATE audit_logs": denied,
        f"TRUNCATE {current}": denied,
        "ALTER TABLE audit_logs DISABLE TRIGGER audit_logs_append_only": denied,
        "ALTER TABLE audit_logs DISABLE TRIGGER ALL": denied,
        f"ALTER TABLE {current} DISABLE TRIGGER ALL": denied,
        "DROP TRIGGER audit_logs_append_only ON audit_logs": denied,
        f"ALTER TABLE audit_logs DETACH PARTITION {current}": denied,
        f"DROP TABLE {current}": denied,
        "ALTER TABLE audit_logs OWNER TO CURRENT_USER": denied,
        f"LOCK TABLE {current} IN ACCESS EXCLUSIVE MODE": denied,
        "CREATE OR REPLACE FUNCTION audit_logs_append_only() RETURNS trigger "
        "LANGUAGE plpgsql AS 'BEGIN RETURN OLD; END'": denied,
        # Objects of its own in the functions' schema could stand in for the owner's.
        "CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql AS 'SELECT 1'": denied,
        "CREATE TABLE public.audit_logs_shadow (id integer)": denied,
        f'SET ROLE "{roles.owner}"': denied,
        f'GRANT "{roles.owner}" TO CURRENT_USER': denied,
        # The owner's functions do only what retention may: never a young entry.
        f"SELECT * FROM devmetrics_drop_partition('{current}')": "P0001",
        f"SELECT * FROM devmetrics_drop_partition('{coming}')": "P0001",
        "SELECT * FROM devmetrics_drop_partition('audit_logs_default')": "P0001",
        "SELECT * FROM devmetrics_drop_partition('organizations')": "P0001",
    }
    got = {statement: _sqlstate(conn, statement) for statement in attacks}
    assert got == attacks
    # Asked to delete everything up to tomorrow, the retention function deletes none of it.
    org_ids = [None, *(r[0] for r in _rows(roles.app_url, "SELECT id FROM organizations"))]
    with conn.cursor() as cur:
        for org_id in org_ids:
            cur.execute(
                "SELECT devmetrics_delete_expired_audit_logs(%s, %s, 100000)",
                (org_id, dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=1)),
            )
            assert cur.fetchone()[0] == 0
    conn.commit()
    # What the services need still works: write an entry, read the log.
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO audit_logs (action, metadata, created_at) "
            "VALUES ('test.appended', '{}', now() AT TIME ZONE 'UTC')"
        )
        cur.execute("SELECT count(*) FROM audit_logs")
        seen = cur.fetchone()[0]
    conn.commit()
    conn.close()
    after = _count(roles.owner_url, "SELECT count(*) FROM audit_logs")
    assert seen == after == before + 1
    record(
        ITEM,
        "as the services' role: SET LOCAL devmetrics.audit_retention then DELETE, UPDATE, "
        "TRUNCATE, DISABLE/DROP TRIGGER, DETACH/DROP partition, SET ROLE owner, objects in "
        "the functions' schema, the retention functions asked for young entries: all refused",
        passed=True,
        bad_inputs=len(attacks) + len(org_ids),
        rows_lost=before + 1 - after,
    )


def test_retention_as_app_role_deletes_expired_entries_and_drops_partitions(roles):
    now = dt.datetime.now(dt.UTC)
    old_month = (now - dt.timedelta(days=800)).date()
    app = connect(roles.app_url)
    with app.bind_ctx([AuditLog, Organization]), app.atomic():
        techcorp = Organization.get(Organization.slug == "techcorp")
        startup = Organization.get(Organization.slug == "startup-inc")
        # techcorp keeps its audit log 400 days, so the month 380 days ago is not dropped whole.
        techcorp.settings = {**techcorp.settings, "retention_audit_days": 400}
        techcorp.save()
        AuditLog.insert_many(
            [
                *(
                    {"organization": techcorp, "action": "old.whole_month", "created_at": at}
                    for at in (
                        dt.datetime(old_month.year, old_month.month, 1, tzinfo=dt.UTC),
                        dt.datetime(old_month.year, old_month.month, 15, tzinfo=dt.UTC),
                        dt.datetime(old_month.year, old_month.month, 20, tzinfo=dt.UTC),
                    )
                ),
                {
                    "organization": startup,
                    "action": "old.expired",
                    "created_at": now - dt.timedelta(days=380),
                },
                {
                    "organization": techcorp,
                    "action": "old.kept",
                    "created_at": now - dt.timedelta(days=380),
                },
            ]
        ).execute()
    # Partition maintenance as the application role: the months waiting in the default
    # partition get their own (rows moved), through the owner's function.
    created = partitions.ensure_partitions(database=app)
    app.close()
    whole = partitions.partition_name("audit_logs", old_month)
    assert whole in created
    assert _count(roles.owner_url, f"SELECT count(*) FROM {whole}") == 3
    # A new partition carries its parent's grants, not the default privileges.
    assert _rows(
        roles.owner_url,
        "SELECT has_table_privilege(%s, %s, 'INSERT'), has_table_privilege(%s, %s, 'DELETE')",
        (roles.app, whole, roles.app, whole),
    ) == [(True, False)]

    done = run_cli("retention", "run", database_url=roles.app_url)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert (
        f"{'audit_logs':<14} {'techcorp':<20} {3:>8} deleted (partition {whole} dropped)" in lines
    )
    assert f"{'audit_logs':<14} {'startup-inc':<20} {1:>8} deleted" in lines
    assert whole not in [r[0] for r in _rows(roles.owner_url, "SELECT relname FROM pg_class")]
    left = dict(
        _rows(
            roles.owner_url,
            "SELECT action, count(*) FROM audit_logs WHERE action LIKE 'old.%%' GROUP BY 1",
        )
    )
    assert left == {"old.kept": 1}
    run = _rows(
        roles.owner_url,
        "SELECT metadata FROM audit_logs WHERE action = 'retention.run' ORDER BY id DESC LIMIT 1",
    )[0][0]
    assert run["partitions"] == [whole]
    record(
        ITEM,
        "`devmetrics retention run` and partition upkeep as the services' role: expired "
        "entries deleted and an expired partition dropped through the owner's functions, "
        "a 400-day organization's entry kept",
        passed=True,
        load=4,
    )


def test_services_as_app_role_and_organization_deletion_cascades(roles, tmp_path_factory):
    ports = {"accounts": free_port()}
    env = service_env(roles.app_url, ports)
    stack = Stack(roles.app_url, ports, env, tmp_path_factory.mktemp("roles-logs"))
    stack.start("accounts")
    try:
        token = session_for(stack, "alice")
        headers = {"Authorization": f"Bearer {token}"}
        accounts = stack.url("accounts")
        made = requests.post(
            f"{accounts}/api/v1/orgs",
            json={"name": "Doomed", "slug": "doomed-org"},
            headers=headers,
            timeout=10,
        )
        assert made.status_code == 201, made.text
        org_id = made.json()["id"]
        changed = requests.patch(
            f"{accounts}/api/v1/orgs/doomed-org",
            json={"name": "Doomed Inc"},
            headers=headers,
            timeout=10,
        )
        assert changed.status_code == 200, changed.text
        log = requests.get(
            f"{accounts}/api/v1/orgs/doomed-org/audit-logs", headers=headers, timeout=10
        )
        assert log.status_code == 200
        entries = len(log.json())
        assert entries >= 2

        gone = requests.delete(f"{accounts}/api/v1/orgs/doomed-org", headers=headers, timeout=10)

        assert gone.status_code == 204, gone.text
    finally:
        stack.stop("accounts")
    # The cascade ran as the owner of audit_logs (PostgreSQL's referential actions do), though
    # the services' role may not delete a single entry itself.
    left = _count(
        roles.owner_url, "SELECT count(*) FROM audit_logs WHERE organization_id = %s", (org_id,)
    )
    assert left == 0
    assert (
        _count(
            roles.owner_url,
            "SELECT count(*) FROM audit_logs WHERE action = 'organization.deleted' "
            "AND target_id = %s",
            (str(org_id),),
        )
        == 1
    )

    # The retention worker as the application role: creates the coming partitions, runs the pass.
    passes = _count(
        roles.owner_url, "SELECT count(*) FROM audit_logs WHERE action = 'retention.run'"
    )
    worker = run_cli("worker", "retention", "--once", database_url=roles.app_url)
    assert worker.returncode == 0, worker.stderr
    assert _rows(roles.owner_url, "SELECT status FROM jobs WHERE queue = 'retention'") == [
        ("DONE",)
    ]
    assert (
        _count(roles.owner_url, "SELECT count(*) FROM audit_logs WHERE action = 'retention.run'")
        == passes + 1
    )
    record(
        ITEM,
        "accounts and the retention worker run as the services' role: an organization's "
        f"deletion cascades to its {entries} audit entries (kept: organization.deleted)",
        passed=True,
        load=entries + 4,
    )


def test_grant_app_role_keeps_it_true_and_refuses_roles_that_could_undo_it(roles):
    def grant(role: str):
        return run_cli("db", "grant-app-role", role, database_url=roles.owner_url)

    first, again = grant(roles.app), grant(roles.app)
    assert first.returncode == again.returncode == 0, first.stderr
    assert first.stdout == again.stdout  # idempotent: nothing revoked, the same grants
    # Drift (a hand-made grant, to the role or to everyone) is taken back.
    database = connect(roles.owner_url)
    database.execute_sql(f'GRANT DELETE, TRUNCATE ON audit_logs TO "{roles.app}"')
    database.execute_sql("GRANT UPDATE ON audit_logs_default TO PUBLIC")
    database.close()
    fixed = grant(roles.app)
    assert fixed.returncode == 0, fixed.stderr
    assert f"revoked DELETE, TRUNCATE on audit_logs from {roles.app}" in fixed.stdout
    assert "revoked UPDATE on audit_logs_default from PUBLIC" in fixed.stdout
    assert _rows(
        roles.owner_url,
        "SELECT has_table_privilege(%s, 'audit_logs', 'DELETE'), "
        "has_table_privilege(%s, 'audit_logs_default', 'UPDATE')",
        (roles.app, roles.app),
    ) == [(False, False)]

    member = f"{roles.app}_member"
    admin = psycopg2.connect(TEST_DATABASE_URL, connect_timeout=5)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE ROLE "{member}" LOGIN IN ROLE "{roles.owner}"')
            cur.execute("SELECT current_user")
            superuser = cur.fetchone()[0]
        refusals = {
            roles.owner: "owns the tables",
            superuser: "is a superuser",
            member: f"is a member of {roles.owner}",
            f"{roles.app}_nobody": "does not exist",
        }
        answers = {role: grant(role) for role in refusals}
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP ROLE IF EXISTS "{member}"')
        admin.close()
    for role, reason in refusals.items():
        assert answers[role].returncode == 1
        assert reason in answers[role].stderr, answers[role].stderr
    record(
        ITEM,
        "`devmetrics db grant-app-role`: idempotent, takes back hand-made DELETE/TRUNCATE/"
        "UPDATE grants on the audit log, refuses the owner, a superuser, a member of the owner",
        passed=True,
        bad_inputs=len(refusals) + 2,
    )
