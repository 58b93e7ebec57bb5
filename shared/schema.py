"""What the schema is: as the models declare it, and as a live database has it.

Both sides are reduced to the same plain description, so `devmetrics db verify` and the
tests can compare them and name every difference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import peewee as pw

from shared.database import backend_name

# Tables that belong to tooling, not to the models.
IGNORED_TABLES = {"migratehistory", "sqlite_sequence"}

_PG_ON_DELETE = {
    "a": "NO ACTION",
    "r": "RESTRICT",
    "c": "CASCADE",
    "n": "SET NULL",
    "d": "SET DEFAULT",
}


@dataclass(frozen=True)
class Column:
    type: str
    nullable: bool


@dataclass(frozen=True)
class Index:
    columns: tuple[str, ...]
    unique: bool

    def __str__(self):
        kind = "unique index" if self.unique else "index"
        return f"{kind} ({', '.join(self.columns)})"


@dataclass(frozen=True)
class ForeignKey:
    column: str
    ref_table: str
    ref_column: str
    on_delete: str

    def __str__(self):
        return (
            f"foreign key {self.column} -> {self.ref_table}.{self.ref_column} "
            f"ON DELETE {self.on_delete}"
        )


@dataclass
class Table:
    columns: dict[str, Column] = field(default_factory=dict)
    indexes: set[Index] = field(default_factory=set)
    foreign_keys: set[ForeignKey] = field(default_factory=set)
    # Only a live database reports these (peewee defaults are applied in Python, not DDL).
    defaults: dict[str, str | None] | None = None
    checks: set[str] | None = None


def _normalize_type(ddl: str, backend: str) -> str:
    """One spelling per type: PostgreSQL's format_type() names; SQLite's declared type."""
    t = " ".join(ddl.strip().split()).lower()
    if backend == "sqlite":
        return t
    t = re.sub(r"\s*\(\s*", "(", re.sub(r"\s*,\s*", ",", t)).replace(" )", ")")
    aliases = {
        "serial": "integer",
        "bigserial": "bigint",
        "smallserial": "smallint",
        "int": "integer",
        "int4": "integer",
        "int8": "bigint",
        "int2": "smallint",
        "bool": "boolean",
        "timestamp": "timestamp without time zone",
        "timestamptz": "timestamp with time zone",
        "float8": "double precision",
        "float4": "real",
    }
    if t.startswith("varchar"):
        return "character varying" + t[len("varchar") :]
    if t.startswith("decimal"):
        return "numeric" + t[len("decimal") :]
    return aliases.get(t, t)


def describe_models(models, database) -> dict[str, Table]:
    """The schema `models` declare, as `database`'s backend would create it."""
    backend = backend_name(database)
    ctx = database.get_sql_context()
    tables: dict[str, Table] = {}
    for model in models:
        table = Table()
        for f in model._meta.sorted_fields:
            ddl = database.get_sql_context().sql(f.ddl_datatype(ctx)).query()[0]
            table.columns[f.column_name] = Column(_normalize_type(ddl, backend), f.null)
            if isinstance(f, pw.ForeignKeyField):
                table.foreign_keys.add(
                    ForeignKey(
                        f.column_name,
                        f.rel_model._meta.table_name,
                        f.rel_field.column_name,
                        (f.on_delete or "NO ACTION").upper(),
                    )
                )
        for idx in model._meta.fields_to_index():
            cols = tuple(e.column_name for e in idx._expressions)
            table.indexes.add(Index(cols, bool(idx._unique)))
        tables[model._meta.table_name] = table
    return tables


def describe_database(database) -> dict[str, Table]:
    """The schema a live database has (primary-key indexes and tooling tables left out)."""
    backend = backend_name(database)
    names = [t for t in database.get_tables() if t not in IGNORED_TABLES]
    if backend == "postgresql":
        # A partitioned table (shared/partitions.py) is described by its parent alone.
        partitions = {
            r[0]
            for r in database.execute_sql(
                "SELECT relname FROM pg_class WHERE relispartition "
                "AND relnamespace = current_schema()::regnamespace"
            ).fetchall()
        }
        names = [t for t in names if t not in partitions]
        return {t: _describe_pg_table(database, t) for t in names}
    return {t: _describe_sqlite_table(database, t) for t in names}


