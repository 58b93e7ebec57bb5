"""One Flask-Admin view per table, configured from the model's fields: filters on the useful
columns, search on names, links along foreign keys both ways, secrets masked, edits audited.

Secrets are shown nowhere: secret columns as "set"/"not set" (never exported, never in a
form); a notification rule's target and its deliveries' errors masked as the notifications
API masks them (shared.masking), in lists, details and exports, the target write-only in its
form; anything secret-like in any other text (a token in a URL, user:password@) masked too.
Exported cells never start a formula (shared.spreadsheet, the metrics API's rule)."""

from __future__ import annotations

import peewee as pw
from flask import request, url_for
from flask_admin.contrib.peewee import ModelView
from flask_admin.contrib.peewee import filters as flt
from flask_admin.form import SecureForm
from markupsafe import Markup, escape
from wtforms.widgets import TextInput

from shared import audit, masking
from shared.database import db
from shared.models import AuditLog, NotificationLog, NotificationRule, Organization, Repository
from shared.models.base import EnumField
from shared.spreadsheet import cell

# Secret material: shown as "set"/"not set", never exported, never in a form.
SECRET_COLUMNS = {
    ("User", "oauth_token_encrypted"),
    ("Repository", "webhook_secret_encrypted"),
    ("NotificationRule", "secret_encrypted"),
    ("ApiKey", "key_hash"),
    ("Session", "token_digest"),
    ("LoginLink", "token_digest"),
}
# Readable values holding a secret: shown masked in lists, details and exports, never sorted
# on; (table, column) -> the masked value of a row.
MASKED_COLUMNS = {
    ("NotificationRule", "target"): lambda row: masking.mask_target(row.target, row.channel),
    ("NotificationLog", "last_error"): lambda row: masking.scrub(
        row.last_error, targets=[_rule_target(row)]
    ),
}
# Of those, the ones a form may change without showing them: the input starts empty (the
# masked value as its placeholder) and an empty input keeps the stored value.
WRITE_ONLY_COLUMNS = {("NotificationRule", "target")}
# Filter lists offer every organization/repository by name; other keys filter by id.
NAMED_TARGETS = {Organization: "name", Repository: "full_name"}
LABEL_ATTRIBUTES = ("full_name", "name", "login", "email", "title", "slug", "sha", "prefix")
# Searched with ILIKE: the text columns people look rows up by.
SEARCHABLE_NAMES = {"name", "full_name", "login", "email", "title", "slug", "sha", "message"}
SEARCHABLE_NAMES |= {"action", "prefix", "topic", "ref", "environment"}


def is_secret(model, field_name: str) -> bool:
    return (model.__name__, field_name) in SECRET_COLUMNS


def is_masked(model, field_name: str) -> bool:
    return (model.__name__, field_name) in MASKED_COLUMNS


def _rule_target(log: NotificationLog) -> str | None:
    rule_id = log.__data__.get("rule")
    rule = NotificationRule.get_or_none(NotificationRule.id == rule_id) if rule_id else None
    return rule.target if rule is not None else None


def _masked_formatter(view, context, model, name):
    return MASKED_COLUMNS[(type(model).__name__, name)](model)


def endpoint_of(model) -> str:
    return model.__name__.lower()


def label_of(row) -> str:
    for attribute in LABEL_ATTRIBUTES:
        value = getattr(row, attribute, None)
        if isinstance(value, str) and value:
            return f"{value}"
    return f"{type(row).__name__} #{row.get_id()}"


def _secret_formatter(view, context, model, name):
    return "set" if getattr(model, name) else "not set"


def _foreign_key_formatter(view, context, model, name):
    field = model._meta.fields[name]
    target_id = model.__data__.get(name)
    if target_id is None:
        return ""
    target = field.rel_model.get_or_none(field.rel_field == target_id)
    text = label_of(target) if target is not None else f"#{target_id}"
    href = url_for(f"{endpoint_of(field.rel_model)}.details_view", id=target_id)
    return Markup(f'<a href="{escape(href)}" data-relation="{escape(name)}">{escape(text)}</a>')


