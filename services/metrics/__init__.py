"""Metrics service (port 8003): daily metrics, DORA keys, cycle time, AI reviews."""

from services.metrics import logic
from services.metrics.ai_review import logic as ai_review_logic
from services.metrics.dashboard import dashboard
from shared import messages
from shared.web.app import create_service_app


def create_app(config=None):
    from services.metrics.ai_review.views import ai_reviews
    from services.metrics.views import team_metrics

    app = create_service_app(
        "metrics",
        config,
        blueprints=[team_metrics, ai_reviews],
        message_handlers={
            messages.ActivityChanged.topic: logic.on_activity_changed,
            messages.AIReviewRequested.topic: ai_review_logic.on_review_requested,
        },
        description="Daily developer, team and repository metrics; DORA; AI reviews.",
    )
    app.register_blueprint(dashboard)  # an HTML page and its assets: not in the OpenAPI
    return app
