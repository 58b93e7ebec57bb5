from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint, Page

from services.metrics import periods
from services.metrics import schemas as s
from services.metrics.csv import MAX_ROWS, export, wants_csv
from services.metrics.scope import developer_in, scope_for
from shared.models import Role
from shared.web.auth import require

team_metrics = Blueprint(
    "team_metrics",
    __name__,
    url_prefix="/api/v1/orgs/<org>/metrics",
    description="Organization, developer and repository metrics; DORA; cycle time. Figures "
    "from RESTRICTED repositories are for ADMIN+ only, org-wide ones included. Lists "
    f"answer CSV (every row, no pagination; at most {MAX_ROWS:,} rows, and a separate, "
    "smaller rate limit) with `?format=csv` or `Accept: text/csv`.",
)

ROLLUP_PAGE_SIZE = 100  # a month of days, or two years of weeks, in one page
# The query parameters that make each kind of export smaller (the first is named by the 422).
NARROW_RANGE = ("from", "to")
NARROW_ROLLUP = ("from", "to", "granularity", "repository")


def _page_or_csv(make_rows, pagination_parameters, schema, filename, narrow):
    """The requested page of `make_rows()` for JSON; every row, streamed, when CSV is
    asked for (the rows are made once the export is allowed to run: see csv.export)."""
    if wants_csv():

        def counted():
            rows = make_rows()
            pagination_parameters.item_count = len(rows)
            return rows

        return export(counted, schema, filename, narrow)
    page = Page(make_rows(), page_params=pagination_parameters)
    pagination_parameters.item_count = page.item_count
    return page.items


def _one_or_csv(make_result, schema, filename):
    if wants_csv():
        return export(lambda: [make_result()], schema, filename, NARROW_RANGE)
    return make_result()


def _scope(args):
    """The caller's repositories: `repository` alone (404 when unknown, or RESTRICTED below
    ADMIN), else all the organization's that the caller may see."""
    return scope_for(
        g.org, args.get("repository"), can_see_restricted=g.principal.allows("admin", Role.ADMIN)
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
        """The organization's (or one repository's) daily figures between `from` and `to`
        (inclusive), for each day with a stored row."""
        scope = _scope(args)
        name = f"{g.org.slug}-daily-{args['start'] or 'start'}-{args['end'] or 'end'}.csv"
        return _page_or_csv(
            lambda: periods.daily_rows(scope, args["start"], args["end"]),
            pagination_parameters,
            s.TeamMetricSchema(many=True),
            name,
            NARROW_RANGE,
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
        scope = _scope(args)
        return _page_or_csv(
            lambda: periods.team_rollup(scope, args["period"], args["granularity"]),
            pagination_parameters,
            s.TeamRollupSchema(many=True),
            _filename("team", args),
            NARROW_ROLLUP,
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
        out; `cycle_time_median_s` from their pull requests merged in the period. With
        `repository`, or for a caller below ADMIN in an organization with RESTRICTED
        repositories, counted from the activity of those repositories only."""
        scope = _scope(args)
        user = developer_in(scope, args["user"]) if "user" in args else None
        return _page_or_csv(
            lambda: periods.developer_rollup(scope, args["period"], args["granularity"], user),
            pagination_parameters,
            s.DeveloperRollupSchema(many=True),
            _filename("developers", args),
            (*NARROW_ROLLUP, "user"),
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
        scope = _scope(args)
        return _page_or_csv(
            lambda: periods.repository_rollup(scope, args["period"], args["granularity"]),
            pagination_parameters,
            s.RepositoryRollupSchema(many=True),
            _filename("repositories", args),
            NARROW_ROLLUP,
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
        scope = _scope(args)
        return _one_or_csv(
            lambda: periods.dora(scope, args["period"]), s.DoraSchema(), _filename("dora", args)
        )


@team_metrics.route("/cycle-time")
class CycleTime(MethodView):
    @require(scope="metrics:read", role=Role.VIEWER)
    @team_metrics.arguments(s.RangeQuerySchema, location="query")
    @team_metrics.response(200, s.CycleTimeSchema)
    @team_metrics.doc(**s.CSV_ALTERNATIVE)
    def get(self, args, org):
        """Median, p75 and p90 of each stage (coding, pickup, review, deploy) and of the
        whole cycle over the human pull requests merged in the range."""
        scope = _scope(args)
        return _one_or_csv(
            lambda: periods.cycle_time_breakdown(scope, args["period"]),
            s.CycleTimeSchema(),
            _filename("cycle-time", args),
        )
