import hmac
from urllib.parse import urlsplit

from flask import after_this_request, current_app, g, redirect, request
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from marshmallow import fields

from services.accounts import logic
from services.accounts import schemas as s
from shared import crypto
from shared.models import Organization, Role
from shared.web.api import PeeweePage, Schema
from shared.web.auth import SESSION_COOKIE, bearer_token, internal_only, require

OAUTH_STATE_COOKIE = "devmetrics_oauth_state"
OAUTH_STATE_SECONDS = 600

auth = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Sign-in with GitHub")
me_blp = Blueprint("me", __name__, url_prefix="/api/v1/me", description="The signed-in user")
orgs = Blueprint("orgs", __name__, url_prefix="/api/v1/orgs", description="Organizations")
members = Blueprint(
    "members", __name__, url_prefix="/api/v1/orgs/<org>/members", description="Members and roles"
)
invitations = Blueprint(
    "invitations",
    __name__,
    url_prefix="/api/v1/orgs/<org>/invitations",
    description="Invitations: membership is offered, and begins when the invited person "
    "accepts it after signing in",
)
keys = Blueprint(
    "api_keys", __name__, url_prefix="/api/v1/orgs/<org>/api-keys", description="API keys"
)
audit_blp = Blueprint(
    "audit_logs",
    __name__,
    url_prefix="/api/v1/orgs/<org>/audit-logs",
    description="The organization's audit log",
)
internal = Blueprint(
    "accounts_internal",
    __name__,
    url_prefix="/internal/v1",
    description="Internal: token introspection and plan limits (service token only).",
)


def _settings():
    return current_app.extensions["devmetrics"]["settings"]


def _cookie_args(max_age: int, path: str = "/") -> dict:
    return {
        "max_age": max_age,
        "path": path,
        "httponly": True,
        "samesite": "Lax",
        "secure": _settings().cookie_secure,
    }


# Sign-in ------------------------------------------------------------------------------


@auth.route("/github/login")
class GitHubLogin(MethodView):
    @auth.doc(security=[], responses={"302": {"description": "To GitHub's consent page"}})
    def get(self):
        """Start signing in: redirect to GitHub with a state bound to this browser."""
        if not _settings().github_client_id:
            abort(503, message="GitHub sign-in is not configured (GITHUB_CLIENT_ID)")
        from shared.github import GitHub

        state = logic.new_oauth_state()
        # From configuration only, never the request's Host (shared/config.py).
        callback = _settings().github_callback_url
        response = redirect(GitHub(_settings()).authorize_url(state, callback), 302)
        response.set_cookie(
            OAUTH_STATE_COOKIE,
            crypto.encrypt(state),
            **_cookie_args(OAUTH_STATE_SECONDS, "/api/v1/auth/github"),
        )
        return response


@auth.route("/github/callback")
class GitHubCallback(MethodView):
    @auth.doc(security=[])
    @auth.arguments(s.CallbackArgsSchema, location="query")
    @auth.response(200, s.SessionSchema)
    def get(self, args):
        """GitHub sends the browser back here: check the state, exchange the code, sign in."""
        sealed = request.cookies.get(OAUTH_STATE_COOKIE)
        if args["error"]:
            abort(
                400,
                message=f"GitHub sign-in was not completed: "
                f"{args['error_description'] or args['error']}",
            )
        if not args["code"] or not args["state"]:
            abort(400, message="the callback needs both code and state")
        try:
            expected = crypto.decrypt(sealed, ttl=OAUTH_STATE_SECONDS) if sealed else None
        except ValueError:
            expected = None
        if expected is None:
            abort(400, message="sign-in state missing or expired: start again")
        # bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500)
        if not hmac.compare_digest(expected.encode(), args["state"].encode()):
            abort(400, message="sign-in state does not match this browser: start again")
        result = logic.sign_in_with_github(
            args["code"],
            _settings().github_callback_url,
            ip=request.remote_addr,
            user_agent=request.headers.get("User-Agent"),
            settings=_settings(),
        )
        settings = _settings()

        @after_this_request
        def set_session_cookie(response):
            response.set_cookie(
                SESSION_COOKIE, result.token, **_cookie_args(settings.session_days * 86400)
            )
            response.delete_cookie(OAUTH_STATE_COOKIE, path="/api/v1/auth/github")
            response.headers["Cache-Control"] = "no-store"
            return response

        return {"token": result.token, "expires_at": result.session.expires_at, "user": result.user}


