from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint, Page

from services.metrics import logic, periods
from services.metrics import schemas as s
from services.metrics.csv import columns_of, csv_response, wants_csv
from shared.models import Role
from shared.web.api import PeeweePage
from shared.web.auth import require

team_metrics = Blueprint(
    "team_metrics",
    __name__,
    url_prefix="/api/v1/orgs/<org>/metrics",
    description="Organization, developer and repository metrics; DORA; cycle time. Lists "
    "answer CSV (every row, no pagination) with `?format=csv` or `Accept: text/csv`.",
)

ROLLUP_PAGE_SIZE = 100  # a month of days, or two years of weeks, in one page


def _page_or_csv(rows, pagination_parameters, schema, filename, pager=Page):
    """The requested page for JSON; every row as CSV when CSV is asked for."""
    if wants_csv():
        rows = list(rows)
        pagination_parameters.item_count = len(rows)
        return csv_response(schema.dump(rows), columns_of(schema), filename)
    page = pager(rows, page_params=pagination_parameters)
    pagination_parameters.item_count = page.item_count
    return page.items


def _one_or_csv(result: dict, schema, filename):
    if wants_csv():
        return csv_response([schema.dump(result)], columns_of(schema), filename)
    return result


def _repository(args):
    if "repository" not in args:
        return None
    return periods.visible_repository(
        g.org, args["repository"], can_see_restricted=g.principal.allows("admin", Role.ADMIN)
    )


def _filename(kind, args) -> str:
    period = args["period"]
    return f"{g.org.slug}-{kind}-{period.start}-{period.end}.csv"


@team_metrics.route("/daily")
class DailyTeamMetrics(MethodView):
    @require(scope="metrics:read", role=Role.VIEWER)
    @team_metrics.arguments(s.DailyRangeSchema, location="query")
    @team_metrics.response(200, s.TeamMetricSchema(many=True))
    @team_metrics.doc(**s.CSV_ALTERNATIVE)
    @team_metrics.paginate()
    def get(self, args, org, pagination_parameters):
        """The organization's daily figures between `from` and `to` (inclusive)."""
        rows = logic.daily_team_metrics(g.org, args["start"], args["end"])
        name = f"{g.org.slug}-daily-{args['start'] or 'start'}-{args['end'] or 'end'}.csv"
        return _page_or_csv(
            rows, pagination_parameters, s.TeamMetricSchema(many=True), name, pager=PeeweePage
        )


@team_metrics.route("/team")
class TeamRollup(MethodView):
    @require(scope="metrics:read", role=Role.VIEWER)
    @team_metrics.arguments(s.RollupQuerySchema, location="query")
    @team_metrics.response(200, s.TeamRollupSchema(many=True))
    @team_metrics.doc(**s.CSV_ALTERNATIVE)
    @team_metrics.paginate(page_size=ROLLUP_PAGE_SIZE)
    def get(self, args, org, pagination_parameters):
        """The organization's (or one repository's) figures per day, ISO week or month of
        the range: every period, clipped to the range. Counters are sums of the days;
        `open_prs` is the value on the period's last day; medians, p90s and the DORA
        figures are recomputed from the pull requests, deployments and incidents."""
        rows = periods.team_rollup(g.org, args["period"], args["granularity"], _repository(args))
        return _page_or_csv(
            rows, pagination_parameters, s.TeamRollupSchema(many=True), _filename("team", args)
        )


@team_metrics.route("/developers")
class DeveloperRollup(MethodView):
    @require(scope="metrics:read", role=Role.VIEWER)
    @team_metrics.arguments(s.DeveloperQuerySchema, location="query")
    @team_metrics.response(200, s.DeveloperRollupSchema(many=True))
    @team_metrics.doc(**s.CSV_ALTERNATIVE)
    @team_metrics.paginate(page_size=ROLLUP_PAGE_SIZE)
    def get(self, args, org, pagination_parameters):
        """Each developer's figures per period (periods with activity only), bots left
        out; `cycle_time_median_s` from their pull requests merged in the period."""
        user = periods.developer_in(g.org, args["user"]) if "user" in args else None
        rows = periods.developer_rollup(g.org, args["period"], args["granularity"], user)
        return _page_or_csv(
            rows,
            pagination_parameters,
            s.DeveloperRollupSchema(many=True),
            _filename("developers", args),
        )


@team_metrics.route("/repositories")
class RepositoryRollup(MethodView):
    @require(scope="metrics:read", role=Role.VIEWER)
    @team_metrics.arguments(s.RollupQuerySchema, location="query")
    @team_metrics.response(200, s.RepositoryRollupSchema(many=True))
    @team_metrics.doc(**s.CSV_ALTERNATIVE)
    @team_metrics.paginate(page_size=ROLLUP_PAGE_SIZE)
    def get(self, args, org, pagination_parameters):
        """Each repository's figures per period (periods with daily rows only; RESTRICTED
        repositories for ADMIN+ only). `open_prs`/`open_issues` on the period's last day."""
        rows = periods.repository_rollup(
            g.org,
            args["period"],
            args["granularity"],
            _repository(args),
            can_see_restricted=g.principal.allows("admin", Role.ADMIN),
        )
        return _page_or_csv(
            rows,
            pagination_parameters,
            s.RepositoryRollupSchema(many=True),
            _filename("repositories", args),
        )


@team_metrics.route("/dora")
class DoraKeys(MethodView):
    @require(scope="metrics:read", role=Role.VIEWER)
    @team_metrics.arguments(s.RangeQuerySchema, location="query")
    @team_metrics.response(200, s.DoraSchema)
    @team_metrics.doc(**s.CSV_ALTERNATIVE)
    def get(self, args, org):
        """The DORA four keys over the range with their categories, and the same keys over
        the same number of days just before it (`previous`)."""
        result = periods.dora(g.org, args["period"], _repository(args))
        return _one_or_csv(result, s.DoraSchema(), _filename("dora", args))


@team_metrics.route("/cycle-time")
class CycleTime(MethodView):
    @require(scope="metrics:read", role=Role.VIEWER)
    @team_metrics.arguments(s.RangeQuerySchema, location="query")
    @team_metrics.response(200, s.CycleTimeSchema)
    @team_metrics.doc(**s.CSV_ALTERNATIVE)
    def get(self, args, org):
        """Median, p75 and p90 of each stage (coding, pickup, review, deploy) and of the
        whole cycle over the human pull requests merged in the range."""
        result = periods.cycle_time_breakdown(g.org, args["period"], _repository(args))
        return _one_or_csv(result, s.CycleTimeSchema(), _filename("cycle-time", args))
