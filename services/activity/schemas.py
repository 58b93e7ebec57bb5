import marshmallow as ma

from services.activity.github_access import status_of
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
    settings = ma.fields.Dict()
    connected_at = ma.fields.DateTime()
    disconnected_at = ma.fields.DateTime(allow_none=True)
    status = ma.fields.Function(
        lambda repo: status_of(repo).state,
        metadata={
            "description": "verified (GitHub confirmed it with the token owner's token; "
            "webhooks accepted), pending_verification (not yet: webhooks refused, retried in "
            "the background) or needs_owner_token (its GitHub calls stopped: an ADMIN "
            "verifies it with their own GitHub sign-in)"
        },
    )
    status_detail = ma.fields.Function(lambda repo: status_of(repo).detail, allow_none=True)
    verified_at = ma.fields.DateTime(allow_none=True)
    token_owner = ma.fields.Integer(
        attribute="connected_by_id",
        allow_none=True,
        metadata={"description": "The user whose GitHub token its GitHub calls use"},
    )


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


class RepositorySettingsSchema(Schema):
    deployment_source = ma.fields.String(
        validate=ma.validate.Regexp(
            r"^(deployments|merges|workflow:[^\s].{0,254})$",
            error="must be 'deployments', 'merges' or 'workflow:<workflow name or file>'",
        ),
        metadata={
            "description": "What counts as a production deployment: GitHub deployments to the "
            "organization's production environments (default), each pull request merged into "
            "the default branch, or each completed run of one workflow on the default branch"
        },
    )


class RepositoryUpdateSchema(Schema):
    sensitivity = ma.fields.String(validate=ma.validate.OneOf(SENSITIVITIES))
    settings = ma.fields.Nested(RepositorySettingsSchema)


class WebhookSecretSchema(RepositorySchema):
    webhook_url = ma.fields.String(metadata={"description": "Paste into GitHub's webhook form"})
    webhook_secret = ma.fields.String(metadata={"description": "Shown once"})
    content_type = ma.fields.String()


class DeliveryResultSchema(Schema):
    status = ma.fields.String()
    id = ma.fields.Integer()
    delivery = ma.fields.String()
    zen = ma.fields.String(allow_none=True)


class ActivityQuerySchema(Schema):
    """Filters of the activity lists (each list takes the ones that apply to it)."""

    repository = ma.fields.Integer(metadata={"description": "A repository id"})
    author = ma.fields.String(
        validate=ma.validate.Length(max=100),
        metadata={"description": "GitHub login (author or reviewer)"},
    )
    state = ma.fields.String(validate=ma.validate.Length(max=32))
    kind = ma.fields.String(validate=ma.validate.Length(max=32))
    branch = ma.fields.String(validate=ma.validate.Length(max=255))
    environment = ma.fields.String(validate=ma.validate.Length(max=255))
    event_type = ma.fields.String(validate=ma.validate.Length(max=64))
    status = ma.fields.String(validate=ma.validate.Length(max=16))
    start = ma.fields.AwareDateTime(data_key="from")
    end = ma.fields.AwareDateTime(data_key="to")
    sort = ma.fields.String(
        validate=ma.validate.Length(max=40),
        metadata={"description": "A field, `-field` for descending"},
    )

    @ma.post_load
    def upper_case_enums(self, data, **kwargs):
        for name in ("state", "kind", "status"):
            if name in data:
                data[name] = data[name].upper()
        return data


class CommitSchema(Schema):
    id = ma.fields.Integer()
    repository_id = ma.fields.Integer()
    sha = ma.fields.String()
    author_login = ma.fields.String(allow_none=True)
    author_name = ma.fields.String(allow_none=True)
    author_is_bot = ma.fields.Boolean()
    message = ma.fields.String()
    additions = ma.fields.Integer()
    deletions = ma.fields.Integer()
    files_changed = ma.fields.Integer()
    branch = ma.fields.String(allow_none=True)
    authored_at = ma.fields.DateTime()
    committed_at = ma.fields.DateTime()
    pushed_at = ma.fields.DateTime(allow_none=True)


