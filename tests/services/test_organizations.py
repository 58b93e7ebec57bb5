"""Organizations, members and roles, API keys, the audit log and plan limits on the
accounts service, including the full role matrix and another organization's callers."""

import datetime as dt

import peewee as pw
import pytest

from shared import crypto
from shared.models import (
    ApiKey,
    AuditLog,
    Commit,
    Invitation,
    Organization,
    Repository,
    Role,
    Session,
    User,
    UserOrganization,
    utcnow,
)
from tests.conftest import BACKEND

WEEK = dt.timedelta(days=7)


def session_token(user: User) -> str:
    token = crypto.new_session_token()
    Session.create(
        user=user,
        token_digest=crypto.token_digest(token),
        expires_at=utcnow() + dt.timedelta(days=1),
    )
    return token


@pytest.fixture
def people(seeded):
    """techcorp: alice OWNER, bob ADMIN, charlie MEMBER, dana VIEWER; eve is elsewhere."""
    techcorp = Organization.get(Organization.slug == "techcorp")
    dana = User.create(github_id=9001, login="dana", name="Dana", email="dana@x.example")
    eve = User.create(github_id=9002, login="eve", name="Eve", email="eve@x.example")
    UserOrganization.create(user=dana, organization=techcorp, role=Role.VIEWER)
    other = Organization.create(name="Other", slug="other", plan="PRO")
    UserOrganization.create(user=eve, organization=other, role=Role.OWNER)
    tokens = {
        "OWNER": session_token(User.get(User.login == "alice")),
        "ADMIN": session_token(User.get(User.login == "bob")),
        "MEMBER": session_token(User.get(User.login == "charlie")),
        "VIEWER": session_token(dana),
        "FOREIGN": session_token(eve),
    }
    return tokens


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def newcomer():
    return User.create(
        github_id=9100, login="newbie", name="New", email="new@x.example", last_login_at=utcnow()
    )


def accept(client, user: User, invitation_id: int):
    """`user`, signed in, accepts an invitation."""
    return client.post(
        f"/api/v1/me/invitations/{invitation_id}/accept", headers=auth(session_token(user))
    )


def invite_and_accept(client, org: str, token: str, user: User, **body):
    invited = client.post(
        f"/api/v1/orgs/{org}/invitations", json={"login": user.login, **body}, headers=auth(token)
    )
    assert invited.status_code == 201, invited.json
    accepted = accept(client, user, invited.json["id"])
    assert accepted.status_code == 200, accepted.json
    return accepted


# method, path, body, expected status per role (OWNER, ADMIN, MEMBER, VIEWER, FOREIGN)
MATRIX = [
    ("get", "/api/v1/orgs/techcorp", None, (200, 200, 200, 200, 404)),
    ("patch", "/api/v1/orgs/techcorp", {"name": "TC"}, (200, 200, 403, 403, 404)),
    ("patch", "/api/v1/orgs/techcorp", {"plan": "ENTERPRISE"}, (200, 403, 403, 403, 404)),
    ("delete", "/api/v1/orgs/techcorp", None, (204, 403, 403, 403, 404)),
    ("get", "/api/v1/orgs/techcorp/members", None, (200, 200, 200, 200, 404)),
    (
        "post",
        "/api/v1/orgs/techcorp/invitations",
        {"login": "newbie", "role": "MEMBER"},
        (201, 201, 403, 403, 404),
    ),
    (
        "post",
        "/api/v1/orgs/techcorp/invitations",
        {"login": "newbie", "role": "ADMIN"},
        (201, 403, 403, 403, 404),
    ),
    ("get", "/api/v1/orgs/techcorp/invitations", None, (200, 200, 403, 403, 404)),
    ("delete", "/api/v1/orgs/techcorp/invitations/{invitation}", None, (200, 200, 403, 403, 404)),
    (
        "patch",
        "/api/v1/orgs/techcorp/members/{charlie}",
        {"role": "VIEWER"},
        (200, 200, 403, 403, 404),
    ),
    ("patch", "/api/v1/orgs/techcorp/members/{bob}", {"role": "MEMBER"}, (200, 403, 403, 403, 404)),
    ("delete", "/api/v1/orgs/techcorp/members/{charlie}", None, (204, 204, 204, 403, 404)),
    ("delete", "/api/v1/orgs/techcorp/members/{bob}", None, (204, 204, 403, 403, 404)),
    ("get", "/api/v1/orgs/techcorp/api-keys", None, (200, 200, 403, 403, 404)),
    (
        "post",
        "/api/v1/orgs/techcorp/api-keys",
        {"name": "k", "scopes": ["metrics:read"]},
        (201, 201, 403, 403, 404),
    ),
    ("delete", "/api/v1/orgs/techcorp/api-keys/{key}", None, (204, 204, 403, 403, 404)),
    ("get", "/api/v1/orgs/techcorp/audit-logs", None, (200, 200, 403, 403, 404)),
]
ROLES = ("OWNER", "ADMIN", "MEMBER", "VIEWER", "FOREIGN")


