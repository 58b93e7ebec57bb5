"""PostgreSQL's functions that the metric queries use and SQLite lacks, registered on every
SQLite connection by shared.database.open_database: `percentile_cont` (an aggregate) and
`epoch`, giving the values PostgreSQL's built-ins give. Imports no module of ours (the
database module needs it before anything else exists)."""

from __future__ import annotations

import datetime as dt
import math

import peewee as pw


class PercentileCont:
    """PostgreSQL's percentile_cont for SQLite: rank = fraction * (n - 1), interpolated."""

    def __init__(self):
        self.values: list[float] = []
        self.fraction = None

    def step(self, value, fraction):
        self.fraction = fraction
        if value is not None:
            self.values.append(float(value))

    def finalize(self):
        return percentile_cont(self.values, self.fraction)


def percentile_cont(values, fraction) -> float | None:
    if not values or fraction is None:
        return None
    ordered = sorted(values)
    rank = float(fraction) * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def sqlite_epoch(value) -> float | None:
    if value is None:
        return None
    parsed = dt.datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def register_sqlite_functions(database: pw.SqliteDatabase) -> None:
    database.register_aggregate(PercentileCont, "percentile_cont", 2)
    database.register_function(sqlite_epoch, "epoch", 1, deterministic=True)
