import marshmallow as ma

from shared.models import Sensitivity
from shared.web.api import Schema

SENSITIVITIES = [s.value for s in Sensitivity]


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
    disconnected_at = ma.fields.DateTime(allow_none=True)


class RepositoryConnectSchema(Schema):
    full_name = ma.fields.String(
        required=True,
        validate=ma.validate.Regexp(
            r"^[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}$", error="must be owner/name"
        ),
    )
    sensitivity = ma.fields.String(
        load_default="INTERNAL", validate=ma.validate.OneOf(SENSITIVITIES)
    )


class RepositoryUpdateSchema(Schema):
    sensitivity = ma.fields.String(required=True, validate=ma.validate.OneOf(SENSITIVITIES))


class WebhookSecretSchema(RepositorySchema):
    webhook_url = ma.fields.String(metadata={"description": "Paste into GitHub's webhook form"})
    webhook_secret = ma.fields.String(metadata={"description": "Shown once"})
    content_type = ma.fields.String()


class DeliveryResultSchema(Schema):
    status = ma.fields.String()
    id = ma.fields.Integer()
    delivery = ma.fields.String()
    zen = ma.fields.String(allow_none=True)