@pytest.mark.parametrize(
    "method,path,body,role,expected",
    [(m, p, b, role, codes[i]) for m, p, b, codes in MATRIX for i, role in enumerate(ROLES)],
    ids=[f"{m} {p} {b or ''} as {role}" for m, p, b, _ in MATRIX for role in ROLES],
)
def test_role_matrix(accounts_client, people, method, path, body, role, expected):
    newcomer()
    techcorp = Organization.get(Organization.slug == "techcorp")
    invitation = Invitation.create(
        organization=techcorp, login="someone", role=Role.MEMBER, expires_at=utcnow() + WEEK
    )
    path = path.format(
        invitation=invitation.id,
        charlie=User.get(User.login == "charlie").id,
        bob=User.get(User.login == "bob").id,
        key=ApiKey.select().join(Organization).where(Organization.slug == "techcorp").get().id,
    )
    kwargs = {"json": body} if body is not None else {}
    response = getattr(accounts_client, method)(path, headers=auth(people[role]), **kwargs)
    assert response.status_code == expected, response.json
    if expected >= 400:
        assert set(response.json) == {"code", "status", "message", "errors"}


def test_create_list_and_validate_organizations(accounts_client, people):
    created = accounts_client.post(
        "/api/v1/orgs",
        headers=auth(people["VIEWER"]),
        json={"name": "Dana's Lab", "settings": {"timezone": "Europe/Paris"}},
    )
    assert created.status_code == 201, created.json
    assert created.json["slug"] == "dana-s-lab" and created.json["role"] == "OWNER"
    listed = accounts_client.get("/api/v1/orgs", headers=auth(people["VIEWER"])).json
    assert {o["slug"] for o in listed} == {"techcorp", "dana-s-lab"}
    assert {o["slug"]: o["role"] for o in listed}["techcorp"] == "VIEWER"

    taken = accounts_client.post(
        "/api/v1/orgs", headers=auth(people["VIEWER"]), json={"name": "x", "slug": "techcorp"}
    )
    assert taken.status_code == 409 and "slug" in taken.json["errors"]
    bad_tz = accounts_client.post(
        "/api/v1/orgs",
        headers=auth(people["VIEWER"]),
        json={"name": "y", "settings": {"timezone": "Mars/Base"}},
    )
    assert bad_tz.status_code == 422
    assert "timezone" in bad_tz.json["errors"]["json"]["settings"]
    unknown = accounts_client.post(
        "/api/v1/orgs", headers=auth(people["VIEWER"]), json={"name": "z", "colour": "red"}
    )
    assert unknown.status_code == 422 and "colour" in unknown.json["errors"]["json"]
    assert (
        AuditLog.select()
        .where(
            AuditLog.action == "organization.created", AuditLog.target_id == str(created.json["id"])
        )
        .count()
        == 1
    )


def test_delete_cascades_and_keeps_the_deletion_in_the_audit_log(accounts_client, people):
    techcorp = Organization.get(Organization.slug == "techcorp")
    response = accounts_client.delete("/api/v1/orgs/techcorp", headers=auth(people["OWNER"]))
    assert response.status_code == 204
    assert Repository.select().where(Repository.organization == techcorp.id).count() == 0
    assert Commit.select().where(Commit.organization == techcorp.id).count() == 0
    entry = AuditLog.get(AuditLog.action == "organization.deleted")
    assert entry.organization_id is None and entry.metadata["slug"] == "techcorp"
    assert entry.actor_user_id == User.get(User.login == "alice").id