class LoginLinkArgsSchema(Schema):
    next = fields.String(load_default=None, metadata={"description": "A DevMetrics page URL"})


def _service_page(url: str | None) -> str | None:
    """Where to send the browser after sign-in: a page of one of our services only (never
    an open redirect), None for any other; by default the metrics dashboard."""
    settings = _settings()
    if url is None:
        return settings.public_url("metrics") + "/dashboard"
    ours = [*settings.service_urls.values(), *settings.public_urls.values()]
    origins = {urlsplit(service_url)[:2] for service_url in ours}
    return url if urlsplit(url)[:2] in origins else None


@auth.route("/login-link/<token>")
class LoginLinkSignIn(MethodView):
    @auth.doc(security=[], responses={"303": {"description": "Signed in: to `next`"}})
    @auth.arguments(LoginLinkArgsSchema, location="query")
    def get(self, args, token):
        """Sign in with a one-time link from `devmetrics login-link` (not in production). A
        `next` that is not a DevMetrics page is refused and voids the link (make a new one):
        the link is spent by a successful sign-in or by a refused one, never left usable
        after a refusal. The token is kept out of every log line (shared/observability.py)."""
        target = _service_page(args["next"])
        if target is None:
            logic.void_login_link(token, reason="next is not a DevMetrics page")
            abort(
                422,
                message="next must be a DevMetrics page; this sign-in link is now void",
                errors={"next": ["not ours"]},
            )
        result = logic.sign_in_with_login_link(
            token,
            ip=request.remote_addr,
            user_agent=request.headers.get("User-Agent"),
            settings=_settings(),
        )
        response = redirect(target, 303)
        response.set_cookie(
            SESSION_COOKIE, result.token, **_cookie_args(_settings().session_days * 86400)
        )
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"  # the used token stays here
        return response


@auth.route("/logout")
class Logout(MethodView):
    @require(role=None, api_keys=False)
    @auth.response(204)
    def post(self):
        """Revoke this session (and clear its cookie)."""
        logic.sign_out(bearer_token(cookie=True))

        @after_this_request
        def clear_session_cookie(response):
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response


@me_blp.route("")
class Me(MethodView):
    @require(role=None, api_keys=False)
    @me_blp.response(200, s.MeSchema)
    def get(self):
        """The signed-in user, their organizations with roles, and their commit e-mails."""
        return logic.me(g.principal.user_id)

    @require(role=None, api_keys=False)
    @me_blp.arguments(s.MeUpdateSchema)
    @me_blp.response(200, s.MeSchema)
    def put(self, body):
        """Choose your commit e-mails: those listed count as yours (each one GitHub verified
        for you or paired with your username; never one GitHub paired with another
        account's: 409), your others are released. Audited; the metrics follow."""
        return logic.set_my_emails(g.principal.user_id, body["emails"])


# Organizations ------------------------------------------------------------------------


@orgs.route("")
class OrganizationList(MethodView):
    @require(role=None)
    @orgs.response(200, s.OrgDetailSchema(many=True))
    @orgs.paginate(PeeweePage)
    def get(self):
        """The caller's organizations (an API key sees its own)."""
        principal = g.principal
        if principal.kind == "api_key":
            return Organization.select().where(Organization.id == principal.org_id)
        return logic.organizations_of(principal.user_id)

    @require(role=None, api_keys=False)
    @orgs.arguments(s.OrgCreateSchema)
    @orgs.response(201, s.OrgDetailSchema)
    def post(self, body):
        """Create an organization; its creator becomes OWNER."""
        org = logic.create_organization(
            g.principal.user_id, body["name"], body.get("slug"), body.get("settings")
        )
        org.role = Role.OWNER
        return org


