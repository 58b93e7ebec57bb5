import zoneinfo

import marshmallow as ma

from shared.models import InvitationStatus, Plan, Role, utcnow
from shared.permissions import SCOPES
from shared.web.api import OrgSchema, Schema


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


class CallbackArgsSchema(Schema):
    code = ma.fields.String(load_default=None, validate=ma.validate.Length(max=512))
    state = ma.fields.String(load_default=None, validate=ma.validate.Length(max=512))
    error = ma.fields.String(load_default=None, validate=ma.validate.Length(max=200))
    error_description = ma.fields.String(load_default=None, validate=ma.validate.Length(max=1000))
    error_uri = ma.fields.String(load_default=None, validate=ma.validate.Length(max=1000))


class UserSchema(Schema):
    id = ma.fields.Integer()
    github_id = ma.fields.Integer()
    login = ma.fields.String()
    name = ma.fields.String(allow_none=True)
    email = ma.fields.String(allow_none=True)
    avatar_url = ma.fields.String(allow_none=True)


class SessionSchema(Schema):
    token = ma.fields.String(metadata={"description": "Bearer token; also set as a cookie"})
    expires_at = ma.fields.DateTime()
    user = ma.fields.Nested(UserSchema)


class MembershipOrgSchema(Schema):
    organization = ma.fields.Nested(OrgSchema)
    role = ma.fields.String()


class MyEmailSchema(Schema):
    email = ma.fields.String()
    verified = ma.fields.Boolean(
        metadata={"description": "GitHub listed it verified for you at your last sign-in"}
    )
    paired_by_github = ma.fields.Boolean(
        metadata={"description": "GitHub showed it with your username in commits"}
    )
    linked = ma.fields.Boolean(
        metadata={
            "description": "Commits with this e-mail and no username of their own count as "
            "yours (false: released, or neither verified nor paired)"
        }
    )
    paired_with_another_account = ma.fields.Boolean(
        metadata={
            "description": "GitHub also showed it with another account's username: that "
            "pairing decides those organizations' commits"
        }
    )


class MeSchema(Schema):
    user = ma.fields.Nested(UserSchema)
    organizations = ma.fields.List(ma.fields.Nested(MembershipOrgSchema))
    emails = ma.fields.List(
        ma.fields.Nested(MyEmailSchema),
        metadata={"description": "Your commit e-mails (see `PUT /api/v1/me`)"},
    )


class MeUpdateSchema(Schema):
    emails = ma.fields.List(
        ma.fields.Email(validate=ma.validate.Length(max=320)),
        required=True,
        validate=ma.validate.Length(max=100),
        metadata={
            "description": "The e-mails whose commits are yours: each verified for you by "
            "GitHub or paired with your username; your others are released"
        },
    )


class OrgSettingsSchema(Schema):
    """Known settings only; each validated."""

    timezone = ma.fields.String()
    digest_hour = ma.fields.Integer(validate=ma.validate.Range(0, 23))
    retention_events_days = ma.fields.Integer(validate=ma.validate.Range(7, 3650))
    retention_audit_days = ma.fields.Integer(validate=ma.validate.Range(365, 2557))
    incident_label = ma.fields.String(validate=ma.validate.Length(min=1, max=50))
    production_environments = ma.fields.List(
        ma.fields.String(validate=ma.validate.Length(min=1, max=255)),
        validate=ma.validate.Length(min=1, max=20),
    )
    ai_review_provider = ma.fields.String(validate=ma.validate.OneOf(["heuristic", "llm"]))

    @ma.validates("timezone")
    def check_timezone(self, value, **kwargs):
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ma.ValidationError(f"unknown time zone {value!r}") from None


class OrgDetailSchema(OrgSchema):
    role = ma.fields.String(dump_only=True, allow_none=True)
    settings = ma.fields.Dict(dump_only=True)
    created_at = ma.fields.DateTime(dump_only=True)


class OrgCreateSchema(Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))
    slug = ma.fields.String(validate=ma.validate.Length(min=1, max=100))
    settings = ma.fields.Nested(OrgSettingsSchema)


class OrgUpdateSchema(Schema):
    name = ma.fields.String(validate=ma.validate.Length(min=1, max=255))
    settings = ma.fields.Nested(OrgSettingsSchema)
    plan = ma.fields.String(validate=ma.validate.OneOf([p.value for p in Plan]))


ROLES = [r.value for r in Role]


class MemberSchema(Schema):
    user = ma.fields.Nested(UserSchema, dump_only=True)
    role = ma.fields.String(dump_only=True)
    created_at = ma.fields.DateTime(dump_only=True)


class InvitationCreateSchema(Schema):
    login = ma.fields.String(
        validate=ma.validate.Length(min=1, max=100), metadata={"description": "GitHub login"}
    )
    email = ma.fields.Email(validate=ma.validate.Length(max=320))
    role = ma.fields.String(load_default="MEMBER", validate=ma.validate.OneOf(ROLES))

    @ma.validates_schema
    def one_of_login_or_email(self, data, **kwargs):
        if bool(data.get("login")) == bool(data.get("email")):
            raise ma.ValidationError("give exactly one of login or email", field_name="login")