def _foreign_key_export(view, context, model, name):
    return model.__data__.get(name)


def _named_options(target, attribute):
    def options():
        return [
            (str(pk), label)
            for pk, label in target.select(target._meta.primary_key, getattr(target, attribute))
            .order_by(getattr(target, attribute))
            .tuples()
        ]

    return options


def filters_for(model) -> list:
    """Filters on the columns people narrow lists by: org, repository, dates, status, role, plan."""
    filters = []
    for field in model._meta.sorted_fields:
        label = field.name.replace("_", " ").capitalize()
        if is_secret(model, field.name):
            continue
        if isinstance(field, pw.ForeignKeyField):
            target = field.rel_model
            if target in NAMED_TARGETS:
                options = _named_options(target, NAMED_TARGETS[target])
                filters.append(flt.FilterEqual(field, label, options=options))
            else:
                filters.append(flt.IntEqualFilter(field, label))
        elif isinstance(field, EnumField):
            options = tuple((m.value, m.value) for m in field.enum)
            filters.append(flt.FilterEqual(field, label, options=options))
        elif isinstance(field, pw.DateTimeField):
            filters += [
                flt.DateTimeGreaterFilter(field, label),
                flt.DateTimeSmallerFilter(field, label),
                flt.DateTimeBetweenFilter(field, label),
            ]
        elif isinstance(field, pw.DateField):
            filters += [
                flt.DateGreaterFilter(field, label),
                flt.DateSmallerFilter(field, label),
                flt.DateBetweenFilter(field, label),
            ]
        elif isinstance(field, pw.BooleanField):
            filters.append(flt.BooleanEqualFilter(field, label))
    return filters


class StudioModelView(ModelView):
    can_create = False
    can_delete = False
    can_view_details = True
    can_export = True
    export_types = ["csv"]
    can_set_page_size = True
    page_size = 50
    column_display_pk = True
    named_filter_urls = True
    form_base_class = SecureForm

    def __init__(self, model, **kwargs):
        fields = model._meta.sorted_fields
        secret = [f.name for f in fields if is_secret(model, f.name)]
        masked = [f.name for f in fields if is_masked(model, f.name)]
        self.write_only = [name for name in masked if (model.__name__, name) in WRITE_ONLY_COLUMNS]
        foreign = [f.name for f in fields if isinstance(f, pw.ForeignKeyField)]
        self.column_list = [f.name for f in fields]
        self.column_details_list = list(self.column_list)
        self.column_export_exclude_list = secret  # not even "set" goes into a file
        self.column_formatters = {
            **{name: _secret_formatter for name in secret},
            **{name: _masked_formatter for name in masked},
            **{name: _foreign_key_formatter for name in foreign},
        }
        self.column_formatters_export = {
            **{name: _masked_formatter for name in masked},
            **{name: _foreign_key_export for name in foreign},
        }
        self.column_sortable_list = [
            f.name for f in fields if f.name not in secret and f.name not in masked
        ]
        self.column_searchable_list = [
            f for f in fields if f.name in SEARCHABLE_NAMES and isinstance(f, pw.CharField)
        ]
        self.column_filters = filters_for(model)
        read_only = [name for name in masked if name not in self.write_only]
        self.form_excluded_columns = (
            secret
            + read_only
            + [
                f.name
                for f in fields
                if isinstance(f, pw.JSONField | pw.AutoField) or f.name == "updated_at"
            ]
        )
        # The audit log is append-only: browsable, never editable.
        self.can_edit = model is not AuditLog
        self.relations = []  # (label, child view, filter url argument), see link_relations
        super().__init__(model, endpoint=endpoint_of(model), **kwargs)

    def is_accessible(self):
        from flask import session

        return bool(session.get("studio"))

    def inaccessible_callback(self, name, **kwargs):
        from flask import redirect, request

        return redirect(url_for("studio_login", next=request.full_path))

    def hidden_values(self, row) -> dict[str, str]:
        """The fields of `row` whose stored value a form must not show: name -> what may be
        shown instead. The write-only columns, and any text holding something secret-like."""
        hidden = {name: _masked_formatter(self, None, row, name) for name in self.write_only}
        for name, value in row.__data__.items():
            if name not in hidden and isinstance(value, str) and masking.scrub(value) != value:
                hidden[name] = masking.scrub(value)
        return hidden

    def edit_form(self, obj=None):
        form = super().edit_form(obj)
        for name, shown in (self.hidden_values(obj) if obj is not None else {}).items():
            if name not in form:
                continue
            field = form[name]
            field.widget = WriteOnlyInput(shown)
            if request.method == "POST" and not (field.data or "").strip():
                stored = getattr(obj, name)  # left empty: the stored value stays
                field.data, field.raw_data = stored, [stored]
        return form

    def _get_list_value(self, context, model, name, column_formatters, column_type_formatters):
        value = super()._get_list_value(
            context, model, name, column_formatters, column_type_formatters
        )
        if isinstance(value, str) and not isinstance(value, Markup):  # Markup: ours
            return masking.scrub(value)
        return value

    def get_export_value(self, model, name):
        return cell(super().get_export_value(model, name))

    def update_model(self, form, model):
        before = dict(model.__data__)
        _keep_unchanged_timestamps(form)
        with db.atomic():
            saved = super().update_model(form, model)
            if saved:
                changed = sorted(
                    name
                    for name, value in model.__data__.items()
                    if before.get(name) != value and name != "updated_at"  # save() sets it
                )
                audit.record(
                    "studio.update",
                    organization=_organization_of(model),
                    target_type=model._meta.table_name,
                    target_id=model.get_id(),
                    metadata={"via": "studio", "fields": changed},
                )
        return saved

    def render(self, template, **kwargs):
        if template == self.details_template:
            model = kwargs.get("model")
            if model is not None:
                kwargs["studio_relations"] = [
                    (label, url_for(f"{child.endpoint}.index_view", **{arg: model.get_id()}))
                    for label, child, arg in self.relations
                ]
        return super().render(template, **kwargs)

    details_template = "studio/details.html"


