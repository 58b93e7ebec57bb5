"""Activity service (port 8002): repositories, webhooks, events, commits, PRs, issues."""

from shared.web.app import create_service_app


def create_app(config=None):
    from services.activity import authors
    from services.activity.views import activity, repositories, webhooks
    from services.activity.webhook_wsgi import WebhookFastPath

    app = create_service_app(
        "activity",
        config,
        blueprints=[repositories, activity, webhooks],
        # A person's e-mails or claims changed (accounts): their commits are re-attributed.
        message_handlers={authors.TOPIC: authors.on_user_emails_changed},
        description="Repositories, GitHub webhooks and the activity they become.",
    )
    # `POST /webhooks/github` answered by a lean WSGI layer (same logic and answers as the
    # view, a fraction of the framework cost); WEBHOOK_FAST_PATH=False leaves it to Flask.
    if app.config.get("WEBHOOK_FAST_PATH", True):
        app.wsgi_app = WebhookFastPath(app.wsgi_app, app)
    return app
