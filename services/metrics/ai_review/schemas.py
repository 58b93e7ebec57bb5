import marshmallow as ma

from shared.models import RiskLevel
from shared.web.api import Schema


class DayRangeSchema(Schema):
    start = ma.fields.Date(data_key="from", load_default=None)
    end = ma.fields.Date(data_key="to", load_default=None)

    @ma.validates_schema
    def check_order(self, data, **kwargs):
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise ma.ValidationError("must not be after 'to'", field_name="from")


class ReviewQuerySchema(DayRangeSchema):
    pull_request = ma.fields.Integer(
        load_default=None, validate=ma.validate.Range(min=1, max=2**63 - 1)
    )
    repository = ma.fields.Integer(
        load_default=None, validate=ma.validate.Range(min=1, max=2**63 - 1)
    )
    risk_level = ma.fields.String(
        load_default=None, validate=ma.validate.OneOf([level.value for level in RiskLevel])
    )
    provider = ma.fields.String(load_default=None, validate=ma.validate.Length(max=64))
    format = ma.fields.String(
        load_default=None,
        validate=ma.validate.OneOf(["json", "csv"]),
        metadata={"description": "csv for a CSV download (or send Accept: text/csv)"},
    )


class ReviewedPullRequestSchema(Schema):
    id = ma.fields.Integer()
    number = ma.fields.Integer()
    title = ma.fields.String()
    author_login = ma.fields.String(allow_none=True)
    repository_id = ma.fields.Integer()
    repository = ma.fields.Function(lambda pr: pr.repository.full_name)


class FindingSchema(Schema):
    feature = ma.fields.String()
    value = ma.fields.Raw(allow_none=True)
    points = ma.fields.Integer()
    severity = ma.fields.String()
    message = ma.fields.String()
    file = ma.fields.String()
    line = ma.fields.Integer()
    files = ma.fields.List(ma.fields.String())
    source = ma.fields.String()


class AIReviewSchema(Schema):
    id = ma.fields.Integer()
    pull_request = ma.fields.Nested(ReviewedPullRequestSchema)
    head_sha = ma.fields.String()
    provider = ma.fields.String()
    model = ma.fields.String(allow_none=True)
    risk_score = ma.fields.Integer()
    risk_level = ma.fields.String()
    summary = ma.fields.String()
    findings = ma.fields.List(ma.fields.Nested(FindingSchema))
    features = ma.fields.Dict()
    created_at = ma.fields.DateTime()


# The CSV export leaves out the nested findings and features (see the JSON for those).
CSV_COLUMNS = [
    "id",
    "created_at",
    "pull_request.id",
    "pull_request.number",
    "pull_request.title",
    "pull_request.repository",
    "head_sha",
    "provider",
    "model",
    "risk_score",
    "risk_level",
    "summary",
]


class RiskiestSchema(Schema):
    pull_request_id = ma.fields.Integer()
    number = ma.fields.Integer()
    title = ma.fields.String()
    repository = ma.fields.String()
    risk_score = ma.fields.Integer()
    risk_level = ma.fields.String()


class ByLevelSchema(Schema):
    LOW = ma.fields.Integer()
    MEDIUM = ma.fields.Integer()
    HIGH = ma.fields.Integer()
    CRITICAL = ma.fields.Integer()


class RiskSummarySchema(Schema):
    by_level = ma.fields.Nested(ByLevelSchema)
    reviews = ma.fields.Integer()
    average_score = ma.fields.Float(allow_none=True)
    riskiest = ma.fields.List(ma.fields.Nested(RiskiestSchema))
