from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint

from services.activity import logic
from services.activity.schemas import RepositorySchema
from shared.models import Role
from shared.web.api import PeeweePage
from shared.web.auth import require

repositories = Blueprint(
    "repositories",
    __name__,
    url_prefix="/api/v1/orgs/<org>/repositories",
    description="Repositories connected to an organization",
)


@repositories.route("")
class RepositoryList(MethodView):
    @require(scope="activity:read", role=Role.VIEWER)
    @repositories.response(200, RepositorySchema(many=True))
    @repositories.paginate(PeeweePage)
    def get(self, org):
        """The organization's repositories (RESTRICTED ones for ADMIN+ only), paginated."""
        principal = g.principal
        can_see_restricted = principal.allows("admin", Role.ADMIN)
        return logic.visible_repositories(g.org, can_see_restricted=can_see_restricted)
