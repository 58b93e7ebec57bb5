from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint

from services.accounts import logic
from services.accounts.schemas import IntrospectRequestSchema, IntrospectResponseSchema
from shared.web.api import OrgSchema
from shared.web.auth import internal_only, require

orgs = Blueprint("orgs", __name__, url_prefix="/api/v1/orgs", description="Organizations")
internal = Blueprint(
    "accounts_internal",
    __name__,
    url_prefix="/internal/v1",
    description="Internal: token introspection for the other services (service token only).",
)


@orgs.route("/<org>")
class OrganizationDetail(MethodView):
    @require()
    @orgs.response(200, OrgSchema)
    def get(self, org):
        """The organization the caller belongs to."""
        return g.org


@internal.route("/auth/introspect")
class Introspect(MethodView):
    decorators = [internal_only]

    @internal.arguments(IntrospectRequestSchema)
    @internal.response(200, IntrospectResponseSchema)
    def post(self, body):
        """Resolve a bearer token: active or not, organization, user, role, scopes."""
        return logic.introspect(body["token"], body["org"])
