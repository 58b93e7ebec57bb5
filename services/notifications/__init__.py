"""Notifications service (port 8004): alert rules, deliveries, digests."""

from services.notifications import logic
from shared import messages
from shared.web.app import create_service_app


def create_app(config=None):
    from services.notifications.views import events, logs, rules

    return create_service_app(
        "notifications",
        config,
        blueprints=[rules, logs, events],
        message_handlers={messages.Event.topic: logic.on_event},
        description="Alert rules; Slack, webhook and e-mail delivery; digests.",
    )
