"""`/api/v1/orgs/<org>/ai-reviews...`: AI reviews per pull request and the org's risk summary."""

from functools import wraps

from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint

from services.metrics.ai_review import logic
from services.metrics.ai_review import schemas as s
from services.metrics.csv import export, wants_csv
from services.metrics.schemas import CSV_ALTERNATIVE
from shared.models import Role
from shared.web.api import PeeweePage
from shared.web.auth import require

ai_reviews = Blueprint(
    "ai_reviews",
    __name__,
    url_prefix="/api/v1/orgs/<org>",
    description="AI risk reviews of pull requests (one per pull request, head commit and "
    "provider) and the organization's risk summary",
)


def _sees_restricted() -> bool:
    return g.principal.allows("admin", Role.ADMIN)


def csv_or_json(query_of, filename: str):
    """`?format=csv` or `Accept: text/csv`: every matching row as CSV (streamed; at most
    the export limit of rows, a 422 past it) instead of the paginated JSON page."""

    def decorator(view):
        @wraps(view)
        def wrapper(self, args, **kwargs):
            if wants_csv():
                return export(
                    lambda: logic.ExportRows(query_of(args, **kwargs)),
                    s.AIReviewSchema(many=True),
                    f"{filename}-{g.org.slug}",
                    ("from", "to", "repository", "risk_level", "provider"),
                    columns=s.CSV_COLUMNS,
                )
            return view(self, args, **kwargs)

        return wrapper

    return decorator


def _org_reviews(args, org):
    return logic.list_reviews(g.org, args, can_see_restricted=_sees_restricted())


def _pull_request_reviews(args, org, pr_id):
    return logic.reviews_of_pull_request(g.org, pr_id, args, can_see_restricted=_sees_restricted())


@ai_reviews.route("/ai-reviews")
class AIReviewList(MethodView):
    @require(scope="metrics:read", role=Role.VIEWER)
    @ai_reviews.arguments(s.ReviewQuerySchema, location="query")
    @csv_or_json(_org_reviews, "ai-reviews")
    @ai_reviews.response(200, s.AIReviewSchema(many=True))
    @ai_reviews.doc(**CSV_ALTERNATIVE)
    @ai_reviews.paginate(PeeweePage)
    def get(self, args, org):
        """The organization's AI reviews, newest first; filters `pull_request`,
        `repository` (ids), `risk_level`, `provider`, `from`/`to` (days of `created_at`)."""
        return _org_reviews(args, org)


@ai_reviews.route("/ai-reviews/summary")
class AIReviewSummary(MethodView):
    @require(scope="metrics:read", role=Role.VIEWER)
    @ai_reviews.arguments(s.DayRangeSchema, location="query")
    @ai_reviews.response(200, s.RiskSummarySchema)
    def get(self, args, org):
        """Risk by level, count and average score over the newest review of each pull request
        reviewed between `from` and `to` (inclusive days), and the five riskiest."""
        return logic.risk_summary(
            g.org, args["start"], args["end"], can_see_restricted=_sees_restricted()
        )


@ai_reviews.route("/pull-requests/<int:pr_id>/ai-reviews")
class PullRequestAIReviews(MethodView):
    @require(scope="metrics:read", role=Role.VIEWER)
    @ai_reviews.arguments(s.DayRangeSchema, location="query")
    @csv_or_json(_pull_request_reviews, "ai-reviews-pr")
    @ai_reviews.response(200, s.AIReviewSchema(many=True))
    @ai_reviews.doc(**CSV_ALTERNATIVE)
    @ai_reviews.paginate(PeeweePage)
    def get(self, args, org, pr_id):
        """One pull request's AI reviews, newest first (404 when it is not the org's);
        `from`/`to` filter on the days of `created_at`."""
        return _pull_request_reviews(args, org, pr_id)
