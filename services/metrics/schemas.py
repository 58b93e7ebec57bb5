import marshmallow as ma

from shared.web.api import Schema


class DailyRangeSchema(Schema):
    start = ma.fields.Date(data_key="from", load_default=None)
    end = ma.fields.Date(data_key="to", load_default=None)

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
