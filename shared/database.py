"""The one database handle every service shares, and how a DATABASE_URL becomes a connection.

`db` is a `DatabaseProxy`: models bind to it at import time, and only the app factories,
the CLI and the tests initialize it (`init_db`).
"""

from __future__ import annotations

import heapq
import os
import time
from urllib.parse import urlparse, urlunparse

import peewee
from playhouse.db_url import parseresult_to_dict
from playhouse.pool import PooledPostgresqlDatabase

from shared.sqlite_functions import register_sqlite_functions

db = peewee.DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",  # readers never block the writer
    "busy_timeout": 5000,  # ms to wait for the write lock instead of failing at once
    "foreign_keys": 1,  # ON DELETE CASCADE / SET NULL only work with this on
    "synchronous": "normal",  # durable with WAL, and much faster than FULL
}


class DatabaseConfigError(ValueError):
    """DATABASE_URL cannot be used; the message says why in one line."""


class DatabaseUnavailable(RuntimeError):
    """The database named by DATABASE_URL cannot be reached; one line says why."""


class PostgresPool(PooledPostgresqlDatabase):
    """Connection pool that keeps at least `min_connections` open and is fork-safe.

    gunicorn forks workers after the app is imported; connections inherited from the
    parent must not be shared, so a new process starts with an empty pool.
    """

    def __init__(self, database, min_connections=1, **kwargs):
        self._min_connections = min_connections
        self._owner_pid = os.getpid()
        self._returned_at: dict[int, float] = {}  # conn key -> monotonic time of check-in
        super().__init__(database, **kwargs)

    def _forget_inherited(self):
        if self._owner_pid != os.getpid():
            self._connections, self._in_use, self._returned_at = [], {}, {}
            self._owner_pid = os.getpid()

    # Checking a connection out, peewee pings it (`SELECT 1`): a round trip per request. One
    # returned to the pool less than PING_AFTER_IDLE_SECONDS ago, idle and not known closed,
    # is handed out without it. Should it have died all the same, the request's own query
    # fails (OperationalError -> 503) and, its state now unknown, the connection is closed
    # at check-in rather than pooled again (peewee's `_can_reuse`).
    PING_AFTER_IDLE_SECONDS = 1.0

    def _close(self, conn, close_conn=False):
        with self._pool_lock:
            key = self.conn_key(conn)
            returning = not close_conn and key in self._in_use
            super()._close(conn, close_conn)
            if returning and not conn.closed:  # back in the idle heap
                self._returned_at[key] = time.monotonic()
            else:
                self._returned_at.pop(key, None)

    def _is_closed(self, conn):
        returned_at = self._returned_at.pop(self.conn_key(conn), None)
        if (
            returned_at is not None
            and time.monotonic() - returned_at < self.PING_AFTER_IDLE_SECONDS
            and not conn.closed
            and self._adapter.txn_status(conn) == self._adapter.txn_idle
        ):
            return False
        return super()._is_closed(conn)

    def _connect(self):
        with self._pool_lock:
            self._forget_inherited()
            conn = super()._connect()
            missing = self._min_connections - len(self._connections) - len(self._in_use)
            for _ in range(max(0, missing)):
                # A raw driver connection (bypassing the pool), parked in its idle heap.
                idle = peewee.PostgresqlDatabase._connect(self)
                self._heap_counter += 1
                heapq.heappush(self._connections, (time.time(), self._heap_counter, idle))
            return conn

    @property
    def pool_size(self) -> int:
        return len(self._connections) + len(self._in_use)


def redact_url(url: str) -> str:
    """The URL without its password, safe to print."""
    parsed = urlparse(url)
    if not parsed.password:
        return url
    netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
    return urlunparse(parsed._replace(netloc=netloc))


def backend_of(url: str) -> str:
    scheme = urlparse(url).scheme.lower()
    if scheme in ("postgres", "postgresql"):
        return "postgresql"
    if scheme == "sqlite":
        return "sqlite"
    raise DatabaseConfigError(
        f"DATABASE_URL: unsupported scheme {scheme!r} "
        "(use postgresql://user@host:port/name or sqlite:///path/to/file.db)"
    )