@orgs.route("/<org>")
class OrganizationDetail(MethodView):
    @require()
    @orgs.response(200, s.OrgDetailSchema)
    def get(self, org):
        """One organization the caller belongs to."""
        g.org.role = g.principal.role
        return g.org

    @require(scope="admin", role=Role.ADMIN)
    @orgs.arguments(s.OrgUpdateSchema)
    @orgs.response(200, s.OrgDetailSchema)
    def patch(self, body, org):
        """Rename, change settings (ADMIN+), or change the plan (OWNER)."""
        updated = logic.update_organization(g.org, g.principal, body)
        updated.role = g.principal.role
        return updated

    @require(role=Role.OWNER, api_keys=False)
    @orgs.response(204)
    def delete(self, org):
        """Delete the organization and all its data (OWNER)."""
        logic.delete_organization(g.org)


# Members ------------------------------------------------------------------------------


@members.route("")
class MemberList(MethodView):
    @require()
    @members.response(200, s.MemberSchema(many=True))
    @members.paginate(PeeweePage)
    def get(self, org):
        """Members and their roles."""
        return logic.members_of(g.org)


@members.route("/<int:user_id>")
class MemberDetail(MethodView):
    @require(role=Role.VIEWER)
    @members.arguments(s.MemberUpdateSchema)
    @members.response(200, s.MemberSchema)
    def patch(self, body, org, user_id):
        """Change a member's role (ADMIN: below ADMIN only; OWNER: any). Their API keys with
        a scope the new role may not hold are revoked."""
        membership = logic.change_role(g.org, g.principal, user_id, body["role"])
        _forget_keys(logic.key_ids_created_by(g.org, user_id))
        return membership

    @require(role=Role.VIEWER)
    @members.response(204)
    def delete(self, org, user_id):
        """Remove a member, or leave (anyone may remove themselves but the last OWNER). The
        API keys they created are revoked."""
        logic.remove_member(g.org, g.principal, user_id)
        _forget_keys(logic.key_ids_created_by(g.org, user_id))


# Invitations ---------------------------------------------------------------------------


@invitations.route("")
class InvitationList(MethodView):
    @require(scope="admin", role=Role.ADMIN)
    @invitations.arguments(s.InvitationQuerySchema, location="query")
    @invitations.response(200, s.InvitationSchema(many=True))
    @invitations.paginate(PeeweePage)
    def get(self, args, org):
        """The organization's invitations, newest first (filter by status)."""
        return logic.invitations_of(g.org, args.get("status"))

    @require(scope="admin", role=Role.ADMIN)
    @invitations.arguments(s.InvitationCreateSchema)
    @invitations.response(201, s.InvitationSchema)
    def post(self, body, org):
        """Invite a GitHub login or an e-mail address (ADMIN: roles below ADMIN; OWNER:
        any). The person becomes a member when they accept after signing in; until then the
        invitation holds a member seat of the plan. It expires after INVITATION_DAYS."""
        return logic.invite(
            g.org,
            g.principal,
            login=body.get("login"),
            email=body.get("email"),
            role=body["role"],
            settings=_settings(),
        )


@invitations.route("/<int:invitation_id>")
class InvitationDetail(MethodView):
    @require(scope="admin", role=Role.ADMIN)
    @invitations.response(200, s.InvitationSchema)
    def delete(self, org, invitation_id):
        """Revoke a pending invitation."""
        return logic.revoke_invitation(g.org, g.principal, invitation_id)