class PullRequestSchema(Schema):
    id = ma.fields.Integer()
    repository_id = ma.fields.Integer()
    number = ma.fields.Integer()
    title = ma.fields.String()
    author_login = ma.fields.String(allow_none=True)
    author_is_bot = ma.fields.Boolean()
    state = ma.fields.String()
    draft = ma.fields.Boolean()
    base_ref = ma.fields.String()
    head_ref = ma.fields.String()
    additions = ma.fields.Integer()
    deletions = ma.fields.Integer()
    changed_files = ma.fields.Integer()
    commits_count = ma.fields.Integer()
    review_comments = ma.fields.Integer()
    comments = ma.fields.Integer()
    created_at = ma.fields.DateTime()
    ready_at = ma.fields.DateTime(allow_none=True)
    first_commit_at = ma.fields.DateTime(allow_none=True)
    first_review_at = ma.fields.DateTime(allow_none=True)
    approved_at = ma.fields.DateTime(allow_none=True)
    merged_at = ma.fields.DateTime(allow_none=True)
    closed_at = ma.fields.DateTime(allow_none=True)
    merge_commit_sha = ma.fields.String(allow_none=True)
    labels = ma.fields.List(
        ma.fields.String(),
        allow_none=True,
        metadata={"description": "Label names; null until GitHub sent them"},
    )
    milestone = ma.fields.String(allow_none=True, metadata={"description": "Milestone title"})


class ReviewSchema(Schema):
    id = ma.fields.Integer()
    pull_request_id = ma.fields.Integer()
    kind = ma.fields.String()
    github_id = ma.fields.Integer()
    reviewer_login = ma.fields.String(allow_none=True)
    reviewer_is_bot = ma.fields.Boolean()
    state = ma.fields.String(allow_none=True)
    commit_sha = ma.fields.String(allow_none=True)
    submitted_at = ma.fields.DateTime()


class IssueSchema(Schema):
    id = ma.fields.Integer()
    repository_id = ma.fields.Integer()
    number = ma.fields.Integer()
    title = ma.fields.String()
    author_login = ma.fields.String(allow_none=True)
    state = ma.fields.String()
    labels = ma.fields.List(ma.fields.String())
    created_at = ma.fields.DateTime()
    closed_at = ma.fields.DateTime(allow_none=True)


class DeploymentSchema(Schema):
    id = ma.fields.Integer()
    repository_id = ma.fields.Integer()
    kind = ma.fields.String()
    github_id = ma.fields.Integer()
    environment = ma.fields.String()
    sha = ma.fields.String()
    ref = ma.fields.String(allow_none=True)
    creator_login = ma.fields.String(allow_none=True)
    state = ma.fields.String()
    created_at = ma.fields.DateTime()
    finished_at = ma.fields.DateTime(allow_none=True)


class IncidentSchema(Schema):
    id = ma.fields.Integer()
    repository_id = ma.fields.Integer()
    kind = ma.fields.String()
    source_id = ma.fields.Integer()
    title = ma.fields.String()
    opened_at = ma.fields.DateTime()
    resolved_at = ma.fields.DateTime(allow_none=True)


class EventSchema(Schema):
    id = ma.fields.Integer()
    repository_id = ma.fields.Integer(allow_none=True)
    delivery_id = ma.fields.String()
    hook_id = ma.fields.String()
    event_type = ma.fields.String()
    action = ma.fields.String(allow_none=True)
    status = ma.fields.String()
    attempts = ma.fields.Integer()
    last_error = ma.fields.String(allow_none=True)
    received_at = ma.fields.DateTime()
    processed_at = ma.fields.DateTime(allow_none=True)
    payload = ma.fields.Dict()


class BackfillRequestSchema(Schema):
    since = ma.fields.AwareDateTime(
        load_default=None,
        allow_none=True,
        metadata={"description": "Import history from this time"},
    )


class BackfillStateSchema(Schema):
    state = ma.fields.String(allow_none=True)
    since = ma.fields.String(allow_none=True)
    started_at = ma.fields.String(allow_none=True)
    finished_at = ma.fields.String(allow_none=True)
    error = ma.fields.String(allow_none=True)
    pages = ma.fields.Integer()
    items = ma.fields.Integer()
    not_modified = ma.fields.Integer()
    rate_limit_remaining = ma.fields.Integer(allow_none=True)
    marks = ma.fields.Dict()
