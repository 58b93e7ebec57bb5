"""Sign-in with GitHub through a local fake GitHub: the OAuth web flow end to end, and
every way it can go wrong leaving nothing behind."""

import time
from urllib.parse import parse_qs, urlparse

import pytest

from shared import crypto
from shared.models import AuditLog, Organization, Session, User, UserOrganization
from tests.fake_github import CLIENT_ID

STATE_COOKIE = "devmetrics_oauth_state"


def start(client):
    response = client.get("/api/v1/auth/github/login")
    assert response.status_code == 302
    query = parse_qs(urlparse(response.headers["Location"]).query)
    return response, {k: v[0] for k, v in query.items()}


def callback(client, **params):
    return client.get("/api/v1/auth/github/callback", query_string=params)


def sign_in(
    client, fake_github, code="c1", login="octocat", github_id=583231, name="The Octocat", **kwargs
):
    fake_github.add_user(code, login, github_id, name, **kwargs)
    _, query = start(client)
    return callback(client, code=code, state=query["state"])


def test_login_redirects_to_github_with_a_browser_bound_state(accounts_client, fake_github):
    response, query = start(accounts_client)
    assert response.headers["Location"].startswith(f"{fake_github.url}/login/oauth/authorize?")
    assert query["client_id"] == CLIENT_ID
    assert query["scope"] == "read:user user:email"
    # From configuration (ACCOUNTS_URL here), not the test client's Host (localhost).
    accounts = accounts_client.application.extensions["devmetrics"]["settings"].public_url(
        "accounts"
    )
    assert query["redirect_uri"] == accounts + "/api/v1/auth/github/callback"
    assert len(query["state"]) >= 32
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{STATE_COOKIE}=") and "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie and "Max-Age=600" in cookie
    assert query["state"] not in cookie  # sealed, not readable from the cookie
    # Two sign-ins never share a state.
    assert start(accounts_client)[1]["state"] != query["state"]


def test_callback_signs_in_creating_user_personal_org_and_session(accounts_client, fake_github):
    response = sign_in(accounts_client, fake_github, email="octocat@github.example")
    assert response.status_code == 200, response.json
    body = response.json
    assert body["user"]["login"] == "octocat" and body["user"]["github_id"] == 583231
    assert body["token"].startswith("dms_")
    cookies = response.headers.getlist("Set-Cookie")
    session_cookie = next(c for c in cookies if c.startswith("devmetrics_session="))
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie
    assert response.headers["Cache-Control"] == "no-store"

    user = User.get(User.github_id == 583231)
    assert user.email == "octocat@github.example" and user.name == "The Octocat"
    token = fake_github_token(fake_github)
    assert (
        user.oauth_token_encrypted != token and crypto.decrypt(user.oauth_token_encrypted) == token
    )
    session = Session.get(Session.user == user)
    assert session.token_digest == crypto.token_digest(body["token"])  # never the token
    personal = Organization.get(Organization.is_personal == True)  # noqa: E712
    assert personal.slug == "octocat"
    assert UserOrganization.get(UserOrganization.organization == personal).role == "OWNER"
    actions = [a.action for a in AuditLog.select().where(AuditLog.actor_user == user.id)]
    assert sorted(actions) == ["auth.signed_in", "organization.created"]

    me = accounts_client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200
    assert me.json["user"]["login"] == "octocat"
    assert me.json["organizations"] == [
        {
            "organization": {
                "id": personal.id,
                "slug": "octocat",
                "name": "The Octocat (personal)",
                "plan": "FREE",
                "is_personal": True,
            },
            "role": "OWNER",
        }
    ]
    # The test client kept the cookie: a browser is signed in without any header.
    assert accounts_client.get("/api/v1/me").status_code == 200


def fake_github_token(fake_github):
    return next(iter(fake_github.users))


def test_signing_in_again_updates_the_same_user(accounts_client, fake_github):
    assert sign_in(accounts_client, fake_github, code="a").status_code == 200
    again = sign_in(accounts_client, fake_github, code="b", login="octocat-renamed", name="Renamed")
    assert again.status_code == 200
    assert User.select().where(User.github_id == 583231).count() == 1
    assert User.get(User.github_id == 583231).login == "octocat-renamed"
    assert Organization.select().where(Organization.is_personal == True).count() == 1  # noqa: E712
    assert Session.select().count() == 2


