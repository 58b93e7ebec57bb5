"""CSV export of any list the metrics API returns: `?format=csv` or `Accept: text/csv`.

Rows are the dicts the JSON response would carry (a schema's dump), so both formats show
the same values. Nested dicts become dotted columns (`user.login`).

An export is decided before its first byte: it spends one of the caller's exports
(`RATE_LIMIT_EXPORTS`, per API key or session: 429 with Retry-After past it), takes one of
the process's few export slots (one per organization: 429, or 503 when all are taken, with
Retry-After), and one of more than MAX_ROWS rows is a 422 naming the limit and the
parameters that narrow it. Then it is streamed: rows are read by the caller's iterable (a
chunk of keys, or of database rows, at a time), dumped and written CHUNK_ROWS at a time, so
neither the result nor the text is ever whole in memory, and paced (as long idle as busy) so
that an export takes at most half of its worker's CPU. The database connection stays
checked out while the stream runs and goes back to the pool when it ends or the client goes
away (the request's teardown runs then).
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sized

import marshmallow as ma
from flask import Response, g, request, stream_with_context

from shared.errors import Invalid
from shared.spreadsheet import cell  # the one rule of CSV cells (Studio too)
from shared.web.limits import count_export, take_export_slot

CONTENT_TYPE = "text/csv; charset=utf-8"
UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")
MAX_ROWS = 50_000  # rows of one export; a larger one is a 422 (narrow the range)
CHUNK_ROWS = 100  # rows dumped and written together


def wants_csv() -> bool:
    """True for `?format=csv`, or an Accept header preferring text/csv over JSON."""
    if request.args.get("format", "").lower() == "csv":
        return True
    best = request.accept_mimetypes.best_match(["application/json", "text/csv"])
    return best == "text/csv"


def flatten(row: dict, prefix: str = "") -> dict:
    """{"user": {"id": 1, "login": "a"}} -> {"user.id": 1, "user.login": "a"}."""
    flat = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def csv_chunks(rows: Iterable, schema: ma.Schema, columns: list[str]) -> Iterator[str]:
    """The CSV text of `rows` (dumped by `schema`), header first, a chunk of rows at a
    time: one column per name in `columns` (dotted names reach into nested dicts; a missing
    value is an empty cell)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    rows = iter(rows)
    while True:
        started = time.thread_time()
        chunk = list(itertools.islice(rows, CHUNK_ROWS))
        for row in schema.dump(chunk, many=True):
            flat = flatten(row)
            writer.writerow([cell(flat.get(column)) for column in columns])
        if out.tell():
            yield out.getvalue()
            out.seek(0)
            out.truncate()
        if len(chunk) < CHUNK_ROWS:
            return
        # Paced: as long idle as busy, so an export takes at most half of its worker's
        # CPU (and of its Python lock): the worker's other requests keep theirs.
        time.sleep(time.thread_time() - started)


def too_large(count: int, narrow: tuple[str, ...]) -> Invalid:
    first, *others = narrow
    also = f" (or {', '.join(f'`{name}`' for name in others)})" if others else ""
    message = (
        f"an export holds at most {MAX_ROWS} rows and this one would hold {count}: "
        f"narrow it with `{first}`{also}"
    )
    return Invalid(message, {"query": {first: [f"at most {MAX_ROWS} rows per export"]}})


def export(
    make_rows: Callable[[], Sized],
    schema: ma.Schema,
    filename: str,
    narrow: tuple[str, ...],
    columns: list[str] | None = None,
) -> Response:
    """A downloadable CSV of the rows `make_rows()` gives (a sized iterable: its length is
    the export's row count, and it is read once, while streaming), dumped by `schema`, in
    `columns` (default: every field of the schema). `narrow`: the query parameters that
    make the export smaller, named by the 422 for one past MAX_ROWS.

    In order, before anything costly: the caller's export budget (429), an export slot of
    this process for the organization (429/503: see shared/web/limits.py), then the rows'
    keys or count and the cap (422). The slot is held until the stream ends, or the client
    goes away."""
    count_export()
    release = take_export_slot(g.org.id)
    try:
        rows = make_rows()
        if len(rows) > MAX_ROWS:
            raise too_large(len(rows), narrow)
    except BaseException:
        release()
        raise
    safe_name = UNSAFE_FILENAME.sub("-", filename).strip("-.") or "export"
    if not safe_name.endswith(".csv"):
        safe_name += ".csv"
    chunks = csv_chunks(rows, schema, columns or columns_of(schema))
    response = Response(
        stream_with_context(_released_at_end(chunks, release)),
        status=200,
        headers={
            "Content-Type": CONTENT_TYPE,
            "Content-Disposition": f'attachment; filename="{safe_name}"',
        },
    )
    response.call_on_close(release)  # a stream closed before it started
    return response


def _released_at_end(chunks: Iterator[str], release: Callable[[], None]) -> Iterator[str]:
    """`chunks`, then `release()`: as soon as the last chunk is out (before the server
    ends the response, so a client's next export never finds the slot still taken), or
    when the stream is closed early."""
    try:
        yield from chunks
    finally:
        release()


def columns_of(schema) -> list[str]:
    """The dotted column names of a marshmallow schema's dump (nested schemas flattened)."""
    names = []
    for name, field in schema.dump_fields.items():
        key = field.data_key or name
        nested = field.schema if isinstance(field, ma.fields.Nested) else None
        if nested is not None:
            names += [f"{key}.{inner}" for inner in columns_of(nested)]
        else:
            names.append(key)
    return names