class WriteOnlyInput(TextInput):
    """A text input that never shows the stored value (it holds a secret): empty, with what
    may be shown of it as the placeholder; submitted empty, the stored value stays."""

    def __init__(self, shown: str):
        super().__init__()
        self.shown = shown

    def __call__(self, field, **kwargs):
        kwargs.update(value="", placeholder=self.shown, autocomplete="off")
        kwargs.setdefault("title", "Not shown: leave empty to keep it, or enter a new value")
        return super().__call__(field, **kwargs)


def _keep_unchanged_timestamps(form) -> None:
    """Form inputs show timestamps to the second; an untouched input must keep the stored value
    (microseconds and all) rather than overwrite it with its rounded rendering."""
    for field in form:
        original, formats = field.object_data, getattr(field, "format", None)
        if not field.raw_data or not hasattr(original, "strftime") or not formats:
            continue
        formats = [formats] if isinstance(formats, str) else formats
        if field.raw_data[0] in {original.strftime(f) for f in formats}:
            field.data = original


def _organization_of(model):
    if isinstance(model, Organization):
        return model.id
    return model.__data__.get("organization")


def link_relations(views: list[StudioModelView]) -> None:
    """Reverse links: each row's details page lists the rows pointing at it (an organization's
    members, repositories, keys ...), each a list view filtered by that foreign key."""
    by_model = {view.model: view for view in views}
    for view in views:
        for field in view.model._meta.sorted_fields:
            if not isinstance(field, pw.ForeignKeyField) or field.rel_model not in by_model:
                continue
            for key, (_index, filter_) in view._filter_args.items():
                if getattr(filter_, "column", None) is field:
                    label = f"{view.name} ({field.name})"
                    by_model[field.rel_model].relations.append((label, view, f"flt0_{key}"))
                    break
