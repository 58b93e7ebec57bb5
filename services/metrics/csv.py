"""CSV export of any list the metrics API returns: `?format=csv` or `Accept: text/csv`.

Rows are the dicts the JSON response would carry (a schema's dump), so both formats show
the same values. Nested dicts become dotted columns (`user.login`).
"""

from __future__ import annotations

import csv
import io
import re

import marshmallow as ma
from flask import Response, request

from shared.spreadsheet import cell  # the one rule of CSV cells (Studio too)

CONTENT_TYPE = "text/csv; charset=utf-8"
UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


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


def csv_text(rows: list[dict], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        flat = flatten(row)
        writer.writerow([cell(flat.get(column)) for column in columns])
    return out.getvalue()


def csv_response(rows: list[dict], columns: list[str], filename: str) -> Response:
    """A downloadable CSV of `rows`, one column per name in `columns` (dotted names reach
    into nested dicts; a missing value is an empty cell)."""
    safe_name = UNSAFE_FILENAME.sub("-", filename).strip("-.") or "export"
    if not safe_name.endswith(".csv"):
        safe_name += ".csv"
    return Response(
        csv_text(rows, columns),
        status=200,
        headers={
            "Content-Type": CONTENT_TYPE,
            "Content-Disposition": f'attachment; filename="{safe_name}"',
        },
    )


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
