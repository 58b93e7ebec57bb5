"""Item 17.7: API keys act with their creator's current standing. A removed ADMIN's keys stop
on every service within the introspection cache's TTL, a demoted ADMIN's keys lose what the
new role may not hold, a key made by a key is its creator's and never outlives or outranks
the key that made it, and introspection refuses a key whose creator lost standing even when
no revocation was written (each part failed before the fix: keys carried their scopes
forever, whatever happened to the person who made them)."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
import requests

from shared.permissions import SCOPE_ROLE
from tests.conftest import connect
from tests.helpers import SERVICE_NAMES, free_port, start_service, stop, wait_ready, wait_until
from tests.reliability.report import record
from tests.security.conftest import github_sign_in, route_requirements
from tests.services.test_platform import ORG_ROUTES

ITEM = "17.7 keys follow their creator"
CACHE_SECONDS = 1  # the security stack's INTROSPECTION_CACHE_SECONDS
ALL_READS = ["activity:read", "metrics:read", "notifications:read"]
ADMIN_ROUTES = {"accounts": "/api/v1/orgs/{org}/api-keys", "activity": "/api/v1/orgs/{org}/events"}
_people = itertools.count(9_927_001)  # (9_917_xxx: test_github_tokens, test_repository_identity)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


class Org:
    """A fresh organization: its OWNER (signed in through the fake GitHub) and ADMINs."""

    def __init__(self, stack, fake_github, tag: str):
        self.stack, self.fake_github, self.slug = stack, fake_github, tag
        self.owner, self.owner_id = self.person(f"{tag}-owner")
        made = self.post_as(self.owner, "/api/v1/orgs", {"name": f"Keys {tag}", "slug": tag})
        assert made.status_code == 201, made.text

    def person(self, login: str) -> tuple[str, int]:
        session, _ = github_sign_in(self.stack, self.fake_github, login, next(_people))
        me = requests.get(self.url("accounts", "/api/v1/me"), headers=bearer(session), timeout=10)
        return session, me.json()["user"]["id"]

    def admin(self, login: str) -> tuple[str, int]:
        """A signed-in person made ADMIN here. The membership row is written directly: how
        members join is not what this test is about, and what happens to their keys when
        they leave or are demoted goes through the real API below."""
        session, user_id = self.person(login)
        self.sql(
            "INSERT INTO user_organizations (user_id, organization_id, role, created_at, "
            "updated_at) SELECT {p}, id, 'ADMIN', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP "
            "FROM organizations WHERE slug = {p}",
            user_id,
            self.slug,
        )
        return session, user_id

    def set_role_directly(self, user_id: int, role: str | None) -> None:
        """Change (or with None, delete) a membership behind the API's back: no revocation
        is written, as when a write is missed or a row is edited by hand."""
        where = (
            "WHERE user_id = {p} AND organization_id = "
            "(SELECT id FROM organizations WHERE slug = {p})"
        )
        if role is None:
            self.sql("DELETE FROM user_organizations " + where, user_id, self.slug)
        else:
            self.sql("UPDATE user_organizations SET role = {p} " + where, role, user_id, self.slug)

    def change_role(self, user_id: int, role: str | None) -> None:
        """Through the API, as the OWNER: a new role, or (None) removal."""
        url = self.url("accounts", f"/api/v1/orgs/{{org}}/members/{user_id}")
        if role is None:
            response = requests.delete(url, headers=bearer(self.owner), timeout=10)
        else:
            response = requests.patch(
                url, json={"role": role}, headers=bearer(self.owner), timeout=10
            )
        assert response.status_code in (200, 204), response.text

    def sql(self, statement: str, *params) -> None:
        database = connect(self.stack.database_url)
        try:
            database.execute_sql(statement.format(p=database.param), params)
        finally:
            database.close()

    def url(self, service: str, path: str) -> str:
        return self.stack.url(service) + path.format(org=self.slug)

    def post_as(self, token, path, body, base=None):
        url = (base or self.stack.url("accounts")) + path.format(org=self.slug)
        return requests.post(url, json=body, headers=bearer(token), timeout=10)

    def new_key(self, token, scopes, base=None, **extra) -> dict:
        body = {"name": f"key {'+'.join(scopes)}", "scopes": scopes, **extra}
        made = self.post_as(token, "/api/v1/orgs/{org}/api-keys", body, base)
        assert made.status_code == 201, made.text
        return made.json()

    def status(self, key: str, service: str, routes=ORG_ROUTES) -> int:
        response = requests.get(self.url(service, routes[service]), headers=bearer(key), timeout=10)
        return response.status_code

    def works_everywhere(self, key: str, admin: bool = False) -> None:
        for service in SERVICE_NAMES:
            assert self.status(key, service) == 200, (service, key[:12])
        for service in ADMIN_ROUTES if admin else ():
            assert self.status(key, service, ADMIN_ROUTES) == 200, (service, key[:12])

    def refused_everywhere(self, key: str, what: str) -> None:
        """Wait (at most the cache TTL and a margin) until every service answers 401."""
        for service in SERVICE_NAMES:
            wait_until(
                lambda s=service: self.status(key, s) == 401,
                timeout=CACHE_SECONDS + 5,
                what=f"{service} to refuse {what}",
            )

    def audit(self, action: str) -> dict[str, dict]:
        """target id -> entry, for the owner."""
        log = requests.get(
            self.url("accounts", "/api/v1/orgs/{org}/audit-logs"),
            params={"action": action, "page_size": 100},
            headers=bearer(self.owner),
            timeout=10,
        )
        assert log.status_code == 200, log.text
        return {entry["target_id"]: entry for entry in log.json()}

    def keys(self) -> dict[int, dict]:
        listed = requests.get(
            self.url("accounts", "/api/v1/orgs/{org}/api-keys"),
            params={"page_size": 100},
            headers=bearer(self.owner),
            timeout=10,
        )
        assert listed.status_code == 200, listed.text
        return {key["id"]: key for key in listed.json()}


def test_every_route_declares_the_one_scope_role_matrix():
    """A key's scope is worth what the routes make of it: each route needing a scope asks
    people for exactly the role `SCOPE_ROLE` gives that scope, the role a key's creator must
    still hold for the key to keep it."""
    declared = {
        (service, method, path): (auth["scope"], auth["role"])
        for (service, path, method), auth in route_requirements().items()
        if auth["scope"] is not None
    }
    assert len(declared) >= 40  # the routes really were enumerated
    wrong = {route: got for route, got in declared.items() if got[1] != str(SCOPE_ROLE[got[0]])}
    assert wrong == {}
    assert {scope for scope, _role in declared.values()} == set(SCOPE_ROLE)


@pytest.fixture
def org(request, secure_stack, fake_github_server):
    tag = request.node.name.removeprefix("test_")[:24].replace("_", "-").strip("-")
    return Org(secure_stack, fake_github_server, f"keys-{tag}")


def test_a_removed_admins_keys_stop_on_every_service_within_the_cache_ttl(org):
    session, admin_id = org.admin(f"{org.slug}-admin")
    admin = org.new_key(session, ["admin"])
    reader = org.new_key(session, ALL_READS)
    # A key made by a key is its creator's (before: no creator at all, and it outlived them).
    minted = org.new_key(admin["key"], ALL_READS)
    for key in (admin, reader, minted):
        org.works_everywhere(key["key"], admin=key is admin)

    org.change_role(admin_id, None)
    for key in (admin, reader, minted):
        org.refused_everywhere(key["key"], f"key {key['id']} of a removed ADMIN")

    revoked = org.audit("api_key.revoked")
    for key in (admin, reader, minted):
        entry = revoked[str(key["id"])]
        assert entry["metadata"]["reason"] in {"creator_removed", "creating_key_revoked"}
        assert entry["actor_user"] == org.owner_id  # who removed them
    assert revoked[str(admin["id"])]["metadata"]["creator"] == admin_id
    assert all(org.keys()[key["id"]]["revoked_at"] for key in (admin, reader, minted))
    assert (minted.get("created_by"), minted.get("created_by_key")) == (admin_id, admin["id"])
    assert minted["organization_key"] is False
    record(
        ITEM,
        "ADMIN removed: their admin key, read key and a key their key made answer 401 on all "
        f"4 services within the {CACHE_SECONDS} s cache TTL; api_key.revoked audited with why",
        passed=True,
        load=3 * len(SERVICE_NAMES),
    )


def test_a_demoted_admins_keys_lose_what_the_new_role_cannot_hold(org):
    """Decision: revoke, not narrow. A key beyond its creator's new role is revoked whole
    (its scopes are what it was issued with); keys the new role may hold keep working."""
    session, admin_id = org.admin(f"{org.slug}-admin")
    admin = org.new_key(session, ["admin"])
    writer = org.new_key(session, ["activity:write", "metrics:read"])
    reader = org.new_key(session, ALL_READS)
    org.works_everywhere(admin["key"], admin=True)

    org.change_role(admin_id, "MEMBER")
    org.refused_everywhere(admin["key"], "the admin key of a demoted ADMIN")
    org.refused_everywhere(writer["key"], "the write key of a demoted ADMIN")
    org.works_everywhere(reader["key"])  # a MEMBER may read: kept

    revoked = org.audit("api_key.revoked")
    assert str(reader["id"]) not in revoked
    for key, beyond in ((admin, ["admin"]), (writer, ["activity:write"])):
        metadata = revoked[str(key["id"])]["metadata"]
        assert metadata["reason"] == "creator_role_changed"
        assert (metadata["creator"], metadata["role"]) == (admin_id, "MEMBER")
        assert metadata["scopes_not_allowed"] == beyond
    listed = org.keys()
    assert listed[reader["id"]]["revoked_at"] is None
    record(
        ITEM,
        "ADMIN demoted to MEMBER: their admin and activity:write keys revoked (401 on all 4 "
        "services within the cache TTL, audited with the scopes MEMBER lacks); read key kept",
        passed=True,
        load=3 * len(SERVICE_NAMES),
    )


def test_introspection_refuses_a_key_whose_creator_lost_standing_without_a_revocation(org):
    """Belt and braces: the membership changes under the application's feet (no revocation
    is written), and introspection alone refuses the keys it no longer covers."""
    session, admin_id = org.admin(f"{org.slug}-admin")
    admin = org.new_key(session, ["admin"])
    reader = org.new_key(session, ALL_READS)
    org.works_everywhere(admin["key"], admin=True)

    org.set_role_directly(admin_id, "MEMBER")
    org.refused_everywhere(admin["key"], "an admin key whose creator is now a MEMBER")
    org.works_everywhere(reader["key"])
    org.set_role_directly(admin_id, None)
    org.refused_everywhere(reader["key"], "a key whose creator is no longer a member")
    listed = org.keys()
    assert listed[admin["id"]]["revoked_at"] is None  # no revocation was written
    assert listed[reader["id"]]["revoked_at"] is None
    record(
        ITEM,
        "creator demoted, then removed, behind the API's back: introspection alone refuses "
        "the keys their standing no longer covers on all 4 services within the cache TTL",
        passed=True,
        load=2 * len(SERVICE_NAMES),
    )


@pytest.fixture
def stale_accounts(secure_stack, tmp_path):
    """A second accounts process on the same database whose introspection cache lasts a
    minute: like another gunicorn worker, it still holds a key's answer after the worker
    that revoked the key forgot it."""
    port = free_port()
    env = {**secure_stack.env, "INTROSPECTION_CACHE_SECONDS": "60"}
    process = start_service("accounts", port, env, tmp_path)
    try:
        wait_ready(f"http://127.0.0.1:{port}")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def test_a_key_never_mints_a_key_beyond_its_creators_current_standing(org, stale_accounts):
    keys_path = "/api/v1/orgs/{org}/api-keys"
    refused = 0

    # The creator demoted behind the API's back while the key's answer is still cached:
    # the grant is checked against the creator's role now, and refused by scope.
    session, admin_id = org.admin(f"{org.slug}-admin")
    admin = org.new_key(session, ["admin"])
    assert org.status(admin["key"], "accounts", ADMIN_ROUTES) == 200
    cached = org.post_as(
        admin["key"], keys_path, {"name": "ok", "scopes": ["admin"]}, stale_accounts
    )
    assert cached.status_code == 201, cached.text  # cached there, and still allowed
    org.set_role_directly(admin_id, "MEMBER")
    for scopes, named in ((["admin"], "'admin'"), (["activity:write"], "'activity:write'"),
                          (["metrics:read"], "cannot create keys")):  # fmt: skip
        minted = org.post_as(
            admin["key"], keys_path, {"name": "up", "scopes": scopes}, stale_accounts
        )
        assert minted.status_code == 403, minted.text
        assert named in minted.json()["message"], minted.json()
        refused += 1

    # Demoted through the API: the key is revoked, and the process that still has it cached
    # as active makes nothing with it either.
    session, other_id = org.admin(f"{org.slug}-second")
    other = org.new_key(session, ["admin"])
    cached = org.post_as(
        other["key"], keys_path, {"name": "ok", "scopes": ["metrics:read"]}, stale_accounts
    )
    assert cached.status_code == 201, cached.text
    org.change_role(other_id, "VIEWER")
    late = org.post_as(
        other["key"], keys_path, {"name": "late", "scopes": ["metrics:read"]}, stale_accounts
    )
    assert late.status_code == 401, late.text
    refused += 1

    # An organization key (the CLI's, expiring) mints a key: it records the creating key,
    # lives no longer than it, and dies with it.
    made = org.stack.cli(
        "apikey",
        "create",
        "--org",
        org.slug,
        "--name",
        "root",
        "--scope",
        "admin",
        "--expires-in-days",
        "1",
    )
    assert made.returncode == 0, made.stderr
    root = made.stdout.strip().splitlines()[-1]
    root_id = next(k["id"] for k in org.keys().values() if root.startswith(f"dm_{k['prefix']}_"))
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat()
    too_long = org.post_as(
        root, keys_path, {"name": "x", "scopes": ["metrics:read"], "expires_at": later}
    )
    assert too_long.status_code == 422 and "expires_at" in too_long.json()["errors"], too_long.text
    refused += 1
    child = org.new_key(root, ALL_READS)
    assert (child["organization_key"], child["created_by"]) == (True, None)
    assert child["created_by_key"] == root_id
    assert child["expires_at"] == org.keys()[root_id]["expires_at"]
    org.works_everywhere(child["key"])
    gone = requests.delete(
        org.url("accounts", f"{keys_path}/{root_id}"), headers=bearer(root), timeout=10
    )
    assert gone.status_code == 204, gone.text
    org.refused_everywhere(child["key"], "a key whose creating key was revoked")
    entry = org.audit("api_key.revoked")[str(child["id"])]
    assert entry["metadata"]["reason"] == "creating_key_revoked"
    assert entry["metadata"]["creating_key"] == root_id
    record(
        ITEM,
        "keys minting keys: refused (403 naming the scope) when the creator's current role "
        "lacks it even with the key cached active elsewhere, 401 once revoked; a minted key "
        "records its creator and creating key, expires no later and is revoked with it",
        passed=True,
        bad_inputs=refused,
    )
