import marshmallow as ma

from shared.web.api import Schema


class NotificationRuleSchema(Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    trigger = ma.fields.String()
    conditions = ma.fields.Dict()
    channel = ma.fields.String()
    enabled = ma.fields.Boolean()
    cooldown_seconds = ma.fields.Integer()
