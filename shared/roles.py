"""The application's database role on PostgreSQL: what the services and workers may do.

Production runs two roles: the owner, which runs the migrations and owns every table,
sequence and function, and the application role, which the services and workers connect as.
`grant_app_role` gives the application role what they need and takes away what they must not
have; it is idempotent and runs after every migration (`devmetrics db migrate` with
DATABASE_APP_ROLE or MIGRATION_DATABASE_URL set, or `devmetrics db grant-app-role ROLE`):

- every table: SELECT, INSERT, UPDATE, DELETE (a partition gets what its parent gets);
- audit_logs and its partitions: SELECT and INSERT only, and no role but the owner holds
  more (the retention pass deletes through migration 012's SECURITY DEFINER functions);
- migratehistory: SELECT (readiness checks); sequences: USAGE, SELECT;
- EXECUTE on the functions named devmetrics_* (SECURITY DEFINER, owned by the owner);
- USAGE on the schema, never CREATE: nothing the role creates may stand in the search path
  of the owner's functions;
- default privileges: tables and sequences the owner creates later in the schema are granted
  the same way at once; functions it creates later are not executable by PUBLIC.

The role must not be a superuser, able to create roles, the owner or a member of it, nor own
anything in the schema: each would let it switch the audit log's protection off.
"""

from __future__ import annotations

import peewee as pw

from shared.migrations import MIGRATE_TABLE

WRITE = ("SELECT", "INSERT", "UPDATE", "DELETE")
# Tables (with their partitions) whose rows no role but the owner may change or remove.
APPEND_ONLY = {"audit_logs": ("SELECT", "INSERT")}
READ_ONLY = {MIGRATE_TABLE: ("SELECT",)}
SEQUENCE = ("USAGE", "SELECT")
# The functions the application calls; migration 012 makes them SECURITY DEFINER.
FUNCTION_PREFIX = "devmetrics_"


class RoleError(RuntimeError):
    """The role cannot be (or stay) the application role; the message says why and what to do."""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _allowed(root: str) -> tuple[str, ...]:
    return APPEND_ONLY.get(root) or READ_ONLY.get(root) or WRITE


def grant_app_role(database, role: str) -> list[str]:
    """Make `role` the application role of the migrated `database`; returns what was done, a
    line each. Run as the owner of the tables (or a superuser)."""
    if not isinstance(database, pw.PostgresqlDatabase):
        raise RoleError("database roles need PostgreSQL: on SQLite there is nothing to grant")
    with database.atomic():
        return _grant(database, role)


def _rows(database, sql: str, params=()) -> list[tuple]:
    return database.execute_sql(sql, params).fetchall()


def _owner_and_schema(database) -> tuple[int, str, str]:
    found = _rows(
        database,
        "SELECT c.relowner, pg_get_userbyid(c.relowner), n.nspname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass('audit_logs')",
    )
    if not found:
        raise RoleError("no audit_logs table here: run `devmetrics db migrate` first")
    return found[0]


def _check_role(database, role: str, owner_oid: int, owner: str, schema: str) -> int:
    found = _rows(
        database,
        "SELECT oid, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = %s",
        (role,),
    )
    if not found:
        raise RoleError(
            f"role {role!r} does not exist: create it first "
            f"(CREATE ROLE {_ident(role)} LOGIN PASSWORD '...')"
        )
    role_oid, superuser, createrole = found[0]
    if role_oid == owner_oid:
        raise RoleError(
            f"{role} owns the tables: the application role must be another role "
            "(the owner runs the migrations, the services connect as the application role)"
        )
    if superuser:
        raise RoleError(
            f"{role} is a superuser, which no privilege binds: ALTER ROLE ... NOSUPERUSER"
        )
    if createrole:
        raise RoleError(
            f"{role} may create roles (CREATEROLE), so it could make itself a member of "
            f"{owner}: ALTER ROLE {_ident(role)} NOCREATEROLE"
        )
    if _rows(database, "SELECT pg_has_role(%s, %s, 'MEMBER')", (role_oid, owner_oid))[0][0]:
        raise RoleError(
            f"{role} is a member of {owner} (directly or through another role), so it has the "
            f"owner's rights: REVOKE {_ident(owner)} FROM {_ident(role)}"
        )
    owned = [
        name
        for (name,) in _rows(
            database,
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relowner = %s "
            "UNION ALL SELECT p.proname FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = %s AND p.proowner = %s ORDER BY 1",
            (schema, role_oid, schema, role_oid),
        )
    ]
    if owned:
        more = f" and {len(owned) - 5} more" if len(owned) > 5 else ""
        raise RoleError(
            f"{role} owns {', '.join(owned[:5])}{more} in schema {schema}: "
            f"REASSIGN OWNED BY {_ident(role)} TO {_ident(owner)}"
        )
    return role_oid


def _functions(database, owner_oid: int, schema: str) -> list[str]:
    found = _rows(
        database,
        "SELECT p.oid::regprocedure::text, p.proowner = %s, p.prosecdef FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = %s AND starts_with(p.proname, %s) ORDER BY 1",
        (owner_oid, schema, FUNCTION_PREFIX),
    )
    if not found:
        raise RoleError(
            f"no {FUNCTION_PREFIX}* functions here (migration 012): "
            "run `devmetrics db migrate` first"
        )
    for signature, owned, definer in found:
        if not owned or not definer:
            raise RoleError(
                f"function {signature} must be SECURITY DEFINER and owned by the owner of "
                "audit_logs, else the retention pass cannot delete: run the migrations as "
                "that owner"
            )
    return [signature for signature, _, _ in found]


