"""SQL expressions that differ between PostgreSQL and SQLite, so that metric queries stay
set-based on both: percentiles, epoch seconds, calendar days, null-safe comparison.

On SQLite the missing functions (`percentile_cont`, `epoch`) are registered on every
connection (shared/sqlite_functions.py, by shared.database.open_database); they give the
values PostgreSQL's built-ins give.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import weakref
from contextlib import contextmanager
from decimal import Decimal

import peewee as pw
import psycopg2.extras

from shared.database import db
from shared.storable import INTEGER_BITS, check_storable


def is_postgres() -> bool:
    return isinstance(db.obj, pw.PostgresqlDatabase)


def percentile(expr, fraction: float):
    """percentile_cont(fraction): linear interpolation between the nearest ranks, NULLs
    left out (PostgreSQL's ordered-set aggregate; a registered aggregate on SQLite)."""
    if is_postgres():
        return pw.NodeList(
            (
                pw.fn.percentile_cont(fraction),
                pw.SQL("WITHIN GROUP (ORDER BY"),
                expr,
                pw.SQL(")"),
            )
        )
    return pw.fn.percentile_cont(expr, fraction)


def epoch(expr):
    """Seconds since 1970 of a stored (naive UTC) timestamp, as a float."""
    if is_postgres():
        return pw.fn.EXTRACT(pw.NodeList((pw.SQL("EPOCH FROM"), expr)))
    return pw.fn.epoch(expr).coerce(False)


def seconds_between(later, earlier):
    """`later - earlier` in seconds; NULL when either is NULL or the span is negative."""
    span = epoch(later) - epoch(earlier)
    return pw.Case(None, [(span >= 0, span)], None)


def day_of(expr):
    """The UTC calendar day of a stored timestamp."""
    if is_postgres():
        return pw.Cast(expr, "date")
    return pw.fn.date(expr).coerce(False)  # text, not parsed as the column's datetime


def least(a, b):
    """The smaller of two values, NULLs left out (NULL only when both are)."""
    if is_postgres():
        return pw.fn.LEAST(a, b)
    # SQLite's two-argument MIN() is NULL when either is.
    return pw.fn.COALESCE(pw.Case(None, [(b < a, b)], a), b)


def distinct_from(a, b):
    """Null-safe inequality (`IS DISTINCT FROM`)."""
    return pw.Expression(a, "IS DISTINCT FROM" if is_postgres() else "IS NOT", b)


def raw_rows(query):
    """Run `query` and iterate its rows as the driver gives them: no per-column conversion
    by peewee and no row cache, for the big GROUP BYs read once (callers convert what they
    need: as_date for days, which are text on SQLite)."""
    return query.model._meta.database.execute(query)


class PreparedStatement:
    """A statement PostgreSQL parses and plans once per connection (PREPARE), then runs with
    new parameters (EXECUTE): for a hot statement whose planning costs more than its run
    (the webhook store's CTE: about a sixth of each delivery's time). `sql` uses pyformat
    parameters (`%(name)s`), as db.execute_sql does; every parameter is required."""

    def __init__(self, name: str, sql: str):
        self.name = name
        self.parameters = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", sql)))
        positional = sql
        for number, parameter in enumerate(self.parameters, 1):
            positional = positional.replace(f"%({parameter})s", f"${number}")
        self.prepare = f"PREPARE {name} AS {positional}"
        self.execute_sql = (
            f"EXECUTE {name}("
            + ", ".join(f"%({parameter})s" for parameter in self.parameters)
            + ")"
        )
        # The driver connections it is prepared on (a reconnected pool slot is a new one).
        self._prepared_on: weakref.WeakSet = weakref.WeakSet()

    def execute(self, params: dict):
        """A cursor over the statement's rows, on the database's current connection."""
        connection = db.connection()
        if connection not in self._prepared_on:
            db.execute_sql(self.prepare)
            self._prepared_on.add(connection)
        return db.execute_sql(self.execute_sql, {name: params[name] for name in self.parameters})


def as_date(value) -> dt.date | None:
    """A day as a query returns it (a date on PostgreSQL, text on SQLite)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def json_array_contains(field, value: str):
    """The JSON array in `field` has `value` as an element."""
    if is_postgres():
        # The JSON field's own converter serializes the one-element list.
        return pw.Expression(field, "@>", pw.Value([value], unpack=False))
    return pw.NodeList(
        (
            pw.SQL("EXISTS (SELECT 1 FROM json_each("),
            field,
            pw.SQL(") WHERE json_each.value ="),
            pw.Value(value),
            pw.SQL(")"),
        )
    )


def advisory_lock(namespace: str, key: int) -> None:
    """Serialize writers of one key until the transaction ends (PostgreSQL; SQLite
    transactions that write are serialized already)."""
    advisory_locks(namespace, [key], exclusive=True)


def advisory_locks(namespace: str, keys, *, exclusive: bool) -> None:
    """Until the transaction ends, PostgreSQL advisory locks on `keys` (integers, or strings
    hashed) of `namespace`, exclusive or shared, taken in ascending order in one statement,
    so that every holder of several takes them in the same order (no cycle among them).
    SQLite transactions that write are serialized already."""
    keys = sorted({key for key in keys if key is not None})
    if not keys or not is_postgres():
        return
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    key, array = ("k", "%s::int[]") if isinstance(keys[0], int) else ("hashtext(k)", "%s::text[]")
    db.execute_sql(
        f"SELECT {function}(hashtext(%s), {key}) "
        f"FROM (SELECT unnest({array}) AS k ORDER BY 1) AS keys",
        (namespace, keys),
    )


def lock_repositories(repository_ids, *, exclusive: bool) -> None:
    """Until the transaction ends, order the writers of the repositories' activity rows.

    The events worker (and the backfill) take them shared, the metrics recompute exclusive,
    before either writes a pull request: both update the same pull_requests rows, each in
    its own order (events in event order, the recompute in scan order), which deadlocked.
    Now a recompute waits for the batches of its repositories in flight and they wait for
    it, while batches never wait for one another here. Everyone takes them in the same
    order, and before any row lock, so this adds no cycle."""
    advisory_locks(
        "repository", [int(i) for i in repository_ids if i is not None], exclusive=exclusive
    )


def without_jit() -> None:
    """Until the transaction ends, no JIT compilation (PostgreSQL). The metric queries are
    many short correlated lookups whose estimated cost looks large: compiling each took
    longer (0.2-0.7 s) than running it."""
    if is_postgres():
        db.execute_sql("SET LOCAL jit = off")


@contextmanager
def without_bitmap_scans():
    """No bitmap scans for the statements of the block (PostgreSQL; the setting is restored
    after it). For per-row lookups of the first or last row along an index: without fresh
    statistics (a table just written) the planner may estimate a handful of matches and reads
    them all through a bitmap, then takes their minimum, instead of stopping at the first."""
    if not is_postgres():
        yield
        return
    (previous,) = db.execute_sql("SELECT current_setting('enable_bitmapscan')").fetchone()
    db.execute_sql("SET LOCAL enable_bitmapscan = off")
    yield
    # Not after an exception: the transaction (or savepoint) is rolled back, and the
    # setting with it.
    db.execute_sql("SELECT set_config('enable_bitmapscan', %s, true)", (previous,))


def insert_rows(
    model, rows: list[dict], *, ignore: bool = False, conflict_target=(), preserve=()
) -> None:
    """Insert many rows (dicts by field name) in few statements. Every row gets the columns
    any row has: a value it lacks is the field's default, else NULL. `ignore`: rows that
    conflict are left out; `preserve`: on a conflict over `conflict_target`, those columns
    take the new row's values. On PostgreSQL with psycopg2's execute_values: peewee takes
    longer building a big INSERT than the server takes to run it."""
    if not rows:
        return
    meta = model._meta
    names = list(dict.fromkeys(name for row in rows for name in row))
    fields = [meta.fields[name] for name in names]
    fields += [field for field in meta.defaults if field.name not in names]

    def value(row: dict, field: pw.Field):
        if field.name in row:
            return row[field.name]
        return field.default() if callable(field.default) else field.default

    full = [[value(row, field) for field in fields] for row in rows]
    _check_storable(fields, full)
    if not is_postgres():
        for chunk in pw.chunked(full, 500):
            query = model.insert_many(chunk, fields=fields)
            if ignore:
                query = query.on_conflict_ignore()
            elif preserve:
                query = query.on_conflict(
                    conflict_target=list(conflict_target), preserve=list(preserve)
                )
            query.execute()
        return
    sql = f'INSERT INTO "{meta.table_name}" ({", ".join(_quoted(fields))}) VALUES %s'
    if ignore:
        sql += " ON CONFLICT DO NOTHING"
    elif preserve:
        update = ", ".join(f"{c} = EXCLUDED.{c}" for c in _quoted(preserve))
        sql += f" ON CONFLICT ({', '.join(_quoted(conflict_target))}) DO UPDATE SET {update}"
    values = [
        tuple(None if v is None else f.db_value(v) for f, v in zip(fields, row, strict=True))
        for row in full
    ]
    # As peewee's own statements do: the driver's DB-API errors (IntegrityError, ...) raised
    # as peewee's.
    with db.cursor() as cursor, pw.__exception_wrapper__:
        if not (ignore or preserve):
            text = _copy_text(values)
            if text is not None:
                columns = ", ".join(_quoted(fields))
                cursor.copy_expert(f'COPY "{meta.table_name}" ({columns}) FROM STDIN', text)
                return
        psycopg2.extras.execute_values(cursor, sql, values, page_size=500)


def _check_storable(fields: list[pw.Field], rows: list[list]) -> None:
    """Every value of the columns whose type limits it (integers, varchars) fits its column
    (shared/storable.py; PostgreSQL checks too, but neither names the column, and SQLite
    stores what PostgreSQL refuses)."""
    limited = [
        (n, field)
        for n, field in enumerate(fields)
        if field.field_type in INTEGER_BITS or field.field_type == "VARCHAR"
    ]
    for row in rows:
        for n, field in limited:
            check_storable(field, row[n])


# COPY's text format: these four characters are written as escapes inside a value.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(rows: list[tuple]) -> io.StringIO | None:
    """The rows in COPY's text format (about twice as fast as execute_values for the daily
    tables' tens of thousands of rows), or None when a value has a type this does not
    format (a JSON adapter, say): execute_values takes those."""
    out = io.StringIO()
    for row in rows:
        fields = []
        for value in row:
            kind = type(value)
            if value is None:
                fields.append("\\N")
            elif kind is bool:
                fields.append("t" if value else "f")
            elif kind is int or kind is Decimal:
                fields.append(str(value))
            elif kind is float:
                fields.append(repr(value))  # the shortest text that reads back as this double
            elif kind is str:
                fields.append(value.translate(_COPY_ESCAPES))
            elif kind is dt.date or (kind is dt.datetime and value.tzinfo is None):
                fields.append(value.isoformat())
            else:
                return None
        out.write("\t".join(fields))
        out.write("\n")
    out.seek(0)
    return out


def _quoted(fields) -> list[str]:
    return [f'"{field.column_name}"' for field in fields]
