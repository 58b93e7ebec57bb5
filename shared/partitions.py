"""Monthly range partitions of the event table and the audit log (PostgreSQL only).

`events` is partitioned on received_at and `audit_logs` on created_at, one partition per
calendar month (`events_2026_11`) plus a default partition that catches rows outside every
month created so far. On SQLite both stay plain tables and every function here is a no-op.

Attaching and dropping partitions needs the owner of the tables, which the application role
is not (`devmetrics db grant-app-role`): on a migrated database both go through SECURITY
DEFINER functions of migration 012, so the retention worker creates and drops partitions
as the application role.
"""

from __future__ import annotations

import datetime as dt
import re

import peewee as pw

from shared.database import db

# table -> partition key column
PARTITIONED = {"events": "received_at", "audit_logs": "created_at"}

_MONTHLY = re.compile(r"^(?P<table>[a-z_]+)_(?P<year>\d{4})_(?P<month>\d{2})$")


def _database(database=None):
    return database or db.obj


def _postgres(database) -> bool:
    return isinstance(database, pw.PostgresqlDatabase)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _month_start(value: dt.date | dt.datetime) -> dt.date:
    return dt.date(value.year, value.month, 1)


def _next_month(month: dt.date) -> dt.date:
    return dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _check_table(table: str) -> str:
    if table not in PARTITIONED:
        raise ValueError(f"{table!r} is not a partitioned table ({', '.join(PARTITIONED)})")
    return PARTITIONED[table]


def partition_name(table: str, month: dt.date) -> str:
    return f"{table}_{month.year:04d}_{month.month:02d}"


def default_partition(table: str) -> str:
    return f"{table}_default"


def partitions(table: str, database=None) -> list[str]:
    """The partitions `table` has now (monthly ones in month order, then the default)."""
    database = _database(database)
    _check_table(table)
    if not _postgres(database):
        return []
    rows = database.execute_sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = %s::regclass ORDER BY c.relname",
        (_quote(table),),
    ).fetchall()
    return [r[0] for r in rows]


def _is_partitioned(table: str, database) -> bool:
    row = database.execute_sql(
        "SELECT c.relkind FROM pg_class c WHERE c.oid = to_regclass(%s)", (_quote(table),)
    ).fetchone()
    return row is not None and row[0] == "p"


def partition_of(table: str, ts: dt.datetime, database=None) -> str:
    """The partition a row of `table` with key `ts` is stored in (the table itself on SQLite)."""
    database = _database(database)
    _check_table(table)
    if not _postgres(database) or not _is_partitioned(table, database):
        return table
    name = partition_name(table, _month_start(ts))
    return name if name in partitions(table, database) else default_partition(table)


def _copy_statement_triggers(table: str, partition: str, database) -> None:
    """Row triggers are cloned to partitions by PostgreSQL; statement triggers (the audit
    log's TRUNCATE refusal) are not, so each partition gets its own copy."""
    rows = database.execute_sql(
        "SELECT pg_get_triggerdef(oid) FROM pg_trigger "
        "WHERE tgrelid = %s::regclass AND NOT tgisinternal AND (tgtype & 1) = 0",
        (_quote(table),),
    ).fetchall()
    for (definition,) in rows:
        definition = re.sub(r" ON \S+ FOR EACH ", f" ON {_quote(partition)} FOR EACH ", definition)
        database.execute_sql(definition)


def create_partition(table: str, month: dt.date, database=None) -> str | None:
    """Create `table`'s partition for `month`; rows of that month waiting in the default
    partition move into it. Returns its name, or None when it already exists (or the month
    is before 1970 or over a year ahead: its rows stay in the default partition).

    Through `devmetrics_create_partition` (migration 012), which runs as the tables' owner:
    the application role cannot attach partitions itself, nor move audit rows."""
    database = _database(database)
    _check_table(table)
    return database.execute_sql(
        "SELECT devmetrics_create_partition(%s, %s)", (table, _month_start(month))
    ).fetchone()[0]


