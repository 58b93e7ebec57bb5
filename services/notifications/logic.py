"""Notifications business logic (no Flask here)."""

from shared.models import NotificationRule


def rules_of(organization):
    return (
        NotificationRule.select()
        .where(NotificationRule.organization == organization)
        .order_by(NotificationRule.name)
    )
