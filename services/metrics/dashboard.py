"""The dashboard page: a server-rendered shell (the signed-in user, their organizations, the
date range) whose one script reads the metrics JSON API with the browser's session cookie.
The charting library is served from this service's static folder: no CDN, works offline."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, current_app, redirect, render_template, request, url_for

from shared import crypto
from shared.http import ServiceUnavailable
from shared.models import Organization, Role, User, UserOrganization
from shared.permissions import ROLE_RANK
from shared.web.auth import MAX_TOKEN_LENGTH, SESSION_COOKIE

DEFAULT_RANGE_DAYS = 30

dashboard = Blueprint(
    "dashboard",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/dashboard/assets",
)


def _signed_in(org_ref: str | None) -> dict | None:
    """The session behind the browser's cookie as accounts' introspection answers it (with the
    user's membership of `org_ref`), or None when there is no active session."""
    token = request.cookies.get(SESSION_COOKIE)
    # Only a session is asked about: an API key here could only cost accounts a bcrypt.
    if not token or len(token) > MAX_TOKEN_LENGTH or not crypto.is_session_token(token):
        return None
    data = current_app.extensions["devmetrics"]["resolve_token"](token, org_ref)
    if not data.get("active") or data.get("kind") != "session":
        return None
    return data


def _organizations_of(user_id: int) -> list[Organization]:
    """The user's organizations, the one they have most say in first (personal ones last)."""
    organizations = list(
        Organization.select(Organization, UserOrganization.role.alias("role"))
        .join(UserOrganization)
        .where(UserOrganization.user == user_id)
        .objects()
    )
    return sorted(
        organizations, key=lambda o: (o.is_personal, -ROLE_RANK[Role(o.role)], o.name.lower())
    )


def _date_range() -> tuple[dt.date, dt.date]:
    """`from`/`to` of the query string; the last 30 days when absent or not dates."""
    try:
        end = dt.date.fromisoformat(request.args.get("to", ""))
    except ValueError:
        end = dt.datetime.now(dt.UTC).date()
    try:
        start = dt.date.fromisoformat(request.args.get("from", ""))
    except ValueError:
        start = end - dt.timedelta(days=DEFAULT_RANGE_DAYS - 1)
    return (start, end) if start <= end else (end, start)


def _message_page(status: int, title: str, message: str, *, sign_in: bool = False):
    accounts = current_app.extensions["devmetrics"]["settings"].public_url("accounts")
    html = render_template(
        "dashboard_message.html",
        title=title,
        message=message,
        sign_in_url=accounts + "/api/v1/auth/github/login" if sign_in else None,
    )
    return html, status, {"Cache-Control": "no-store"}


def _page(org_ref: str | None):
    try:
        session = _signed_in(org_ref)
    except ServiceUnavailable:
        return _message_page(503, "Try again shortly", "The sign-in service is not answering.")
    if session is None:
        return _message_page(
            401, "Sign in", "Sign in to see your organization's metrics.", sign_in=True
        )
    organizations = _organizations_of(session["user_id"])
    if org_ref is None:
        if not organizations:
            return _message_page(404, "No organization", "You are not a member of any yet.")
        return redirect(
            url_for("dashboard.org_dashboard", org=organizations[0].slug, **request.args)
        )
    if session["organization"] is None:  # not a member: as the API, "not found"
        return _message_page(404, "Not found", "No such organization among yours.")
    org = next(o for o in organizations if o.id == session["organization"]["id"])
    start, end = _date_range()
    html = render_template(
        "dashboard.html",
        org=org,
        organizations=organizations,
        user=User.get_by_id(session["user_id"]),
        role=session["role"],
        start=start.isoformat(),
        end=end.isoformat(),
    )
    return html, 200, {"Cache-Control": "no-store"}


@dashboard.get("/dashboard")
def own_dashboard():
    """The first of the signed-in user's organizations."""
    return _page(None)


@dashboard.get("/dashboard/<org>")
def org_dashboard(org):
    return _page(org)