def _add_empty_partition(table: str, month: dt.date, database) -> None:
    """During the conversion (migration 009, run by the owner, before the functions of
    migration 012 exist): `table`'s partition for `month`, while the default one is empty."""
    month = _month_start(month)
    name = partition_name(table, month)
    if name in partitions(table, database):
        return
    database.execute_sql(
        f"CREATE TABLE {_quote(name)} (LIKE {_quote(table)} INCLUDING DEFAULTS "
        "INCLUDING CONSTRAINTS)"
    )
    database.execute_sql(
        f"ALTER TABLE {_quote(table)} ATTACH PARTITION {_quote(name)} FOR VALUES FROM (%s) TO (%s)",
        (month.isoformat(), _next_month(month).isoformat()),
    )
    _copy_statement_triggers(table, name, database)


def _create_default_partition(table: str, database) -> None:
    name = default_partition(table)
    database.execute_sql(f"CREATE TABLE {_quote(name)} PARTITION OF {_quote(table)} DEFAULT")
    _copy_statement_triggers(table, name, database)


def ensure_partitions(months_ahead: int = 3, database=None, today: dt.date | None = None):
    """Create the partitions of this month and `months_ahead` coming ones, and of every month
    that has rows waiting in a default partition. Returns the names created."""
    database = _database(database)
    if not _postgres(database):
        return []
    today = today or dt.datetime.now(dt.UTC).date()
    created = []
    for table, key in PARTITIONED.items():
        if not _is_partitioned(table, database):
            continue
        months = set()
        month = _month_start(today)
        for _ in range(months_ahead + 1):
            months.add(month)
            month = _next_month(month)
        if default_partition(table) in partitions(table, database):
            rows = database.execute_sql(
                f"SELECT DISTINCT date_trunc('month', {key})::date "
                f"FROM {_quote(default_partition(table))}"
            ).fetchall()
            months.update(r[0] for r in rows)
        for month in sorted(months):
            name = create_partition(table, month, database)
            if name:
                created.append(name)
    return created


def expired_partitions(table: str, before: dt.date, database=None) -> list[str]:
    """`table`'s monthly partitions whose every row is older than `before`, oldest first."""
    database = _database(database)
    _check_table(table)
    if not _postgres(database):
        return []
    expired = []
    for name in partitions(table, database):
        match = _MONTHLY.match(name)
        if match and match["table"] == table:
            month = dt.date(int(match["year"]), int(match["month"]), 1)
            if _next_month(month) <= before:
                expired.append(name)
    return expired


def drop_partition(name: str, database=None) -> dict[int | None, int]:
    """Detach and drop one monthly partition; returns the rows it held per organization id.

    Through `devmetrics_drop_partition` (migration 012), which runs as the tables' owner and
    refuses an audit_logs partition whose month ended less than 365 days ago."""
    database = _database(database)
    match = _MONTHLY.match(name)
    if not match or match["table"] not in PARTITIONED:
        raise ValueError(f"{name!r} is not a monthly partition")
    table = match["table"]
    if name not in partitions(table, database):
        raise ValueError(f"{name!r} is not a partition of {table}")
    rows = database.execute_sql(
        "SELECT org_id, row_count FROM devmetrics_drop_partition(%s)", (name,)
    ).fetchall()
    return {org_id: count for org_id, count in rows}


# --- conversion (migration 009) -------------------------------------------------------------