def _invitation_status(invitation) -> str:
    expired = invitation.status == InvitationStatus.PENDING and invitation.expires_at <= utcnow()
    return "EXPIRED" if expired else str(invitation.status)


INVITATION_STATUSES = [s.value for s in InvitationStatus] + ["EXPIRED"]


class InvitationSchema(Schema):
    id = ma.fields.Integer(dump_only=True)
    login = ma.fields.String(dump_only=True, allow_none=True)
    email = ma.fields.String(dump_only=True, allow_none=True)
    role = ma.fields.String(dump_only=True)
    status = ma.fields.Function(
        _invitation_status,
        dump_only=True,
        metadata={"description": "PENDING, ACCEPTED, DECLINED, REVOKED or EXPIRED"},
    )
    invited_by = ma.fields.Integer(attribute="invited_by_id", dump_only=True, allow_none=True)
    accepted_by = ma.fields.Integer(attribute="accepted_by_id", dump_only=True, allow_none=True)
    created_at = ma.fields.DateTime(dump_only=True)
    expires_at = ma.fields.DateTime(dump_only=True)
    responded_at = ma.fields.DateTime(dump_only=True, allow_none=True)


class MyInvitationSchema(InvitationSchema):
    organization = ma.fields.Nested(OrgSchema, dump_only=True)


class InvitationQuerySchema(Schema):
    status = ma.fields.String(validate=ma.validate.OneOf(INVITATION_STATUSES))


class MembershipSchema(Schema):
    organization = ma.fields.Nested(OrgSchema, dump_only=True)
    role = ma.fields.String(dump_only=True)
    created_at = ma.fields.DateTime(dump_only=True)


class MemberUpdateSchema(Schema):
    role = ma.fields.String(required=True, validate=ma.validate.OneOf(ROLES))


class ApiKeySchema(Schema):
    id = ma.fields.Integer(dump_only=True)
    name = ma.fields.String(dump_only=True)
    prefix = ma.fields.String(dump_only=True)
    scopes = ma.fields.List(ma.fields.String(), dump_only=True)
    created_by = ma.fields.Integer(
        attribute="created_by_id",
        dump_only=True,
        allow_none=True,
        metadata={"description": "The person whose current role bounds the key"},
    )
    created_by_key = ma.fields.Integer(
        attribute="created_by_key_id",
        dump_only=True,
        allow_none=True,
        metadata={"description": "The key that created this one (revoking it revokes this)"},
    )
    organization_key = ma.fields.Boolean(
        dump_only=True,
        metadata={
            "description": "Made by `devmetrics apikey create` (or by such a key): owned by "
            "the organization, no creating person; bounded by its scopes only"
        },
    )
    created_at = ma.fields.DateTime(dump_only=True)
    expires_at = ma.fields.DateTime(dump_only=True, allow_none=True)
    last_used_at = ma.fields.DateTime(dump_only=True, allow_none=True)
    revoked_at = ma.fields.DateTime(dump_only=True, allow_none=True)


class ApiKeyCreatedSchema(ApiKeySchema):
    key = ma.fields.String(dump_only=True, metadata={"description": "Shown once"})


class ApiKeyCreateSchema(Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=255))
    scopes = ma.fields.List(
        ma.fields.String(validate=ma.validate.OneOf(SCOPES)),
        required=True,
        validate=ma.validate.Length(min=1),
    )
    expires_at = ma.fields.AwareDateTime(load_default=None, allow_none=True)


class AuditLogSchema(Schema):
    id = ma.fields.Integer()
    action = ma.fields.String()
    actor_user = ma.fields.Integer(attribute="actor_user_id", allow_none=True)
    actor_api_key = ma.fields.Integer(attribute="actor_api_key_id", allow_none=True)
    target_type = ma.fields.String(allow_none=True)
    target_id = ma.fields.String(allow_none=True)
    ip = ma.fields.String(allow_none=True)
    user_agent = ma.fields.String(allow_none=True)
    metadata = ma.fields.Dict()
    created_at = ma.fields.DateTime()


class AuditQuerySchema(Schema):
    action = ma.fields.String(validate=ma.validate.Length(max=100))
    actor = ma.fields.String(
        validate=ma.validate.Length(max=100), metadata={"description": "GitHub login, or key:<id>"}
    )
    start = ma.fields.AwareDateTime(data_key="from")
    end = ma.fields.AwareDateTime(data_key="to")


class LimitsSchema(Schema):
    organization_id = ma.fields.Integer()
    plan = ma.fields.String()
    personal = ma.fields.Boolean()
    limits = ma.fields.Dict()
    usage = ma.fields.Dict()
    can_add = ma.fields.Dict()
