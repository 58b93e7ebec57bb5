"""The base model, and the field types every model module uses."""

from __future__ import annotations

import datetime as dt

import peewee as pw

from shared.database import db
from shared.storable import check_row


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTimeField(pw.DateTimeField):
    """Stored as naive UTC (PostgreSQL `timestamp`, SQLite text), returned as aware UTC.

    An aware value in any zone is converted to UTC on the way in; a naive value is
    taken to be UTC already.
    """

    def db_value(self, value):
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return super().db_value(value)

    def python_value(self, value):
        value = super().python_value(value)
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value


class EnumField(pw.CharField):
    """A CharField holding one member of a StrEnum; anything else is refused before SQL."""

    def __init__(self, enum, max_length=16, **kwargs):
        self.enum = enum
        kwargs.setdefault("choices", [(m.value, m.value) for m in enum])
        super().__init__(max_length=max_length, **kwargs)

    def db_value(self, value):
        if value is not None and not isinstance(value, pw.Node):
            try:
                value = self.enum(value).value
            except ValueError:
                allowed = ", ".join(m.value for m in self.enum)
                raise ValueError(
                    f"{self.model.__name__}.{self.name}: {value!r} is not one of {allowed}"
                ) from None
        return super().db_value(value)

    def python_value(self, value):
        value = super().python_value(value)
        return self.enum(value) if value is not None else None


class BaseModel(pw.Model):
    """Every table: bound to the shared proxy, `updated_at` kept current.

    Models name their tables explicitly; `legacy_table_names = False` makes index names
    start with the table name, which is also how peewee-migrate names the indexes it adds
    or drops later (the generated migrations' models say the same).
    """

    class Meta:
        database = db
        legacy_table_names = False

    # Every insert and update (save and create too) checks its values fit their columns
    # (shared/storable.py): on SQLite as PostgreSQL would, naming the column.
    @classmethod
    def insert(cls, data=None, /, **insert):
        check_row(cls, data)
        check_row(cls, insert)
        return super().insert(data, **insert)

    @classmethod
    def update(cls, data=None, /, **update):
        check_row(cls, data)
        check_row(cls, update)
        return super().update(data, **update)

    @classmethod
    def insert_many(cls, rows, fields=None):
        if isinstance(rows, list | tuple):
            for row in rows:
                if isinstance(row, dict):
                    check_row(cls, row)
                elif fields is not None:
                    check_row(cls, dict(zip(fields, row, strict=False)))
        return super().insert_many(rows, fields)

    def save(self, *args, **kwargs):
        if "updated_at" in self._meta.fields:
            self.updated_at = utcnow()
        return super().save(*args, **kwargs)
