"""flask-smorest set up once: error format, strict schemas, pagination over Peewee queries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import marshmallow as ma
from flask_smorest import Api as SmorestApi
from flask_smorest import Page
from werkzeug.exceptions import HTTPException

from shared.errors import DomainError, Invalid, NotFound

NUL = "\x00"
NUL_REFUSED = "contains a NUL character"


class Api(SmorestApi):
    """Every error is JSON `{code, status, message, errors}`, whatever raised it."""

    def handle_http_exception(self, error: HTTPException):
        payload, code, headers = super().handle_http_exception(error)
        payload.setdefault("message", error.description or error.name)
        payload.setdefault("errors", {})
        if code == 500:
            # An unexpected failure: never a traceback or an internal detail in a response.
            payload["message"] = "internal error"
        return payload, code, headers


class Schema(ma.Schema):
    """Base schema: unknown body fields are rejected (422 naming them). Query strings keep
    webargs' default of ignoring extras, as several schemas share one query string."""

    class Meta:
        unknown = ma.RAISE
        ordered = True

    @ma.pre_load
    def refuse_nul_characters(self, data, **kwargs):
        """NUL cannot be stored in PostgreSQL text: a clear 422 naming the field (a JSON
        body's, or any other mapping loaded through a schema)."""
        if isinstance(data, Mapping):
            bad = [key for key in data if has_nul(key) or has_nul(data[key])]
            if bad:
                raise ma.ValidationError({key: [NUL_REFUSED] for key in bad})
        return data


def has_nul(value) -> bool:
    """A NUL anywhere in a string, or in a key or value of a JSON-like structure."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, Mapping):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_nul(v) for v in value)
    return False


def nul_refusal(
    path_args: Mapping | None, query: Iterable[tuple[str, str]], headers: Iterable[tuple[str, str]]
) -> DomainError | None:
    """The answer to a request with a NUL where the services would have used it as a value
    (PostgreSQL can neither store nor compare U+0000 in text), or None: a path segment is
    "not found" (no resource has such a name), a query parameter or a header a 422 naming
    it. Every service's request hook and the webhook fast path ask this; JSON bodies are
    checked field by field by the Schema above (a webhook body's NUL is GitHub's data and
    is replaced, not refused)."""
    bad_path = sorted(name for name, value in (path_args or {}).items() if has_nul(value))
    if bad_path:
        return NotFound("not found", {"path": {name: [NUL_REFUSED] for name in bad_path}})
    bad_query = {name for name, value in query if has_nul(name) or has_nul(value)}
    if bad_query:
        names = ", ".join(sorted(map(repr, bad_query)))
        return Invalid(
            f"query parameter {names} {NUL_REFUSED}",
            {"query": {name: [NUL_REFUSED] for name in sorted(bad_query)}},
        )
    bad_headers = {name for name, value in headers if has_nul(name) or has_nul(value)}
    if bad_headers:
        names = ", ".join(sorted(bad_headers))
        return Invalid(
            f"header {names} {NUL_REFUSED}",
            {"headers": {name: [NUL_REFUSED] for name in sorted(bad_headers)}},
        )
    return None


class PeeweePage(Page):
    """flask-smorest pagination over a Peewee query: LIMIT/OFFSET plus one COUNT."""

    # Beyond this no table has rows; the offset would overflow the database's integers.
    MAX_OFFSET = 2**62

    @property
    def items(self):
        page, size = self.page_params.page, self.page_params.page_size
        if (page - 1) * size >= self.MAX_OFFSET:
            return []
        return list(self.collection.paginate(page, size))

    @property
    def item_count(self):
        return self.collection.count()


class OrgSchema(Schema):
    id = ma.fields.Integer(dump_only=True)
    slug = ma.fields.String(dump_only=True)
    name = ma.fields.String(dump_only=True)
    plan = ma.fields.String(dump_only=True)
    is_personal = ma.fields.Boolean(dump_only=True)
