"""What a column can hold, and which failures say a value never fits (a permanent failure:
the same value fails the same way on every retry, so retrying it only delays giving up).

One rule for both databases. PostgreSQL refuses a value its column cannot hold with a data
exception (SQLSTATE class 22: numeric out of range, string too long, invalid text, datetime
overflow...); SQLite stores any 64-bit integer in any integer column and any text in a
varchar, so the writes of every model (shared/models/base.py) and bulk inserts
(shared/sql.py) check integers and varchar lengths here first, as PostgreSQL would, and the
message names the column (PostgreSQL's own "integer out of range" does not).
"""

from __future__ import annotations

import peewee as pw

# The bits of each integer column type (PostgreSQL's smallint, integer and serial, bigint
# and bigserial); foreign keys take their target's type.
INTEGER_BITS = {"SMALLINT": 16, "INT": 32, "AUTO": 32, "BIGINT": 64, "BIGAUTO": 64}


class Unstorable(pw.DataError):
    """A value its column cannot hold, refused before any SQL (a data exception, as
    PostgreSQL's are peewee DataErrors)."""


def column_of(field: pw.Field) -> str:
    return f"{field.model._meta.table_name}.{field.column_name}"


def check_storable(field: pw.Field, value) -> None:
    """Raise Unstorable when `field`'s column cannot hold `value` (expressions pass)."""
    if value is None or isinstance(value, pw.Node):
        return
    if isinstance(value, int):
        bits = INTEGER_BITS.get(field.field_type)
        if bits and not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
            raise Unstorable(f"value out of range for {column_of(field)}: {value}")
    elif isinstance(value, str) and field.field_type == "VARCHAR":
        limit = field.max_length
        if limit and len(value) > limit:
            raise Unstorable(
                f"value too long for {column_of(field)}: {len(value)} characters, at most {limit}"
            )


def check_row(model: type[pw.Model], row) -> None:
    """Each value of one row to insert or update (a dict by field or field name)."""
    if not isinstance(row, dict):
        return  # a query, or positional values: checked by whoever has their fields
    fields = model._meta.combined
    for key, value in row.items():
        field = key if isinstance(key, pw.Field) else fields.get(key)
        if field is not None:
            check_storable(field, value)


def unstorable_reason(exc: BaseException) -> str | None:
    """Why `exc` says a value can never be stored, or None when it may pass on a retry (a
    lost connection, a deadlock or serialization failure, a lock timeout, a bug fixed by
    the next deploy: anything else)."""
    cause = exc  # the driver's own error, which peewee wraps (once or more) as `orig`
    while isinstance(getattr(cause, "orig", None), BaseException):
        cause = cause.orig
    if isinstance(cause, Unstorable):  # (itself, or wrapped by peewee as a DataError)
        return str(cause)
    # PostgreSQL's data exceptions.
    code = getattr(cause, "pgcode", None) or ""
    if code.startswith("22"):
        diag = getattr(cause, "diag", None)
        message = (getattr(diag, "message_primary", None) or str(cause)).strip()
        column = getattr(diag, "column_name", None)
        table = getattr(diag, "table_name", None)
        where = f" ({table}.{column})" if table and column else ""
        return f"{message}{where} [SQLSTATE {code}]"
    # The driver refusing a value before the database sees it: sqlite3 cannot bind an
    # integer past 64 bits ("Python int too large to convert to SQLite INTEGER"), nor a
    # string or blob past its limit (a DataError).
    if isinstance(exc, OverflowError | pw.DataError) or isinstance(cause, OverflowError):
        return f"value out of range: {cause}"
    return None
