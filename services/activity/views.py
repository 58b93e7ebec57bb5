from flask import current_app, g, request
from flask.views import MethodView
from flask_smorest import Blueprint

from services.activity import github_access, logic
from services.activity import schemas as s
from services.activity.backfill import progress_of
from shared.errors import Unauthorized
from shared.models import Role
from shared.web.api import PeeweePage
from shared.web.auth import require
from shared.web.limits import count_webhook_signature_failure

repositories = Blueprint(
    "repositories",
    __name__,
    url_prefix="/api/v1/orgs/<org>/repositories",
    description="Repositories connected to an organization",
)
webhooks = Blueprint(
    "webhooks",
    __name__,
    url_prefix="/webhooks",
    description="GitHub webhook deliveries (signed with the repository secret)",
)


def _sees_restricted() -> bool:
    return g.principal.allows("admin", Role.ADMIN)


def _with_secret(repo, secret):
    repo.webhook_secret = secret
    # Where GitHub must deliver: configuration (ACTIVITY_PUBLIC_URL), never the Host header.
    settings = current_app.extensions["devmetrics"]["settings"]
    repo.webhook_url = settings.public_url("activity") + "/webhooks/github"
    repo.content_type = "application/json"
    return repo


@repositories.route("")
class RepositoryList(MethodView):
    @require(scope="activity:read", role=Role.VIEWER)
    @repositories.response(200, s.RepositorySchema(many=True))
    @repositories.paginate(PeeweePage)
    def get(self, org):
        """The organization's repositories (RESTRICTED ones for ADMIN+ only), paginated."""
        return logic.visible_repositories(g.org, can_see_restricted=_sees_restricted())

    @require(scope="activity:write", role=Role.ADMIN)
    @repositories.arguments(s.RepositoryConnectSchema)
    @repositories.response(201, s.WebhookSecretSchema)
    def post(self, body, org):
        """Connect `owner/name` within the plan's limit; returns the webhook URL and secret
        (shown once) to paste into GitHub. GitHub is asked about it with your own GitHub
        token (for a key: its creator's), which must be able to read it; you become its
        token owner. `status` says whether GitHub confirmed it (webhooks are refused until
        then) and, if not, why."""
        repo, secret = logic.connect_repository(
            g.org, body["full_name"], body["sensitivity"], connector_id=g.principal.user_id
        )
        return _with_secret(repo, secret)


@repositories.route("/<int:repo_id>")
class RepositoryDetail(MethodView):
    @require(scope="activity:read", role=Role.VIEWER)
    @repositories.response(200, s.RepositorySchema)
    def get(self, org, repo_id):
        """One repository."""
        return logic.get_repository(g.org, repo_id, can_see_restricted=_sees_restricted())

    @require(scope="activity:write", role=Role.ADMIN)
    @repositories.arguments(s.RepositoryUpdateSchema)
    @repositories.response(200, s.RepositorySchema)
    def patch(self, body, org, repo_id):
        """Change the sensitivity level (RESTRICTED: visible to ADMIN+ only) or the
        settings (which workflows deploy, to which environment)."""
        repo = logic.get_repository(g.org, repo_id, can_see_restricted=True)
        if "sensitivity" in body:
            repo = logic.update_sensitivity(repo, body["sensitivity"])
        if "settings" in body:
            repo = logic.update_settings(repo, body["settings"])
        return repo

    @require(scope="activity:write", role=Role.ADMIN)
    @repositories.response(204)
    def delete(self, org, repo_id):
        """Delete the repository and all its activity."""
        logic.delete_repository(logic.get_repository(g.org, repo_id, can_see_restricted=True))


@repositories.route("/<int:repo_id>/rotate-secret")
class RotateSecret(MethodView):
    @require(scope="activity:write", role=Role.ADMIN)
    @repositories.response(200, s.WebhookSecretSchema)
    def post(self, org, repo_id):
        """A new webhook secret (shown once); the old one stops working at once."""
        repo = logic.get_repository(g.org, repo_id, can_see_restricted=True)
        return _with_secret(repo, logic.rotate_secret(repo))


