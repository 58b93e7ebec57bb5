import marshmallow as ma

from services.notifications import logic
from services.notifications.channels import mask_error
from services.notifications.conditions import TRIGGERS
from shared.masking import mask_target
from shared.models import Channel, DeliveryStatus
from shared.web.api import Schema

MAX_COOLDOWN_SECONDS = 30 * 24 * 3600


def _masked(rule) -> str:
    """A URL target shows only its host: a Slack incoming-webhook URL is a credential."""
    return mask_target(rule.target, rule.channel)


class RuleWarnings(ma.fields.List):
    """What to fix before a saved rule's messages go out (logic.rule_warnings): worked out on
    every read, from this service's settings."""

    def __init__(self, **kwargs):
        super().__init__(ma.fields.String(), dump_only=True, **kwargs)

    def get_value(self, obj, attr, accessor=None, default=ma.missing):
        return logic.rule_warnings(obj)


class RuleSchema(Schema):
    id = ma.fields.Integer(dump_only=True)
    name = ma.fields.String(dump_only=True)
    trigger = ma.fields.String(dump_only=True)
    conditions = ma.fields.Raw(dump_only=True)
    params = ma.fields.Dict(dump_only=True)
    channel = ma.fields.String(dump_only=True)
    target = ma.fields.Function(
        _masked, dump_only=True, metadata={"description": "a URL shows only its host"}
    )
    has_secret = ma.fields.Function(lambda rule: bool(rule.secret_encrypted), dump_only=True)
    enabled = ma.fields.Boolean(dump_only=True)
    cooldown_seconds = ma.fields.Integer(dump_only=True)
    warnings = RuleWarnings(
        metadata={
            "description": "what to fix before its messages go out: a setting this "
            'deployment lacks (["SMTP_HOST is not set: e-mails cannot be sent"]) or a target '
            "the current settings refuse; empty when none"
        }
    )
    created_by_id = ma.fields.Integer(dump_only=True, allow_none=True)
    created_at = ma.fields.DateTime(dump_only=True)
    updated_at = ma.fields.DateTime(dump_only=True)


class RuleWithSecretSchema(RuleSchema):
    secret = ma.fields.String(
        dump_only=True,
        allow_none=True,
        metadata={
            "description": "WEBHOOK signing secret (HMAC-SHA256 of the body in "
            "X-DevMetrics-Signature), shown this once"
        },
    )


def _rule_fields(required: bool) -> dict:
    def field(cls, *args, default=None, **kwargs):
        if required and default is not None:
            return cls(*args, load_default=default, **kwargs)
        return cls(*args, required=required and default is None, **kwargs)

    return {
        "name": field(ma.fields.String, validate=ma.validate.Length(min=1, max=255)),
        "trigger": field(ma.fields.String, validate=ma.validate.OneOf(TRIGGERS)),
        "conditions": field(
            ma.fields.Raw,
            default=dict,
            metadata={
                "description": 'e.g. {"all": [{"field": "risk_score", "op": ">=", "value": 70}]}'
            },
        ),
        "params": field(
            ma.fields.Raw,
            default=dict,
            metadata={
                "description": "pull_request.stale {hours}; metric.threshold {metric, scope, "
                "op, value}; digest.* {hour}"
            },
        ),
        "channel": field(ma.fields.String, validate=ma.validate.OneOf([c.value for c in Channel])),
        "target": field(
            ma.fields.String,
            metadata={"description": "Slack incoming-webhook URL, HTTPS URL or e-mail address"},
        ),
        "enabled": field(ma.fields.Boolean, default=True),
        "cooldown_seconds": field(
            ma.fields.Integer,
            default=0,
            validate=ma.validate.Range(min=0, max=MAX_COOLDOWN_SECONDS),
        ),
    }


RuleCreateSchema = Schema.from_dict(_rule_fields(required=True), name="RuleCreate")
RuleUpdateSchema = Schema.from_dict(_rule_fields(required=False), name="RuleUpdate")


class SecretSchema(Schema):
    id = ma.fields.Integer()
    secret = ma.fields.String(metadata={"description": "shown this once"})


class TestOutcomeSchema(Schema):
    status = ma.fields.String(metadata={"description": "SENT or FAILED"})
    response_code = ma.fields.Integer(allow_none=True)
    error = ma.fields.String(allow_none=True)


class LogQuerySchema(Schema):
    status = ma.fields.String(validate=ma.validate.OneOf([s.value for s in DeliveryStatus]))
    channel = ma.fields.String(validate=ma.validate.OneOf([c.value for c in Channel]))
    rule = ma.fields.Integer(validate=ma.validate.Range(min=1))
    from_ = ma.fields.AwareDateTime(
        data_key="from", attribute="from", metadata={"description": "created at or after"}
    )
    to = ma.fields.AwareDateTime(metadata={"description": "created before"})

    @ma.validates_schema
    def range_in_order(self, data, **kwargs):
        if data.get("from") and data.get("to") and data["from"] > data["to"]:
            raise ma.ValidationError("must not be before from", "to")


class DeliveryError(ma.fields.String):
    """A delivery's error, masked as rule reads mask its target: masked when stored, and
    again here for rows stored before errors were masked."""

    def _serialize(self, value, attr, obj, **kwargs):
        return super()._serialize(mask_error(obj.rule, value), attr, obj, **kwargs)


class LogSchema(Schema):
    id = ma.fields.Integer()
    rule_id = ma.fields.Integer()
    rule_name = ma.fields.Function(lambda log: log.rule.name)
    channel = ma.fields.Function(lambda log: str(log.rule.channel))
    event_key = ma.fields.String()
    status = ma.fields.String()
    payload = ma.fields.Raw()
    attempts = ma.fields.Integer()
    response_code = ma.fields.Integer(allow_none=True)
    last_error = DeliveryError(
        allow_none=True,
        metadata={"description": "the last attempt's error; its target shows only its host"},
    )
    next_attempt_at = ma.fields.DateTime(allow_none=True)
    last_attempt_at = ma.fields.DateTime(allow_none=True)
    sent_at = ma.fields.DateTime(allow_none=True)
    created_at = ma.fields.DateTime()


class EventInSchema(Schema):
    id = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=64),
        metadata={"description": "message id: the same id is applied once"},
    )
    type = ma.fields.String(required=True)
    organization_id = ma.fields.Integer(required=True)
    key = ma.fields.String(
        required=True,
        validate=ma.validate.Length(min=1, max=255),
        metadata={"description": "event key: a rule is notified once per key"},
    )
    data = ma.fields.Dict(load_default=dict)


class EventResultSchema(Schema):
    id = ma.fields.String()
    status = ma.fields.String(metadata={"description": "processed, or duplicate"})
    logs = ma.fields.List(
        ma.fields.Integer(), metadata={"description": "deliveries created (PENDING/SUPPRESSED)"}
    )
