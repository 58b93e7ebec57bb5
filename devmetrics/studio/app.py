"""The Studio Flask app: one password (STUDIO_PASSWORD), a session cookie, every table.

Failed sign-ins are limited per client address (STUDIO_SIGN_IN_LIMIT, see signin.py), and
after signing in the browser goes only to a path on this site."""

from __future__ import annotations

import hmac
import secrets

from flask import Flask, redirect, render_template_string, request, session, url_for
from flask_admin import Admin, AdminIndexView, expose

from devmetrics.studio.signin import DEFAULT_SIGN_IN_LIMIT, FailedSignIns, local_path
from devmetrics.studio.views import StudioModelView, link_relations
from shared.database import db
from shared.models import MODELS

LOGIN_PAGE = """<!doctype html>
<title>DevMetrics Studio: sign in</title>
<h1>DevMetrics Studio</h1>
{% if error %}<p role="alert">{{ error }}</p>{% endif %}
<form method="post">
  <label>Password <input type="password" name="password" autofocus></label>
  <input type="hidden" name="csrf" value="{{ csrf }}">
  <button type="submit">Sign in</button>
</form>
"""


def _password_ok(expected_csrf: str | None, given: str, password: str) -> bool:
    # bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500)
    sent_csrf = request.form.get("csrf", "").encode()
    csrf_ok = expected_csrf and hmac.compare_digest(expected_csrf.encode(), sent_csrf)
    return bool(csrf_ok) and hmac.compare_digest(given.encode(), password.encode())


class StudioIndexView(AdminIndexView):
    def is_accessible(self):
        return bool(session.get("studio"))

    def inaccessible_callback(self, name, **kwargs):
        return redirect(url_for("studio_login", next=request.full_path))

    @expose("/")
    def index(self):
        return redirect(url_for("organization.index_view"))


def create_studio_app(password: str, sign_in_limit: str = DEFAULT_SIGN_IN_LIMIT) -> Flask:
    if not password:
        raise ValueError("STUDIO_PASSWORD must be set")
    failures = FailedSignIns(sign_in_limit)
    app = Flask(__name__, template_folder="templates")
    # A fresh key per process: restarting Studio signs everyone out, which is fine locally.
    app.secret_key = secrets.token_bytes(32)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict")

    @app.route("/login", methods=["GET", "POST"], endpoint="studio_login")
    def login():
        error, status, headers = None, 200, {}
        if request.method == "POST":
            expected_csrf = session.pop("login_csrf", None)
            given = request.form.get("password", "")
            address = request.remote_addr or "unknown"
            with failures.lock:
                wait = failures.retry_after(address)
                signed_in = wait is None and _password_ok(expected_csrf, given, password)
                if wait is None and not signed_in:
                    failures.failed(address)
            if signed_in:
                session.clear()
                session["studio"] = True
                return redirect(local_path(request.args.get("next")))
            if wait is not None:
                error = f"Too many failed sign-ins from this address: try again in {wait} s."
                status, headers = 429, {"Retry-After": str(wait)}
            else:
                error, status = "Wrong password.", 401
        session["login_csrf"] = secrets.token_urlsafe(16)
        page = render_template_string(LOGIN_PAGE, error=error, csrf=session["login_csrf"])
        return page, status, headers

    @app.route("/logout", endpoint="studio_logout")
    def logout():
        session.clear()
        return redirect(url_for("studio_login"))

    @app.route("/favicon.ico")
    def favicon():
        return "", 204  # no icon; answering keeps browsers' consoles free of 404s

    @app.teardown_request
    def release_connection(exc):
        if not db.is_closed() and not db.in_transaction():
            db.close()

    admin = Admin(app, name="DevMetrics Studio", url="/", index_view=StudioIndexView(url="/"))
    views = [StudioModelView(model, name=model.__name__) for model in MODELS]
    for view in views:
        admin.add_view(view)
    link_relations(views)
    return app
