from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint

from services.notifications import logic
from services.notifications.schemas import NotificationRuleSchema
from shared.models import Role
from shared.web.api import PeeweePage
from shared.web.auth import require

rules = Blueprint(
    "notification_rules",
    __name__,
    url_prefix="/api/v1/orgs/<org>/notification-rules",
    description="Alert rules",
)


@rules.route("")
class RuleList(MethodView):
    @require(scope="notifications:read", role=Role.VIEWER)
    @rules.response(200, NotificationRuleSchema(many=True))
    @rules.paginate(PeeweePage)
    def get(self, org):
        """The organization's notification rules (targets and secrets are not shown)."""
        return logic.rules_of(g.org)