def test_last_owner_is_protected_and_admins_stay_below_admin(accounts_client, people):
    alice = User.get(User.login == "alice").id
    members = "/api/v1/orgs/techcorp/members"
    demote = accounts_client.patch(
        f"{members}/{alice}", json={"role": "ADMIN"}, headers=auth(people["OWNER"])
    )
    assert demote.status_code == 409 and "last OWNER" in demote.json["message"]
    leave = accounts_client.delete(f"{members}/{alice}", headers=auth(people["OWNER"]))
    assert leave.status_code == 409
    # With a second OWNER, the first may step down.
    bob = User.get(User.login == "bob").id
    promote = accounts_client.patch(
        f"{members}/{bob}", json={"role": "OWNER"}, headers=auth(people["OWNER"])
    )
    assert promote.status_code == 200 and promote.json["role"] == "OWNER"
    assert (
        accounts_client.delete(f"{members}/{alice}", headers=auth(people["OWNER"])).status_code
        == 204
    )
    roles = [e.metadata for e in AuditLog.select().where(AuditLog.action == "member.role_changed")]
    assert roles == [{"from": "ADMIN", "to": "OWNER"}]


def test_invitations_by_login_or_email_are_accepted_by_the_invited_person(accounts_client, people):
    invitations = "/api/v1/orgs/techcorp/invitations"
    newbie = newcomer()
    added_before = AuditLog.select().where(AuditLog.action == "member.added").count()
    by_email = accounts_client.post(
        invitations,
        json={"email": "NEW@x.example", "role": "VIEWER"},
        headers=auth(people["ADMIN"]),
    )
    assert by_email.status_code == 201 and by_email.json["status"] == "PENDING"
    assert by_email.json["email"] == "new@x.example" and by_email.json["role"] == "VIEWER"
    # Not a member until they accept; then a member with the role offered.
    members = accounts_client.get("/api/v1/orgs/techcorp/members", headers=auth(people["ADMIN"]))
    assert "newbie" not in {m["user"]["login"] for m in members.json}
    mine = accounts_client.get("/api/v1/me/invitations", headers=auth(session_token(newbie)))
    assert [(i["id"], i["organization"]["slug"]) for i in mine.json] == [
        (by_email.json["id"], "techcorp")
    ]
    accepted = accept(accounts_client, newbie, by_email.json["id"])
    assert accepted.status_code == 200 and accepted.json["role"] == "VIEWER"
    assert accept(accounts_client, newbie, by_email.json["id"]).status_code == 409  # once
    again = accounts_client.post(
        invitations, json={"login": "newbie"}, headers=auth(people["ADMIN"])
    )
    assert again.status_code == 409 and "already a member" in again.json["message"]
    # Someone who never signed in can be invited, but is not a member until they sign in
    # and accept; someone else cannot accept it.
    ghost = accounts_client.post(
        invitations, json={"login": "ghost"}, headers=auth(people["ADMIN"])
    )
    assert ghost.status_code == 201 and ghost.json["status"] == "PENDING"
    eve = User.get(User.login == "eve")
    assert accept(accounts_client, eve, ghost.json["id"]).status_code == 404
    both = accounts_client.post(
        invitations, json={"login": "a", "email": "a@b.example"}, headers=auth(people["ADMIN"])
    )
    assert both.status_code == 422 and "login" in both.json["errors"]["json"]
    assert AuditLog.select().where(AuditLog.action == "member.added").count() == added_before + 1
    actions = {e.action for e in AuditLog.select().where(AuditLog.action.startswith("invitation."))}
    assert actions == {"invitation.created", "invitation.accepted"}


def test_plan_limits_name_the_limit(accounts_client, people, tx):
    startup = Organization.get(Organization.slug == "startup-inc")  # FREE: 5 members
    bob = session_token(User.get(User.login == "bob"))  # OWNER there
    extras = []
    for i in range(2):
        extras.append(User.create(github_id=9200 + i, login=f"extra{i}", last_login_at=utcnow()))
        ok = accounts_client.post(
            "/api/v1/orgs/startup-inc/invitations", json={"login": f"extra{i}"}, headers=auth(bob)
        )
        assert ok.status_code == 201
    # Three members and two pending invitations fill the five seats.
    User.create(github_id=9300, login="one-too-many")
    refused = accounts_client.post(
        "/api/v1/orgs/startup-inc/invitations", json={"login": "one-too-many"}, headers=auth(bob)
    )
    assert refused.status_code == 402
    assert "FREE plan allows at most 5 members" in refused.json["message"]
    assert "2 of them pending invitations" in refused.json["message"]
    pending = accounts_client.get(
        "/api/v1/orgs/startup-inc/invitations",
        query_string={"status": "PENDING"},
        headers=auth(bob),
    ).json
    for extra, invitation in zip(extras, sorted(pending, key=lambda i: i["id"]), strict=True):
        assert accept(accounts_client, extra, invitation["id"]).status_code == 200
    assert UserOrganization.select().where(UserOrganization.organization == startup).count() == 5

    personal = Organization.get(Organization.slug == "alice-personal")
    solo = accounts_client.post(
        f"/api/v1/orgs/{personal.slug}/invitations",
        json={"login": "bob"},
        headers=auth(people["OWNER"]),
    )
    assert (
        solo.status_code == 402 and "personal organization allows at most 1" in solo.json["message"]
    )

    # Downgrading below current usage is refused, naming the limit.
    techcorp = "/api/v1/orgs/techcorp"
    for i in range(3):
        person = User.create(github_id=9400 + i, login=f"tc{i}", last_login_at=utcnow())
        invite_and_accept(accounts_client, "techcorp", people["OWNER"], person)
    down = accounts_client.patch(techcorp, json={"plan": "FREE"}, headers=auth(people["OWNER"]))
    assert down.status_code == 409 and "limit of 5" in down.json["message"]

    limits = accounts_client.get(
        f"/internal/v1/orgs/{startup.id}/limits",
        headers={"Authorization": "Bearer devmetrics-development-internal-token"},
    )
    assert limits.status_code == 200
    assert limits.json["limits"] == {"repositories": 3, "members": 5}
    assert limits.json["usage"] == {"repositories": 1, "members": 5, "invitations": 0}
    assert limits.json["can_add"] == {"repositories": True, "members": False}
    assert accounts_client.get(f"/internal/v1/orgs/{startup.id}/limits").status_code == 401