def _describe_pg_table(database, name: str) -> Table:
    table = Table()
    rows = database.execute_sql(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        (_quote(name),),
    ).fetchall()
    table.defaults = {}
    for col, typ, nullable, default in rows:
        table.columns[col] = Column(_normalize_type(typ, "postgresql"), nullable)
        table.defaults[col] = default
    rows = database.execute_sql(
        """
        SELECT i.indisunique,
               array(SELECT a.attname
                     FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                     ORDER BY k.ord)
        FROM pg_index i
        WHERE i.indrelid = %s::regclass AND NOT i.indisprimary
        """,
        (_quote(name),),
    ).fetchall()
    table.indexes = {Index(tuple(cols), unique) for unique, cols in rows}
    rows = database.execute_sql(
        """
        SELECT a.attname, rt.relname, ra.attname, c.confdeltype
        FROM pg_constraint c
        JOIN pg_class rt ON rt.oid = c.confrelid
        JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
        JOIN pg_attribute ra ON ra.attrelid = c.confrelid AND ra.attnum = c.confkey[1]
        WHERE c.contype = 'f' AND c.conrelid = %s::regclass
        """,
        (_quote(name),),
    ).fetchall()
    table.foreign_keys = {ForeignKey(c, rt, rc, _PG_ON_DELETE[d]) for c, rt, rc, d in rows}
    rows = database.execute_sql(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE contype = 'c' AND conrelid = %s::regclass",
        (_quote(name),),
    ).fetchall()
    table.checks = {r[0] for r in rows}
    return table


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _describe_sqlite_table(database, name: str) -> Table:
    table = Table()
    quoted = _quote(name)
    table.defaults = {}
    for _cid, col, typ, notnull, default, pk in database.execute_sql(
        f"PRAGMA table_info({quoted})"
    ).fetchall():
        # SQLite lets a primary key column be NULL-able in its catalog; it never is.
        table.columns[col] = Column(_normalize_type(typ, "sqlite"), not notnull and not pk)
        table.defaults[col] = default
    ddl = database.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()[0]
    table.checks = set(re.findall(r"CHECK\s*\((?:[^()]|\([^()]*\))*\)", ddl, flags=re.I))
    for _seq, idx_name, unique, origin, _partial in database.execute_sql(
        f"PRAGMA index_list({quoted})"
    ).fetchall():
        if origin == "pk":
            continue
        cols = tuple(
            r[2] for r in database.execute_sql(f"PRAGMA index_info({_quote(idx_name)})").fetchall()
        )
        table.indexes.add(Index(cols, bool(unique)))
    for row in database.execute_sql(f"PRAGMA foreign_key_list({quoted})").fetchall():
        _id, _seq, ref_table, col, ref_col, _on_update, on_delete, _match = row
        table.foreign_keys.add(ForeignKey(col, ref_table, ref_col, on_delete.upper()))
    return table


def diff_schemas(expected: dict[str, Table], actual: dict[str, Table]) -> list[str]:
    """Every difference between two descriptions, one readable line each."""
    problems: list[str] = []
    for name in sorted(expected.keys() - actual.keys()):
        problems.append(f"missing table {name}")
    for name in sorted(actual.keys() - expected.keys()):
        problems.append(f"extra table {name} (not declared by any model)")
    for name in sorted(expected.keys() & actual.keys()):
        exp, act = expected[name], actual[name]
        for col in exp.columns.keys() - act.columns.keys():
            problems.append(f"{name}: missing column {col}")
        for col in act.columns.keys() - exp.columns.keys():
            problems.append(f"{name}: extra column {col} (not declared by the model)")
        for col in sorted(exp.columns.keys() & act.columns.keys()):
            e, a = exp.columns[col], act.columns[col]
            if e.type != a.type:
                problems.append(f"{name}.{col}: type is {a.type}, models declare {e.type}")
            if e.nullable != a.nullable:
                problems.append(
                    f"{name}.{col}: is {'NULL' if a.nullable else 'NOT NULL'}, "
                    f"models declare {'NULL' if e.nullable else 'NOT NULL'}"
                )
        for idx in sorted(exp.indexes - act.indexes, key=str):
            problems.append(f"{name}: missing {idx}")
        for idx in sorted(act.indexes - exp.indexes, key=str):
            problems.append(f"{name}: extra {idx} (not declared by the model)")
        for fk in sorted(exp.foreign_keys - act.foreign_keys, key=str):
            problems.append(f"{name}: missing {fk}")
        for fk in sorted(act.foreign_keys - exp.foreign_keys, key=str):
            problems.append(f"{name}: extra {fk} (not declared by the model)")
        if exp.defaults is not None and act.defaults is not None:
            for col in sorted(exp.defaults.keys() & act.defaults.keys()):
                if exp.defaults[col] != act.defaults[col]:
                    problems.append(
                        f"{name}.{col}: default is {act.defaults[col]!r}, "
                        f"expected {exp.defaults[col]!r}"
                    )
        if exp.checks is not None and act.checks is not None and exp.checks != act.checks:
            problems.append(
                f"{name}: check constraints are {sorted(act.checks)}, expected {sorted(exp.checks)}"
            )
    return sorted(problems)


def verify(models, database) -> list[str]:
    """Schema drift: every way the live database differs from what `models` declare."""
    return diff_schemas(describe_models(models, database), describe_database(database))


def index_count(database) -> int:
    return sum(len(t.indexes) for t in describe_database(database).values())
