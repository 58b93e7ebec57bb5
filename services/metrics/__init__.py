"""Metrics service (port 8003): daily metrics, DORA keys, cycle time, AI reviews."""

from services.metrics import logic
from shared.web.app import create_service_app


def create_app(config=None):
    from services.metrics.views import team_metrics

    return create_service_app(
        "metrics",
        config,
        blueprints=[team_metrics],
        message_handlers={"activity.changed": logic.on_activity_changed},
        description="Daily developer, team and repository metrics; DORA; AI reviews.",
    )
