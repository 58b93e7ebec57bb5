import datetime as dt

import marshmallow as ma

from services.metrics.periods import (
    DEVELOPER_COUNTERS,
    GRANULARITIES,
    REPOSITORY_COUNTERS,
    STAGES,
    TEAM_COUNTERS,
    Period,
)
from shared.web.api import Schema

# OpenAPI: the 200 answer of a list that also answers CSV (`?format=csv`, `Accept: text/csv`);
# merged by `blp.doc(**CSV_ALTERNATIVE)` into the JSON content the response decorator declares.
CSV_ALTERNATIVE = {
    "responses": {200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
}


def _repository_field():
    return ma.fields.Integer(
        validate=ma.validate.Range(1, 2**63 - 1),
        metadata={"description": "Only this repository (id)"},
    )


class DailyRangeSchema(Schema):
    start = ma.fields.Date(data_key="from", load_default=None)
    end = ma.fields.Date(data_key="to", load_default=None)
    repository = _repository_field()
    format = ma.fields.String(
        validate=ma.validate.OneOf(["json", "csv"]),
        metadata={"description": "`csv` for a CSV download (or send `Accept: text/csv`)"},
    )

    @ma.validates_schema
    def check_order(self, data, **kwargs):
        if data.get("start") and data.get("end") and data["start"] > data["end"]:
            raise ma.ValidationError("must not be after 'to'", field_name="from")


class TeamMetricSchema(Schema):
    date = ma.fields.Date()
    active_developers = ma.fields.Integer()
    commits = ma.fields.Integer()
    additions = ma.fields.Integer()
    deletions = ma.fields.Integer()
    prs_opened = ma.fields.Integer()
    prs_merged = ma.fields.Integer()
    reviews = ma.fields.Integer()
    issues_opened = ma.fields.Integer()
    issues_closed = ma.fields.Integer()
    deployments = ma.fields.Integer()
    cycle_time_median_s = ma.fields.Float(allow_none=True)
    review_comments = ma.fields.Integer()
    open_prs = ma.fields.Integer()
    failed_deployments = ma.fields.Integer()
    incidents_opened = ma.fields.Integer()
    incidents_resolved = ma.fields.Integer()
    cycle_time_p90_s = ma.fields.Float(allow_none=True)
    coding_time_median_s = ma.fields.Float(allow_none=True)
    coding_time_p90_s = ma.fields.Float(allow_none=True)
    pickup_time_median_s = ma.fields.Float(allow_none=True)
    pickup_time_p90_s = ma.fields.Float(allow_none=True)
    review_time_median_s = ma.fields.Float(allow_none=True)
    review_time_p90_s = ma.fields.Float(allow_none=True)
    deploy_time_median_s = ma.fields.Float(allow_none=True)
    deploy_time_p90_s = ma.fields.Float(allow_none=True)
    lead_time_median_s = ma.fields.Float(allow_none=True)
    change_failure_rate = ma.fields.Float(allow_none=True)
    time_to_restore_median_s = ma.fields.Float(allow_none=True)


# Period figures ----------------------------------------------------------------------

EARLIEST_DAY = dt.date(1970, 1, 1)
LATEST_DAY = dt.date(9998, 12, 31)
DEFAULT_RANGE_DAYS = 30
MAX_RANGE_DAYS = 3 * 366  # about three years


class RangeQuerySchema(Schema):
    """`from`/`to` (whole UTC days, both included): `to` defaults to today, `from` to 29
    days before `to`. `format=csv` (or `Accept: text/csv`) answers CSV."""

    start = ma.fields.Date(
        data_key="from",
        load_default=None,
        validate=ma.validate.Range(EARLIEST_DAY, LATEST_DAY),
        metadata={"description": "First day (YYYY-MM-DD, UTC); default: 29 days before `to`"},
    )
    end = ma.fields.Date(
        data_key="to",
        load_default=None,
        validate=ma.validate.Range(EARLIEST_DAY, LATEST_DAY),
        metadata={"description": "Last day, included (YYYY-MM-DD, UTC); default: today"},
    )
    repository = _repository_field()
    format = ma.fields.String(
        validate=ma.validate.OneOf(["json", "csv"]),
        metadata={"description": "`csv` for a CSV download (or send `Accept: text/csv`)"},
    )

    @ma.post_load
    def resolve_period(self, data, **kwargs):
        end = data.pop("end") or dt.datetime.now(dt.UTC).date()
        start = data.pop("start") or end - dt.timedelta(days=DEFAULT_RANGE_DAYS - 1)
        if start > end:
            raise ma.ValidationError("must not be after 'to'", field_name="from")
        if (end - start).days + 1 > MAX_RANGE_DAYS:
            raise ma.ValidationError(
                f"the range may cover at most {MAX_RANGE_DAYS} days", field_name="from"
            )
        data["period"] = Period(start, end)
        return data


class RollupQuerySchema(RangeQuerySchema):
    granularity = ma.fields.String(
        load_default="day",
        validate=ma.validate.OneOf(GRANULARITIES),
        metadata={"description": "day, week (ISO, Monday to Sunday) or month"},
    )


class DeveloperQuerySchema(RollupQuerySchema):
    user = ma.fields.String(
        validate=ma.validate.Length(1, 100),
        metadata={"description": "Only this developer: user id or GitHub login"},
    )


class PeriodSchema(Schema):
    start = ma.fields.Date(data_key="from")
    end = ma.fields.Date(data_key="to")
    days = ma.fields.Integer()


class PeriodFieldsSchema(Schema):
    period_start = ma.fields.Date(metadata={"description": "First day covered (clipped)"})
    period_end = ma.fields.Date(metadata={"description": "Last day covered (clipped)"})


def _counters(names):
    return {name: ma.fields.Integer() for name in names}


def _durations(names):
    return {name: ma.fields.Float(allow_none=True) for name in names}


TeamRollupSchema = PeriodFieldsSchema.from_dict(
    {
        **_counters(TEAM_COUNTERS),
        "open_prs": ma.fields.Integer(metadata={"description": "On the period's last day"}),
        "active_developers": ma.fields.Integer(
            metadata={"description": "Distinct humans who committed, opened or reviewed a PR"}
        ),
        **_durations(f"{s}_time_{q}_s" for s in STAGES for q in ("median", "p90")),
        "lead_time_median_s": ma.fields.Float(allow_none=True),
        "change_failure_rate": ma.fields.Float(allow_none=True),
        "time_to_restore_median_s": ma.fields.Float(allow_none=True),
    },
    name="TeamRollup",
)


class UserRefSchema(Schema):
    id = ma.fields.Integer(
        allow_none=True, metadata={"description": "null for an unlinked contributor"}
    )
    login = ma.fields.String(
        metadata={"description": "GitHub login; an unlinked contributor's e-mail name part"}
    )
    name = ma.fields.String(allow_none=True)


class RepositoryRefSchema(Schema):
    id = ma.fields.Integer()
    full_name = ma.fields.String()


DeveloperRollupSchema = PeriodFieldsSchema.from_dict(
    {
        "user": ma.fields.Nested(UserRefSchema),
        "unlinked": ma.fields.Boolean(
            metadata={
                "description": "A commit e-mail no user owns (GitHub never paired it with a "
                "username, nobody claimed it): `user.id` is null, `user.login` its name part"
            }
        ),
        **_counters(DEVELOPER_COUNTERS),
        **_durations(f"{s}_time_median_s" for s in ("cycle", "coding", "pickup", "review")),
    },
    name="DeveloperRollup",
)

RepositoryRollupSchema = PeriodFieldsSchema.from_dict(
    {
        "repository": ma.fields.Nested(RepositoryRefSchema),
        **_counters(REPOSITORY_COUNTERS),
        "open_prs": ma.fields.Integer(metadata={"description": "On the period's last day"}),
        "open_issues": ma.fields.Integer(metadata={"description": "On the period's last day"}),
        "contributors": ma.fields.Integer(),
        "cycle_time_median_s": ma.fields.Float(allow_none=True),
    },
    name="RepositoryRollup",
)


class LeadTimeSchema(Schema):
    median_s = ma.fields.Float(allow_none=True)
    pull_requests = ma.fields.Integer()
    category = ma.fields.String(allow_none=True)


class DeploymentFrequencySchema(Schema):
    deployments = ma.fields.Integer()
    per_day = ma.fields.Float()
    per_week = ma.fields.Float()
    category = ma.fields.String(allow_none=True)


class ChangeFailureRateSchema(Schema):
    failed = ma.fields.Integer()
    deployments = ma.fields.Integer()
    rate = ma.fields.Float(allow_none=True)
    category = ma.fields.String(allow_none=True)


class TimeToRestoreSchema(Schema):
    median_s = ma.fields.Float(allow_none=True)
    incidents = ma.fields.Integer()
    category = ma.fields.String(allow_none=True)


class DoraKeysSchema(Schema):
    period = ma.fields.Nested(PeriodSchema)
    lead_time = ma.fields.Nested(LeadTimeSchema)
    deployment_frequency = ma.fields.Nested(DeploymentFrequencySchema)
    change_failure_rate = ma.fields.Nested(ChangeFailureRateSchema)
    time_to_restore = ma.fields.Nested(TimeToRestoreSchema)


class DoraSchema(DoraKeysSchema):
    previous = ma.fields.Nested(DoraKeysSchema)


class StageSchema(Schema):
    median_s = ma.fields.Float(allow_none=True)
    p75_s = ma.fields.Float(allow_none=True)
    p90_s = ma.fields.Float(allow_none=True)
    count = ma.fields.Integer()


class StagesSchema(Schema):
    coding = ma.fields.Nested(StageSchema)
    pickup = ma.fields.Nested(StageSchema)
    review = ma.fields.Nested(StageSchema)
    deploy = ma.fields.Nested(StageSchema)
    cycle = ma.fields.Nested(StageSchema)


class CycleTimeSchema(Schema):
    period = ma.fields.Nested(PeriodSchema)
    pull_requests = ma.fields.Integer()
    stages = ma.fields.Nested(StagesSchema)