def open_database(url: str, pool_min: int = 1, pool_max: int = 10) -> peewee.Database:
    """A (not yet connected) peewee database for `url`. Query parameters reach the driver."""
    backend = backend_of(url)
    parsed = urlparse(url)
    if backend == "sqlite":
        # sqlite:///relative.db, sqlite:////absolute/path.db, sqlite:// (in memory)
        path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
        kwargs = parseresult_to_dict(parsed)
        kwargs.pop("database", None)
        database = peewee.SqliteDatabase(path or ":memory:", pragmas=SQLITE_PRAGMAS, **kwargs)
        register_sqlite_functions(database)
        return database

    kwargs = parseresult_to_dict(parsed, unquote_password=True, unquote_user=True)
    name = kwargs.pop("database", "")
    if not name:
        raise DatabaseConfigError(
            f"DATABASE_URL {redact_url(url)!r} names no database (add /name after the host)"
        )
    kwargs.setdefault("connect_timeout", 5)
    # A connection whose peer vanished without a reset (a network black hole) must not hang
    # a request thread forever, nor leave a session idle in a transaction holding locks:
    # TCP keepalives notice the dead peer within about a minute, and the server ends a
    # transaction left idle for a minute. Both can be overridden in DATABASE_URL's query.
    kwargs.setdefault("keepalives", 1)
    kwargs.setdefault("keepalives_idle", 30)
    kwargs.setdefault("keepalives_interval", 10)
    kwargs.setdefault("keepalives_count", 3)
    kwargs.setdefault("options", "-c idle_in_transaction_session_timeout=60000")
    return PostgresPool(
        name,
        min_connections=pool_min,
        max_connections=pool_max,
        stale_timeout=300,
        timeout=10,  # seconds to wait for a free pooled connection
        **kwargs,
    )


def init_db(url: str | None = None, pool_min: int | None = None, pool_max: int | None = None):
    """Point the shared `db` proxy at `url` (default: the configured DATABASE_URL)."""
    from shared.config import Settings

    settings = Settings.from_env()
    database = open_database(
        url or settings.database_url,
        settings.database_pool_min if pool_min is None else pool_min,
        settings.database_pool_max if pool_max is None else pool_max,
    )
    db.initialize(database)
    return database


def describe_connection_error(url: str, exc: Exception) -> str:
    backend = backend_of(url)
    detail = " ".join(str(exc).split()) or exc.__class__.__name__
    if backend == "sqlite":
        return f"cannot open SQLite database {redact_url(url)}: {detail}"
    return f"cannot connect to PostgreSQL at {redact_url(url)}: {detail}"


def connect_or_explain(database: peewee.Database, url: str) -> None:
    """Open a connection, turning driver errors into one clear DatabaseUnavailable line."""
    try:
        database.connect(reuse_if_open=True)
    except (peewee.OperationalError, peewee.InterfaceError, peewee.DatabaseError) as exc:
        raise DatabaseUnavailable(describe_connection_error(url, exc)) from exc


def backend_name(database=None) -> str:
    database = database or db.obj
    if isinstance(database, peewee.PostgresqlDatabase):
        return "postgresql"
    if isinstance(database, peewee.SqliteDatabase):
        return "sqlite"
    return type(database).__name__


def server_version(database=None) -> str:
    database = database or db.obj
    if backend_name(database) == "postgresql":
        return database.execute_sql("SHOW server_version").fetchone()[0]
    return "SQLite " + database.execute_sql("SELECT sqlite_version()").fetchone()[0]


def serialized():
    """A transaction for check-then-write: on SQLite an IMMEDIATE one (it takes the single
    write lock at BEGIN, so a concurrent one waits instead of writing on a stale read); on
    PostgreSQL an ordinary one, in which the caller locks the row its check depends on with
    `lock_row`. Nested in a transaction, a savepoint of it."""
    return db.atomic() if backend_name() == "postgresql" else db.atomic("IMMEDIATE")


def lock_row(model, row_id: int) -> bool:
    """Lock one row until the transaction ends (PostgreSQL; SQLite's IMMEDIATE transaction
    already excludes every other writer), so every check-then-write that takes it runs one
    at a time. FOR NO KEY UPDATE: rows referencing it (e.g. an organization's events) still
    insert meanwhile. False when the row does not exist."""
    query = model.select(model.id).where(model.id == row_id)
    if backend_name() == "postgresql":
        query = query.for_update("FOR NO KEY UPDATE")
    return query.first() is not None