def test_api_keys_are_shown_once_hashed_and_revocable(accounts_client, people, tx):
    keys = "/api/v1/orgs/techcorp/api-keys"
    created = accounts_client.post(
        keys,
        headers=auth(people["ADMIN"]),
        json={
            "name": "deploy bot",
            "scopes": ["activity:write", "metrics:read"],
            "expires_at": "2030-01-01T00:00:00Z",
        },
    )
    assert created.status_code == 201, created.json
    plaintext = created.json["key"]
    assert plaintext.startswith(f"dm_{created.json['prefix']}_")
    listed = accounts_client.get(keys, headers=auth(people["ADMIN"])).json
    assert all("key" not in k for k in listed) and plaintext not in str(listed)
    # The database never holds the plaintext key (nor the session tokens).
    assert plaintext not in str(dump_all(tx)) and people["OWNER"] not in str(dump_all(tx))

    use = accounts_client.get("/api/v1/orgs/techcorp", headers=auth(plaintext))
    assert use.status_code == 200
    key = ApiKey.get(ApiKey.prefix == created.json["prefix"])
    first_use = key.last_used_at
    assert first_use is not None
    accounts_client.get("/api/v1/orgs/techcorp", headers=auth(plaintext))
    assert ApiKey.get_by_id(key.id).last_used_at == first_use  # at most one write a minute

    revoke = accounts_client.delete(f"{keys}/{key.id}", headers=auth(people["ADMIN"]))
    assert revoke.status_code == 204
    assert accounts_client.get("/api/v1/orgs/techcorp", headers=auth(plaintext)).status_code == 401
    accounts_client.delete(f"{keys}/{key.id}", headers=auth(people["ADMIN"]))  # again: harmless
    assert AuditLog.select().where(AuditLog.action == "api_key.revoked").count() == 1

    past = accounts_client.post(
        keys,
        headers=auth(people["ADMIN"]),
        json={"name": "x", "scopes": ["metrics:read"], "expires_at": "2020-01-01T00:00:00Z"},
    )
    assert past.status_code == 422 and "expires_at" in past.json["errors"]
    bad_scope = accounts_client.post(
        keys, headers=auth(people["ADMIN"]), json={"name": "x", "scopes": ["root"]}
    )
    assert bad_scope.status_code == 422 and "scopes" in bad_scope.json["errors"]["json"]


def dump_all(database):
    return [database.execute_sql(f'SELECT * FROM "{t}"').fetchall() for t in database.get_tables()]


def test_admin_scoped_key_manages_but_cannot_own(accounts_client, people):
    from services.accounts.logic import create_api_key

    _, admin_key = create_api_key(
        Organization.get(Organization.slug == "techcorp"), "ops", ["admin"]
    )
    newcomer()
    invited = accounts_client.post(
        "/api/v1/orgs/techcorp/invitations", json={"login": "newbie"}, headers=auth(admin_key)
    )
    assert invited.status_code == 201
    entry = AuditLog.get(
        AuditLog.action == "invitation.created", AuditLog.target_id == str(invited.json["id"])
    )
    assert entry.actor_api_key_id is not None  # the key is the recorded actor
    assert (
        accounts_client.delete("/api/v1/orgs/techcorp", headers=auth(admin_key)).status_code == 403
    )
    plan = accounts_client.patch(
        "/api/v1/orgs/techcorp", json={"plan": "FREE"}, headers=auth(admin_key)
    )
    assert plan.status_code == 403


