import marshmallow as ma

from shared.web.api import Schema


class IntrospectRequestSchema(Schema):
    token = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=512))
    org = ma.fields.String(load_default=None, allow_none=True)


class IntrospectOrgSchema(Schema):
    id = ma.fields.Integer()
    slug = ma.fields.String()


class IntrospectResponseSchema(Schema):
    active = ma.fields.Boolean(required=True)
    kind = ma.fields.String()
    key_id = ma.fields.Integer(allow_none=True)
    user_id = ma.fields.Integer(allow_none=True)
    organization = ma.fields.Nested(IntrospectOrgSchema, allow_none=True)
    role = ma.fields.String(allow_none=True)
    scopes = ma.fields.List(ma.fields.String())
