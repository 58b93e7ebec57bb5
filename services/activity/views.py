from flask import g, request
from flask.views import MethodView
from flask_smorest import Blueprint

from services.activity import logic
from services.activity import schemas as s
from shared.models import Role
from shared.web.api import PeeweePage
from shared.web.auth import require

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
    repo.webhook_url = request.host_url.rstrip("/") + "/webhooks/github"
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
        (shown once) to paste into GitHub."""
        repo, secret = logic.connect_repository(g.org, body["full_name"], body["sensitivity"])
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
        """Change the sensitivity level (RESTRICTED: visible to ADMIN+ only)."""
        repo = logic.get_repository(g.org, repo_id, can_see_restricted=True)
        return logic.update_sensitivity(repo, body["sensitivity"])

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


@repositories.route("/<int:repo_id>/disconnect")
class Disconnect(MethodView):
    @require(scope="activity:write", role=Role.ADMIN)
    @repositories.response(200, s.RepositorySchema)
    def post(self, org, repo_id):
        """Stop accepting its webhooks; keep its data."""
        return logic.disconnect(logic.get_repository(g.org, repo_id, can_see_restricted=True))


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
        delivery = logic.receive_webhook(request.get_data(cache=False), request.headers)
        return delivery.body, delivery.status
