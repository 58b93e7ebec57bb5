"""The webhook intake's physical limit, and a trivial endpoint, as bare WSGI apps (no Flask).

    gunicorn -c gunicorn.conf.py 'bench.limit_app:application'   # the limit
    gunicorn -c gunicorn.conf.py 'bench.limit_app:trivial'       # 204, nothing else

`application` does only what accepting a delivery cannot avoid: read the body, check its
HMAC-SHA256 against the secret (LIMIT_WEBHOOK_SECRET), and insert it into `limit_events`, a
table identical to `events` (same columns, defaults, indexes, foreign keys and monthly
partitions; create_limit_table builds it) with one autocommitted INSERT on a per-thread
connection (LIMIT_DATABASE_URL). No repository lookup, no secret decryption, no JSON parsing
in Python, no dedupe row: what is left is what no implementation can skip.

`trivial` answers 204 without reading anything: the load generator's rate against it shows
that the generator (and gunicorn itself) is not what limits the figures.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import threading

import psycopg2

_local = threading.local()


def _connection():
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = psycopg2.connect(os.environ["LIMIT_DATABASE_URL"])
        conn.autocommit = True
        _local.conn = conn
    return conn


def _answer(start_response, status: str, body: bytes = b""):
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def application(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length)
    scheme, _, digest = environ.get("HTTP_X_HUB_SIGNATURE_256", "").partition("=")
    expected = hmac.new(os.environ["LIMIT_WEBHOOK_SECRET"].encode(), raw, hashlib.sha256)
    if scheme != "sha256" or not hmac.compare_digest(expected.hexdigest(), digest):
        return _answer(start_response, "401 Unauthorized")
    with _connection().cursor() as cur:
        cur.execute(
            "INSERT INTO limit_events (source, hook_id, delivery_id, event_type, payload, "
            "headers, received_at, status, attempts) "
            "VALUES ('github', %s, %s, %s, %s::jsonb, '{}', now() at time zone 'utc', "
            "'PENDING', 0) RETURNING id",
            (
                environ.get("HTTP_X_GITHUB_HOOK_ID", ""),
                environ.get("HTTP_X_GITHUB_DELIVERY", ""),
                environ.get("HTTP_X_GITHUB_EVENT", ""),
                raw.decode("utf-8"),
            ),
        )
        event_id = cur.fetchone()[0]
    return _answer(start_response, "202 Accepted", json.dumps({"id": event_id}).encode())


def trivial(environ, start_response):
    start_response("204 No Content", [])
    return []


def create_limit_table(cursor) -> None:
    """`limit_events`: `events`' columns, defaults, indexes and foreign keys, partitioned the
    same way with a partition beside each of events' (its own id sequence)."""
    cursor.execute(
        "CREATE SEQUENCE limit_events_id_seq;"
        "CREATE TABLE limit_events (LIKE events INCLUDING ALL) PARTITION BY RANGE (received_at);"
        "ALTER TABLE limit_events ALTER COLUMN id SET DEFAULT nextval('limit_events_id_seq');"
        "ALTER TABLE limit_events ADD FOREIGN KEY (organization_id) "
        "  REFERENCES organizations(id) ON DELETE CASCADE;"
        "ALTER TABLE limit_events ADD FOREIGN KEY (repository_id) "
        "  REFERENCES repositories(id) ON DELETE CASCADE;"
    )
    cursor.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass"
    )
    for name, bound in cursor.fetchall():
        cursor.execute(f'CREATE TABLE "limit_{name}" PARTITION OF limit_events {bound}')
