"""Activity service (port 8002): repositories, webhooks, events, commits, PRs, issues."""

from shared.web.app import create_service_app


def create_app(config=None):
    from services.activity.views import repositories

    return create_service_app(
        "activity",
        config,
        blueprints=[repositories],
        description="Repositories, GitHub webhooks and the activity they become.",
    )