@me_blp.route("/invitations")
class MyInvitations(MethodView):
    @require(role=None, api_keys=False)
    @me_blp.response(200, s.MyInvitationSchema(many=True))
    @me_blp.paginate(PeeweePage)
    def get(self):
        """Your open invitations (addressed to your GitHub login, id or e-mail)."""
        return logic.my_invitations(g.principal.user_id)


@me_blp.route("/invitations/<int:invitation_id>/accept")
class AcceptInvitation(MethodView):
    @require(role=None, api_keys=False)
    @me_blp.response(200, s.MembershipSchema)
    def post(self, invitation_id):
        """Accept: you become a member with the role offered (402 when the plan is full)."""
        return logic.accept_invitation(g.principal.user_id, invitation_id)


@me_blp.route("/invitations/<int:invitation_id>/decline")
class DeclineInvitation(MethodView):
    @require(role=None, api_keys=False)
    @me_blp.response(200, s.MyInvitationSchema)
    def post(self, invitation_id):
        """Decline: the invitation closes and frees its seat."""
        return logic.decline_invitation(g.principal.user_id, invitation_id)


# API keys -----------------------------------------------------------------------------


def _forget_keys(key_ids) -> None:
    """Revoked keys stop here at once (other processes: within their cache TTL)."""
    forget = current_app.extensions["devmetrics"]["resolve_token"].forget_api_key
    for key_id in key_ids:
        forget(key_id)


@keys.route("")
class ApiKeyList(MethodView):
    @require(scope="admin", role=Role.ADMIN)
    @keys.response(200, s.ApiKeySchema(many=True))
    @keys.paginate(PeeweePage)
    def get(self, org):
        """The organization's keys (never their secret)."""
        return logic.keys_of(g.org)

    @require(scope="admin", role=Role.ADMIN)
    @keys.arguments(s.ApiKeyCreateSchema)
    @keys.response(201, s.ApiKeyCreatedSchema)
    def post(self, body, org):
        """Create a key; the full key is in this response only. It acts with its creator's
        standing: a key made by a key is that key's creator's, with no scope (or lifetime)
        beyond the creating key's and that person's current role."""
        key, plaintext = logic.create_api_key(
            g.org, body["name"], body["scopes"], expires_at=body["expires_at"], actor=g.principal
        )
        key.key = plaintext
        return key


@keys.route("/<int:key_id>")
class ApiKeyDetail(MethodView):
    @require(scope="admin", role=Role.ADMIN)
    @keys.response(204)
    def delete(self, org, key_id):
        """Revoke a key, and the keys it created (they stop working within seconds
        everywhere)."""
        _forget_keys([key_id, *logic.revoke_api_key(g.org, key_id)])


# Audit --------------------------------------------------------------------------------


@audit_blp.route("")
class AuditLogList(MethodView):
    @require(scope="admin", role=Role.ADMIN)
    @audit_blp.arguments(s.AuditQuerySchema, location="query")
    @audit_blp.response(200, s.AuditLogSchema(many=True))
    @audit_blp.paginate(PeeweePage)
    def get(self, args, org):
        """Newest first; filter by action, actor (login or key:<id>) and time range."""
        return logic.audit_entries(g.org, **args)


# Internal -----------------------------------------------------------------------------


@internal.route("/auth/introspect")
class Introspect(MethodView):
    decorators = [internal_only]

    @internal.arguments(s.IntrospectRequestSchema)
    @internal.response(200, s.IntrospectResponseSchema)
    def post(self, body):
        """Resolve a bearer token: active or not, organization, user, role, scopes."""
        return logic.introspect(body["token"], body["org"])


@internal.route("/orgs/<int:org_id>/limits")
class Limits(MethodView):
    decorators = [internal_only]

    @internal.response(200, s.LimitsSchema)
    def get(self, org_id):
        """Plan limits and usage (asked by activity before connecting a repository)."""
        org = Organization.get_or_none(Organization.id == org_id)
        if org is None:
            abort(404, message="organization not found")
        return logic.limits(org)
