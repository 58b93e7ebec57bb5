from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from services.notifications import logic
from services.notifications import schemas as s
from shared.messages import Event
from shared.models import Role, User
from shared.outbox import MessageRejected
from shared.web.api import PeeweePage
from shared.web.auth import internal_only, require
from shared.web.inbox import apply_once

rules = Blueprint(
    "notification_rules",
    __name__,
    url_prefix="/api/v1/orgs/<org>/notification-rules",
    description="Alert rules: which events notify whom, over which channel",
)
logs = Blueprint(
    "notification_logs",
    __name__,
    url_prefix="/api/v1/orgs/<org>/notification-logs",
    description="The delivery log: every notification, its attempts and outcome",
)
events = Blueprint(
    "notification_events",
    __name__,
    url_prefix="/internal/v1",
    description="Internal: events to match against alert rules (service token only)",
)

READ = {"scope": "notifications:read", "role": Role.VIEWER}
WRITE = {"scope": "notifications:write", "role": Role.ADMIN}


def _with_secret(rule, secret):
    rule.secret = secret
    return rule


def _creator():
    user_id = g.principal.user_id
    return User.get_or_none(User.id == user_id) if user_id else None


def _readable(query):
    """Below ADMIN, payloads about CONFIDENTIAL/RESTRICTED repositories lose their free text
    (as the messages themselves do)."""
    if g.principal.allows("admin", Role.ADMIN):
        return query
    from services.notifications.channels import redact

    return [_redacted(log, redact) for log in query]


def _redacted(log, redact):
    log.payload = {**(log.payload or {}), "data": redact((log.payload or {}).get("data") or {})}
    return log


@rules.route("")
class RuleList(MethodView):
    @require(**READ)
    @rules.response(200, s.RuleSchema(many=True))
    @rules.paginate(PeeweePage)
    def get(self, org):
        """The organization's notification rules (URL targets show only their host)."""
        return logic.rules_of(g.org)

    @require(**WRITE)
    @rules.arguments(s.RuleCreateSchema)
    @rules.response(201, s.RuleWithSecretSchema)
    def post(self, body, org):
        """Create a rule. Conditions and parameters are checked against the trigger now
        (422 naming unknown fields and operators). A WEBHOOK rule's signing secret is in
        this response only."""
        rule, secret = logic.create_rule(g.org, body, created_by=_creator())
        return _with_secret(rule, secret)


@rules.route("/<int:rule_id>")
class RuleDetail(MethodView):
    @require(**READ)
    @rules.response(200, s.RuleSchema)
    def get(self, org, rule_id):
        """One rule."""
        return logic.get_rule(g.org, rule_id)

    @require(**WRITE)
    @rules.arguments(s.RuleUpdateSchema)
    @rules.response(200, s.RuleWithSecretSchema)
    def patch(self, body, org, rule_id):
        """Change a rule; the changed rule is validated as a whole. Becoming a WEBHOOK rule
        creates a signing secret, shown in this response only."""
        rule, secret = logic.update_rule(logic.get_rule(g.org, rule_id), body)
        return _with_secret(rule, secret)

    @require(**WRITE)
    @rules.response(204)
    def delete(self, org, rule_id):
        """Delete a rule and its delivery log."""
        logic.delete_rule(logic.get_rule(g.org, rule_id))


@rules.route("/<int:rule_id>/rotate-secret")
class RuleSecret(MethodView):
    @require(**WRITE)
    @rules.response(200, s.SecretSchema)
    def post(self, org, rule_id):
        """A new signing secret for a WEBHOOK rule (shown once); the old one stops now."""
        rule = logic.get_rule(g.org, rule_id)
        return {"id": rule.id, "secret": logic.rotate_secret(rule)}


@rules.route("/<int:rule_id>/test")
class RuleTest(MethodView):
    @require(**WRITE)
    @rules.response(200, s.TestOutcomeSchema)
    def post(self, org, rule_id):
        """Send a sample message of the rule's trigger now and return the outcome (nothing
        is written to the delivery log)."""
        return logic.send_test(logic.get_rule(g.org, rule_id))


@rules.route("/<int:rule_id>/logs")
class RuleLogs(MethodView):
    @require(**READ)
    @rules.arguments(s.LogQuerySchema, location="query")
    @rules.response(200, s.LogSchema(many=True))
    @rules.paginate(PeeweePage)
    def get(self, args, org, rule_id):
        """The rule's deliveries, newest first; filters status, channel, from, to."""
        query = logic.logs_of(g.org, args, rule=logic.get_rule(g.org, rule_id))
        return _paged_readable(query)


def _paged_readable(query):
    if g.principal.allows("admin", Role.ADMIN):
        return query
    return _RedactedQuery(query)


class _RedactedQuery:
    """A query whose pages come out redacted (PeeweePage calls paginate and count)."""

    def __init__(self, query):
        self.query = query

    def paginate(self, page, size):
        return _readable(self.query.paginate(page, size))

    def count(self):
        return self.query.count()


@logs.route("")
class LogList(MethodView):
    @require(**READ)
    @logs.arguments(s.LogQuerySchema, location="query")
    @logs.response(200, s.LogSchema(many=True))
    @logs.paginate(PeeweePage)
    def get(self, args, org):
        """Every delivery of the organization, newest first; filters status, channel, rule,
        from, to (creation time, from inclusive, to exclusive)."""
        return _paged_readable(logic.logs_of(g.org, args))


@logs.route("/<int:log_id>")
class LogDetail(MethodView):
    @require(**READ)
    @logs.response(200, s.LogSchema)
    def get(self, org, log_id):
        """One delivery."""
        return _readable([logic.get_log(g.org, log_id)])[0]


@logs.route("/<int:log_id>/retry")
class LogRetry(MethodView):
    @require(**WRITE)
    @logs.response(200, s.LogSchema)
    def post(self, org, log_id):
        """Deliver a FAILED or DEAD notification again (PENDING now, attempts from zero);
        409 for any other state."""
        return logic.retry_log(logic.get_log(g.org, log_id))


@events.route("/events")
class EventIn(MethodView):
    decorators = [internal_only]

    @events.arguments(s.EventInSchema)
    @events.response(200, s.EventResultSchema)
    def post(self, body):
        """An event {id, type, organization_id, key, data}: matched against the enabled rules
        of the organization, one delivery per match; the same message id is applied once
        (shared with /internal/v1/messages, topic "event")."""
        message_id = body.pop("id")
        created = []

        def handle(payload, mid):
            created.extend(logic.on_event(payload, mid))

        try:
            status = apply_once("notifications", message_id, Event.topic, handle, body)
        except MessageRejected as exc:
            abort(422, message=str(exc), errors={"json": {"type": [str(exc)]}})
        return {"id": message_id, "status": status, "logs": [log.id for log in created]}
