from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint

from services.metrics import logic
from services.metrics.schemas import DailyRangeSchema, TeamMetricSchema
from shared.models import Role
from shared.web.api import PeeweePage
from shared.web.auth import require

team_metrics = Blueprint(
    "team_metrics",
    __name__,
    url_prefix="/api/v1/orgs/<org>/metrics",
    description="Daily organization metrics",
)


@team_metrics.route("/daily")
class DailyTeamMetrics(MethodView):
    @require(scope="metrics:read", role=Role.VIEWER)
    @team_metrics.arguments(DailyRangeSchema, location="query")
    @team_metrics.response(200, TeamMetricSchema(many=True))
    @team_metrics.paginate(PeeweePage)
    def get(self, args, org):
        """The organization's daily figures between `from` and `to` (inclusive)."""
        return logic.daily_team_metrics(g.org, args["start"], args["end"])