def test_private_primary_email_is_read_from_user_emails(accounts_client, fake_github):
    response = sign_in(accounts_client, fake_github, email=None, private_email="Secret@Example.org")
    assert response.status_code == 200
    assert User.get(User.github_id == 583231).email == "secret@example.org"
    assert ("GET", "/user/emails", {}) in fake_github.requests


def nothing_stored():
    return (
        User.select().count() == 0
        and Session.select().count() == 0
        and (AuditLog.select().count() == 0)
    )


@pytest.mark.parametrize("case", ["missing", "wrong", "expired", "no-cookie"])
def test_bad_state_is_refused_before_anything_is_stored(accounts_client, fake_github, case):
    fake_github.add_user("code", "octocat", 583231, "The Octocat")
    _, query = start(accounts_client)
    state = {
        "missing": None,
        "wrong": "not-the-state",
        "no-cookie": query["state"],
        "expired": query["state"],
    }[case]
    if case == "expired":
        sealed = crypto.fernet().encrypt_at_time(state.encode(), int(time.time()) - 601)
        accounts_client.set_cookie(STATE_COOKIE, sealed.decode(), path="/api/v1/auth/github")
    if case == "no-cookie":
        accounts_client.delete_cookie(STATE_COOKIE, path="/api/v1/auth/github")
    params = {"code": "code"} | ({"state": state} if state else {})
    response = callback(accounts_client, **params)
    assert response.status_code == 400
    assert set(response.json) == {"code", "status", "message", "errors"}
    assert "state" in response.json["message"]
    assert nothing_stored()
    assert not any(path == "/login/oauth/access_token" for _, path, _ in fake_github.requests)


def test_denied_consent_is_a_clear_400(accounts_client, fake_github):
    _, query = start(accounts_client)
    response = callback(
        accounts_client,
        error="access_denied",
        state=query["state"],
        error_description="The user has denied your application access.",
    )
    assert response.status_code == 400
    assert "denied your application access" in response.json["message"]
    assert nothing_stored()


@pytest.mark.parametrize(
    "mode,status,message",
    [
        ("bad-code", 400, "bad_verification_code"),
        ("error500", 502, "GitHub is failing"),
        ("slow", 502, "did not answer in time"),
    ],
)
def test_github_failures_leave_no_half_created_user(
    accounts_client, fake_github, mode, status, message
):
    fake_github.add_user("good", "octocat", 583231, "The Octocat")
    _, query = start(accounts_client)
    if mode in ("error500", "slow"):
        fake_github.mode = mode
    code = "unknown-code" if mode == "bad-code" else "good"
    response = callback(accounts_client, code=code, state=query["state"])
    fake_github.mode = "ok"
    assert response.status_code == status
    assert message in response.json["message"]
    assert nothing_stored()


def test_logout_revokes_the_session(accounts_client, fake_github):
    token = sign_in(accounts_client, fake_github).json["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert accounts_client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert accounts_client.get("/api/v1/me", headers=headers).status_code == 401
    assert Session.get().revoked_at is not None
    assert AuditLog.select().where(AuditLog.action == "auth.signed_out").count() == 1


def test_api_keys_cannot_use_session_only_endpoints(accounts_client, seeded):
    from services.accounts.logic import create_api_key

    _, key = create_api_key(Organization.get(Organization.slug == "techcorp"), "k", ["admin"])
    response = accounts_client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 403


def test_login_without_github_configuration_is_503(accounts_client, monkeypatch):
    from services.accounts import create_app

    monkeypatch.setenv("GITHUB_CLIENT_ID", "")
    client = create_app(
        {"TESTING": True, "DATABASE": accounts_client.application.config["DATABASE"]}
    ).test_client()
    response = client.get("/api/v1/auth/github/login")
    assert response.status_code == 503 and "GITHUB_CLIENT_ID" in response.json["message"]