def test_audit_log_lists_newest_first_with_filters(accounts_client, people):
    base = "/api/v1/orgs/techcorp"
    accounts_client.patch(base, json={"name": "TechCorp 2"}, headers=auth(people["ADMIN"]))
    accounts_client.patch(
        base, json={"settings": {"digest_hour": 8}}, headers=auth(people["ADMIN"])
    )
    accounts_client.patch(base, json={"plan": "ENTERPRISE"}, headers=auth(people["OWNER"]))
    log = accounts_client.get(f"{base}/audit-logs", headers=auth(people["ADMIN"]))
    assert log.status_code == 200
    actions = [e["action"] for e in log.json]
    assert actions[:3] == [
        "organization.plan_changed",
        "organization.settings_changed",
        "organization.updated",
    ]
    for action in (
        "organization.plan_changed",
        "organization.settings_changed",
        "organization.updated",
    ):
        assert actions.count(action) == 1  # exactly one entry per action
    by_bob = accounts_client.get(
        f"{base}/audit-logs", query_string={"actor": "bob"}, headers=auth(people["ADMIN"])
    ).json
    bob_actions = {e["action"] for e in by_bob}
    assert {"organization.settings_changed", "organization.updated"} <= bob_actions
    assert "organization.plan_changed" not in bob_actions  # alice did that
    only = accounts_client.get(
        f"{base}/audit-logs",
        headers=auth(people["ADMIN"]),
        query_string={"action": "organization.plan_changed"},
    ).json
    assert len(only) == 1 and only[0]["metadata"] == {"from": "PRO", "to": "ENTERPRISE"}
    future = accounts_client.get(
        f"{base}/audit-logs",
        headers=auth(people["ADMIN"]),
        query_string={"from": "2099-01-01T00:00:00Z"},
    ).json
    assert future == []
    page = accounts_client.get(
        f"{base}/audit-logs", headers=auth(people["ADMIN"]), query_string={"page_size": 2}
    )
    assert len(page.json) == 2 and '"total_pages"' in page.headers["X-Pagination"]


@pytest.mark.postgres_only
def test_audit_rows_cannot_be_updated_or_deleted_on_postgres(people, tx):
    entry = AuditLog.select().first()
    for statement in (
        AuditLog.update(action="forged").where(AuditLog.id == entry.id),
        AuditLog.delete().where(AuditLog.id == entry.id),
    ):
        with pytest.raises(pw.DatabaseError, match="append-only"), tx.atomic():
            statement.execute()
    assert AuditLog.get_by_id(entry.id).action == entry.action
    # The owner of audit_logs (here the tests' superuser) may, with the switch set; the
    # services' own role has no DELETE at all (tests/security/test_audit_log_roles.py).
    with tx.atomic():
        tx.execute_sql("SET LOCAL devmetrics.audit_retention = 'on'")
        assert AuditLog.delete().where(AuditLog.id == entry.id).execute() == 1
    # Referential actions still work: deleting a user clears their actor link.
    bob = User.get(User.login == "bob")
    bob.delete_instance()
    assert AuditLog.select().where(AuditLog.actor_user == bob.id).count() == 0
    assert BACKEND == "postgresql"


def test_values_the_database_cannot_store_are_422_not_500(accounts_client, people):
    response = accounts_client.post(
        "/api/v1/orgs",
        headers=auth(people["OWNER"]),
        json={"name": "nul \u0000 name", "slug": "nul-org"},
    )
    assert response.status_code == 422
    assert response.json["errors"]["json"] == {"name": ["contains a NUL character"]}


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/orgs/1%C2%B9/audit-logs",  # a superscript digit: not an id
        "/api/v1/orgs/999999999999999999999999999999",
        "/api/v1/orgs/techcorp/members/999999999999999999999999999",
        "/api/v1/orgs?page_size=33&page=72255851662672541393201659904",
    ],
)
def test_odd_ids_and_huge_pages_are_4xx_or_empty_never_500(accounts_client, people, path):
    method = "patch" if "/members/" in path else "get"
    kwargs = {"json": {"role": "VIEWER"}} if method == "patch" else {}
    response = getattr(accounts_client, method)(path, headers=auth(people["OWNER"]), **kwargs)
    assert response.status_code < 500, response.json
    if "page=" in path:
        assert response.status_code == 200 and response.json == []
