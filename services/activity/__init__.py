"""Activity service (port 8002): repositories, webhooks, events, commits, PRs, issues."""

from shared.web.app import create_service_app


def create_app(config=None):
    from services.activity.views import activity, repositories, webhooks

    return create_service_app(
        "activity",
        config,
        blueprints=[repositories, activity, webhooks],
        description="Repositories, GitHub webhooks and the activity they become.",
    )
