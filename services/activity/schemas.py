import marshmallow as ma

from shared.web.api import Schema


class RepositorySchema(Schema):
    id = ma.fields.Integer()
    github_id = ma.fields.Integer(allow_none=True)
    full_name = ma.fields.String()
    default_branch = ma.fields.String()
    language = ma.fields.String(allow_none=True)
    private = ma.fields.Boolean()
    sensitivity = ma.fields.String()
    is_active = ma.fields.Boolean()
    connected_at = ma.fields.DateTime()
