"""flask-smorest set up once: error format, strict schemas, pagination over Peewee queries."""

from __future__ import annotations

import marshmallow as ma
from flask_smorest import Api as SmorestApi
from flask_smorest import Page
from werkzeug.exceptions import HTTPException


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
        """NUL cannot be stored in PostgreSQL text: a clear 422 naming the field."""
        if isinstance(data, dict):
            bad = [key for key, value in data.items() if _has_nul(value)]
            if bad:
                raise ma.ValidationError({key: ["contains a NUL character"] for key in bad})
        return data


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


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