def _grant(database, role: str) -> list[str]:
    owner_oid, owner, schema = _owner_and_schema(database)
    role_oid = _check_role(database, role, owner_oid, owner, schema)
    functions = _functions(database, owner_oid, schema)
    r, s = _ident(role), _ident(schema)
    lines = [
        f"app role {role}: not a superuser, cannot create roles, not a member of the owner "
        f"{owner}, owns nothing in schema {schema}"
    ]

    def run(sql: str, params=()) -> None:
        database.execute_sql(sql, params)

    def revoked(what: str, on: str, grantee: str) -> None:
        lines.append(f"revoked {what} on {on} from {grantee}")

    # The schema: USAGE, never CREATE (not through PUBLIC either).
    database_name = _rows(database, "SELECT current_database()")[0][0]
    run(f"GRANT CONNECT ON DATABASE {_ident(database_name)} TO {r}")
    run(f"GRANT USAGE ON SCHEMA {s} TO {r}")
    for (grantee,) in _rows(
        database,
        "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
        "ELSE quote_ident(pg_get_userbyid(a.grantee)) END "
        "FROM pg_namespace n, aclexplode(n.nspacl) a "
        "WHERE n.nspname = %s AND a.privilege_type = 'CREATE' AND a.grantee IN (0, %s)",
        (schema, role_oid),
    ):
        run(f"REVOKE CREATE ON SCHEMA {s} FROM {grantee}")
        revoked("CREATE", f"schema {schema}", grantee)
    if _rows(database, "SELECT has_schema_privilege(%s, %s, 'CREATE')", (role_oid, schema))[0][0]:
        raise RoleError(
            f"{role} can still create objects in schema {schema} through a role it belongs to"
        )

    # Tables and partitions, each with what its root table allows.
    tables = _rows(
        database,
        "SELECT c.relname, coalesce(r.relname, c.relname) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_class r ON r.oid = pg_partition_root(c.oid) "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') ORDER BY c.relname",
        (schema,),
    )
    by_privileges: dict[tuple[str, ...], list[str]] = {}
    for name, root in tables:
        by_privileges.setdefault(_allowed(root), []).append(name)
    for privileges, names in by_privileges.items():
        run(
            f"GRANT {', '.join(privileges)} ON TABLE "
            f"{', '.join(f'{s}.{_ident(name)}' for name in names)} TO {r}"
        )
    roots = dict(tables)
    extra: dict[tuple[str, str], list[str]] = {}
    for name, grantee_oid, grantee, privilege in _rows(
        database,
        "SELECT c.relname, a.grantee, CASE WHEN a.grantee = 0 THEN 'PUBLIC' "
        "ELSE quote_ident(pg_get_userbyid(a.grantee)) END, a.privilege_type "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND a.grantee <> c.relowner "
        "ORDER BY 1, 3, 4",
        (schema,),
    ):
        root = roots[name]
        too_much = privilege not in _allowed(root)
        if (grantee_oid == role_oid and too_much) or (root in APPEND_ONLY and too_much):
            extra.setdefault((name, grantee), []).append(privilege)
    for (name, grantee), privileges in extra.items():
        run(f"REVOKE {', '.join(privileges)} ON TABLE {s}.{_ident(name)} FROM {grantee}")
        revoked(", ".join(privileges), name, grantee)
    for name, root in tables:
        if root in APPEND_ONLY:
            for privilege in ("UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"):
                if _rows(
                    database,
                    "SELECT has_table_privilege(%s, %s::regclass, %s)",
                    (role_oid, f"{s}.{_ident(name)}", privilege),
                )[0][0]:
                    raise RoleError(f"{role} still holds {privilege} on {name}")
    for privileges, names in by_privileges.items():
        append_only = [n for n in names if roots[n] in APPEND_ONLY]
        read_only = [n for n in names if roots[n] in READ_ONLY]
        if append_only:
            lines.append(
                f"granted {', '.join(privileges)} on {', '.join(sorted(set(APPEND_ONLY)))} "
                f"and its {len(append_only) - len(APPEND_ONLY)} partition(s) "
                "(never UPDATE, DELETE or TRUNCATE)"
            )
        elif read_only:
            lines.append(f"granted {', '.join(privileges)} on {', '.join(read_only)}")
        else:
            lines.append(f"granted {', '.join(privileges)} on {len(names)} tables and partitions")

    # Sequences (nextval for ids), the owner's functions, and what the owner creates later.
    sequences = _rows(
        database,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'S'",
        (schema,),
    )[0][0]
    run(f"GRANT {', '.join(SEQUENCE)} ON ALL SEQUENCES IN SCHEMA {s} TO {r}")
    run(f"REVOKE UPDATE ON ALL SEQUENCES IN SCHEMA {s} FROM {r}")
    lines.append(f"granted {', '.join(SEQUENCE)} on {sequences} sequences")
    run(f"GRANT EXECUTE ON FUNCTION {', '.join(functions)} TO {r}")
    lines.append(f"granted EXECUTE on {', '.join(functions)}")
    o = _ident(owner)
    run(
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} "
        f"GRANT {', '.join(WRITE)} ON TABLES TO {r}"
    )
    run(
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} "
        f"GRANT {', '.join(SEQUENCE)} ON SEQUENCES TO {r}"
    )
    run(f"ALTER DEFAULT PRIVILEGES FOR ROLE {o} REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC")
    lines.append(
        f"default privileges of {owner} in schema {schema}: {', '.join(WRITE)} on its new "
        f"tables and {', '.join(SEQUENCE)} on its new sequences for {role}; "
        "EXECUTE on its new functions for no one until granted"
    )
    return lines