@repositories.route("/<int:repo_id>/verify")
class Verify(MethodView):
    @require(scope="activity:write", role=Role.ADMIN, api_keys=False)
    @repositories.response(200, s.RepositorySchema)
    def post(self, org, repo_id):
        """Verify the repository with your own GitHub token now and become its token owner
        (for one that is pending verification or needs a new owner token)."""
        repo = logic.get_repository(g.org, repo_id, can_see_restricted=True)
        github_access.verify_with(repo, g.principal.user_id)
        return logic.get_repository(g.org, repo_id, can_see_restricted=True)


@repositories.route("/<int:repo_id>/disconnect")
class Disconnect(MethodView):
    @require(scope="activity:write", role=Role.ADMIN)
    @repositories.response(200, s.RepositorySchema)
    def post(self, org, repo_id):
        """Stop accepting its webhooks; keep its data."""
        return logic.disconnect(logic.get_repository(g.org, repo_id, can_see_restricted=True))


@repositories.route("/<int:repo_id>/backfill")
class BackfillRun(MethodView):
    @require(scope="activity:read", role=Role.VIEWER)
    @repositories.response(200, s.BackfillStateSchema)
    def get(self, org, repo_id):
        """Progress of the repository's backfill: state, pages, items, rate limit left."""
        repo = logic.get_repository(g.org, repo_id, can_see_restricted=_sees_restricted())
        return progress_of(repo)

    @require(scope="activity:write", role=Role.ADMIN)
    @repositories.arguments(s.BackfillRequestSchema)
    @repositories.response(202, s.BackfillStateSchema)
    def post(self, body, org, repo_id):
        """Queue a backfill from the GitHub API (the `backfill` worker runs it)."""
        repo = logic.get_repository(g.org, repo_id, can_see_restricted=True)
        return logic.queue_backfill(repo, body["since"])


# Answered by services/activity/webhook_wsgi.py in front of Flask (same logic, same answers);
# this view documents the route and answers when WEBHOOK_FAST_PATH is off.
@webhooks.route("/github")
class GitHubWebhook(MethodView):
    @webhooks.doc(
        security=[],
        parameters=[
            {
                "in": "header",
                "name": "X-Hub-Signature-256",
                "required": True,
                "schema": {"type": "string"},
            },
            {
                "in": "header",
                "name": "X-GitHub-Event",
                "required": True,
                "schema": {"type": "string"},
            },
            {
                "in": "header",
                "name": "X-GitHub-Delivery",
                "required": True,
                "schema": {"type": "string"},
            },
        ],
    )
    @webhooks.response(202, s.DeliveryResultSchema)
    @webhooks.alt_response(200, schema=s.DeliveryResultSchema, description="ping or redelivery")
    def post(self):
        """Receive a GitHub delivery: verified, stored durably, then answered (202)."""
        try:
            delivery = logic.receive_webhook(request.get_data(cache=False), request.headers)
        except Unauthorized:
            # Counted only once the signature failed: a valid delivery is never throttled.
            count_webhook_signature_failure()
            raise
        return delivery.body, delivery.status


activity = Blueprint(
    "activity",
    __name__,
    url_prefix="/api/v1/orgs/<org>",
    description="What happened: commits, pull requests, reviews, issues, deployments, "
    "incidents and raw events (filter by `repository` for one repository)",
)


def _list_route(path: str, kind: str, schema, *, role=Role.VIEWER, scope="activity:read"):
    class ActivityList(MethodView):
        @require(scope=scope, role=role)
        @activity.arguments(s.ActivityQuerySchema, location="query")
        @activity.response(200, schema(many=True))
        @activity.paginate(PeeweePage)
        def get(self, args, org):
            return logic.activity_listing(kind, g.org, args, can_see_restricted=_sees_restricted())

    ActivityList.get.__doc__ = f"The organization's {kind.replace('-', ' ')}, newest first."
    ActivityList.__name__ = f"{kind.title().replace('-', '')}List"
    activity.route(path)(ActivityList)


_list_route("/commits", "commits", s.CommitSchema)
_list_route("/pull-requests", "pull-requests", s.PullRequestSchema)
_list_route("/reviews", "reviews", s.ReviewSchema)
_list_route("/issues", "issues", s.IssueSchema)
_list_route("/deployments", "deployments", s.DeploymentSchema)
_list_route("/incidents", "incidents", s.IncidentSchema)
# Raw payloads can hold anything a repository contains: ADMIN+ only.
_list_route("/events", "events", s.EventSchema, role=Role.ADMIN, scope="admin")