def _definitions(table: str, database):
    """Indexes (but the primary key), foreign keys, own triggers and serial sequences."""
    indexes = [
        r[0]
        for r in database.execute_sql(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indrelid = %s::regclass AND NOT indisprimary",
            (_quote(table),),
        ).fetchall()
    ]
    foreign_keys = database.execute_sql(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE contype = 'f' AND conrelid = %s::regclass",
        (_quote(table),),
    ).fetchall()
    triggers = [
        r[0]
        for r in database.execute_sql(
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger "
            "WHERE tgrelid = %s::regclass AND NOT tgisinternal AND tgparentid = 0",
            (_quote(table),),
        ).fetchall()
    ]
    sequences = database.execute_sql(
        "SELECT a.attname, pg_get_serial_sequence(%s, a.attname) FROM pg_attribute a "
        "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
        "AND pg_get_serial_sequence(%s, a.attname) IS NOT NULL",
        (_quote(table), _quote(table), _quote(table)),
    ).fetchall()
    return indexes, foreign_keys, triggers, sequences


def _own_sequences(table, definitions, database) -> None:
    # Dropping the old table must not drop the id sequence with it.
    for column, sequence in definitions[3]:
        database.execute_sql(f"ALTER SEQUENCE {sequence} OWNED BY {_quote(table)}.{column}")


def partition_table(table: str, database) -> None:
    """Rebuild plain `table` as a monthly partitioned one, keeping every row, index, foreign
    key, trigger and the id sequence; partitions for the months holding rows + 3 ahead."""
    key = _check_table(table)
    old = f"{table}_unpartitioned"
    definitions = _definitions(table, database)
    database.execute_sql(f"ALTER TABLE {_quote(table)} RENAME TO {_quote(old)}")
    for i, (index,) in enumerate(
        database.execute_sql(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = %s::regclass",
            (_quote(old),),
        ).fetchall()
    ):
        database.execute_sql(f"ALTER INDEX {_quote(index)} RENAME TO {_quote(f'{old}_{i}')}")
    database.execute_sql(
        f"CREATE TABLE {_quote(table)} (LIKE {_quote(old)} INCLUDING DEFAULTS "
        f"INCLUDING CONSTRAINTS, PRIMARY KEY (id, {key})) PARTITION BY RANGE ({key})"
    )
    _convert_finish(table, definitions, database)
    _create_default_partition(table, database)
    months = database.execute_sql(
        f"SELECT DISTINCT date_trunc('month', {key})::date FROM {_quote(old)}"
    ).fetchall()
    today = dt.datetime.now(dt.UTC).date()
    for (month,) in sorted(months):
        _add_empty_partition(table, month, database)
    month = _month_start(today)
    for _ in range(4):
        _add_empty_partition(table, month, database)
        month = _next_month(month)
    database.execute_sql(f"INSERT INTO {_quote(table)} SELECT * FROM {_quote(old)}")
    _own_sequences(table, definitions, database)
    database.execute_sql(f"DROP TABLE {_quote(old)}")


def _convert_finish(table, definitions, database) -> None:
    """Indexes, foreign keys and triggers recreated on the rebuilt table."""
    indexes, foreign_keys, triggers, _sequences = definitions
    for index in indexes:
        database.execute_sql(index)
    for name, definition in foreign_keys:
        database.execute_sql(
            f"ALTER TABLE {_quote(table)} ADD CONSTRAINT {_quote(name)} {definition}"
        )
    for trigger in triggers:
        database.execute_sql(trigger)


def unpartition_table(table: str, database) -> None:
    """The rollback of `partition_table`: one plain table again, every row kept."""
    _check_table(table)
    plain = f"{table}_plain"
    definitions = _definitions(table, database)
    database.execute_sql(
        f"CREATE TABLE {_quote(plain)} (LIKE {_quote(table)} INCLUDING DEFAULTS "
        "INCLUDING CONSTRAINTS)"
    )
    database.execute_sql(f"INSERT INTO {_quote(plain)} SELECT * FROM {_quote(table)}")
    _own_sequences(plain, definitions, database)
    database.execute_sql(f"DROP TABLE {_quote(table)}")
    database.execute_sql(f"ALTER TABLE {_quote(plain)} RENAME TO {_quote(table)}")
    database.execute_sql(f"ALTER TABLE {_quote(table)} ADD PRIMARY KEY (id)")
    _convert_finish(table, definitions, database)
