"""Issue 17, item 1: borrowed GitHub tokens. An OWNER could make anyone a member (even a
developer who only appeared as a pull-request author) and the organization's GitHub calls
then used that member's token: a private repository only the victim can read could be
connected and backfilled into the attacker's organization.

Now membership is by invitation the invited person accepts, and a repository's GitHub calls
use only the token of the person who connected it, while they are a member and GitHub
accepts it; otherwise they stop and the repository says "needs_owner_token"."""

from __future__ import annotations

import datetime as dt

import requests

from shared.models import Invitation, User, utcnow
from tests.conftest import connect
from tests.helpers import bound_to
from tests.reliability.report import record
from tests.security.conftest import github_sign_in, sign, webhook_headers  # noqa: F401


def _api(stack, service: str, method: str, path: str, token: str, **kwargs):
    return requests.request(
        method,
        stack.url(service) + path,
        headers={"Authorization": f"Bearer {token}"},
        timeout=15,
        **kwargs,
    )


def _new_org(stack, session: str, name: str) -> str:
    created = _api(stack, "accounts", "post", "/api/v1/orgs", session, json={"name": name})
    assert created.status_code == 201, created.text
    slug = created.json()["slug"]
    # PRO, so plan limits stay out of the way of what is tested here.
    with bound_to(stack.database_url):
        from shared.models import Organization

        Organization.update(plan="PRO").where(Organization.slug == slug).execute()
    return slug


def _github_calls_with(fake_github, token: str) -> list[str]:
    return [path for path, used in fake_github.tokens_used if used == token]


def test_nobody_becomes_a_member_without_accepting(secure_stack, fake_github):
    stack = secure_stack
    attacker, _ = github_sign_in(stack, fake_github, "mallory17", 9_917_001)
    evil = _new_org(stack, attacker, "Evil 17")
    # A developer seen only as a pull-request author in another organization's webhooks: a
    # user row with a login and no sign-in.
    with bound_to(stack.database_url):
        User.create(login="pr-author-17", github_id=None)
    # The old route that made anyone a member at once is gone.
    direct = _api(
        stack,
        "accounts",
        "post",
        f"/api/v1/orgs/{evil}/members",
        attacker,
        json={"login": "pr-author-17", "role": "OWNER"},
    )
    assert direct.status_code == 405, direct.text
    invited = _api(
        stack,
        "accounts",
        "post",
        f"/api/v1/orgs/{evil}/invitations",
        attacker,
        json={"login": "pr-author-17", "role": "OWNER"},
    )
    assert invited.status_code == 201 and invited.json()["status"] == "PENDING"
    members = _api(stack, "accounts", "get", f"/api/v1/orgs/{evil}/members", attacker).json()
    assert {m["user"]["login"] for m in members} == {"mallory17"}

    # The invited person signs in (proving the GitHub identity) and decides.
    victim, _ = github_sign_in(stack, fake_github, "pr-author-17", 9_917_002)
    mine = _api(stack, "accounts", "get", "/api/v1/me/invitations", victim).json()
    assert [(i["id"], i["organization"]["slug"], i["role"]) for i in mine] == [
        (invited.json()["id"], evil, "OWNER")
    ]
    # Someone else cannot answer it.
    third, _ = github_sign_in(stack, fake_github, "bystander17", 9_917_003)
    for action in ("accept", "decline"):
        stolen = _api(
            stack, "accounts", "post", f"/api/v1/me/invitations/{mine[0]['id']}/{action}", third
        )
        assert stolen.status_code == 404
    declined = _api(
        stack, "accounts", "post", f"/api/v1/me/invitations/{mine[0]['id']}/decline", victim
    )
    assert declined.status_code == 200 and declined.json()["status"] == "DECLINED"
    again = _api(
        stack, "accounts", "post", f"/api/v1/me/invitations/{mine[0]['id']}/accept", victim
    )
    assert again.status_code == 409
    members = _api(stack, "accounts", "get", f"/api/v1/orgs/{evil}/members", attacker).json()
    assert {m["user"]["login"] for m in members} == {"mallory17"}

    # An invitation expires: past its time it cannot be accepted.
    late = _api(
        stack,
        "accounts",
        "post",
        f"/api/v1/orgs/{evil}/invitations",
        attacker,
        json={"login": "bystander17", "role": "MEMBER"},
    ).json()
    with bound_to(stack.database_url):
        Invitation.update(expires_at=utcnow() - dt.timedelta(seconds=1)).where(
            Invitation.id == late["id"]
        ).execute()
    expired = _api(stack, "accounts", "post", f"/api/v1/me/invitations/{late['id']}/accept", third)
    assert expired.status_code == 409 and "expired" in expired.json()["message"]
    listed = _api(stack, "accounts", "get", f"/api/v1/orgs/{evil}/invitations", attacker).json()
    assert {i["id"]: i["status"] for i in listed} == {
        invited.json()["id"]: "DECLINED",
        late["id"]: "EXPIRED",
    }
    log = _api(stack, "accounts", "get", f"/api/v1/orgs/{evil}/audit-logs", attacker).json()
    actions = [e["action"] for e in log]
    assert actions.count("invitation.created") == 2 and "invitation.declined" in actions
    assert "member.added" not in actions
    record(
        "17.1 borrowed GitHub tokens",
        "an OWNER adds a PR author as OWNER: the direct add is gone (405), an invitation stays "
        "pending until the invited person, signed in, accepts; others cannot answer it; "
        "declined and expired ones cannot be accepted; all audited",
        passed=True,
        bad_inputs=4,
    )


def test_a_private_repository_is_never_read_with_someone_elses_token(secure_stack, fake_github):
    """The attack as reported: make the victim an OWNER, step down so theirs is the only
    OWNER token, connect their private repository with an admin key, backfill it."""
    stack = secure_stack
    attacker, attacker_token = github_sign_in(stack, fake_github, "mallory17b", 9_917_011)
    victim, victim_token = github_sign_in(stack, fake_github, "victim17b", 9_917_012)
    evil = _new_org(stack, attacker, "Evil 17b")
    key = _api(
        stack,
        "accounts",
        "post",
        f"/api/v1/orgs/{evil}/api-keys",
        attacker,
        json={"name": "ops", "scopes": ["admin"]},
    ).json()["key"]
    fake_github.tokens_used.clear()  # (signing in read /user with each token)
    # Only the victim can read it on GitHub.
    fake_github.add_repository("victim17b/secret-sauce", 9_917_100, readers=[victim_token])
    for path, body in (
        ("members", {"login": "victim17b", "role": "OWNER"}),  # the old direct add
        ("invitations", {"login": "victim17b", "role": "OWNER"}),  # never accepted
    ):
        _api(stack, "accounts", "post", f"/api/v1/orgs/{evil}/{path}", attacker, json=body)
    me = _api(stack, "accounts", "get", "/api/v1/me", attacker).json()["user"]["id"]
    step_down = _api(
        stack,
        "accounts",
        "patch",
        f"/api/v1/orgs/{evil}/members/{me}",
        attacker,
        json={"role": "VIEWER"},
    )
    assert step_down.status_code == 409  # the victim is no OWNER: the attacker is the last
    connect_try = _api(
        stack,
        "activity",
        "post",
        f"/api/v1/orgs/{evil}/repositories",
        key,
        json={"full_name": "victim17b/secret-sauce"},
    )
    assert connect_try.status_code == 404, connect_try.text
    assert "GitHub has no repository" in connect_try.json()["message"]
    # GitHub was asked with the key's creator's own token only, never the victim's.
    assert _github_calls_with(fake_github, victim_token) == []
    assert "/repos/victim17b/secret-sauce" in _github_calls_with(fake_github, attacker_token)
    database = connect(stack.database_url)
    try:
        count = database.execute_sql(
            "SELECT COUNT(*) FROM repositories WHERE full_name = 'victim17b/secret-sauce'"
        ).fetchone()[0]
    finally:
        database.close()
    assert count == 0
    record(
        "17.1 borrowed GitHub tokens",
        "the reported attack: add the victim as OWNER, step down, connect their private "
        "repository with an admin key: the victim is no member, the attacker stays OWNER, "
        "connect 404 with the key creator's own token, the victim's never used",
        passed=True,
        bad_inputs=4,
    )


def test_the_token_owner_leaving_stops_the_repositorys_github_calls(secure_stack, fake_github):
    from tests.fake_github import load_rest_data

    stack = secure_stack
    fake_github.rest = load_rest_data()
    owner, _ = github_sign_in(stack, fake_github, "founder17c", 9_917_021)
    connector, connector_token = github_sign_in(stack, fake_github, "connector17c", 9_917_022)
    other_admin, admin_token = github_sign_in(stack, fake_github, "admin17c", 9_917_023)
    org = _new_org(stack, owner, "Tokens 17c")
    from tests.services.conftest import join

    join(stack, org, "ADMIN", inviter=owner, invitee=connector)
    join(stack, org, "ADMIN", inviter=owner, invitee=other_admin)
    # Both ADMINs can read it; the connector connects it and becomes its token owner.
    full_name = "tokens17c/service"
    fake_github.add_repository(full_name, 9_917_200, readers=[connector_token, admin_token])
    connected = _api(
        stack,
        "activity",
        "post",
        f"/api/v1/orgs/{org}/repositories",
        connector,
        json={"full_name": full_name},
    )
    assert connected.status_code == 201, connected.text
    repo = connected.json()
    assert (repo["status"], repo["github_id"]) == ("verified", 9_917_200)
    members = _api(stack, "accounts", "get", f"/api/v1/orgs/{org}/members", owner).json()
    connector_id = next(m["user"]["id"] for m in members if m["user"]["login"] == "connector17c")
    assert repo["token_owner"] == connector_id
    repo_url = f"/api/v1/orgs/{org}/repositories/{repo['id']}"

    # The connector leaves: the repository needs a new owner token, and its backfill stops
    # with that status instead of falling back to the other ADMIN's token.
    left = _api(stack, "accounts", "delete", f"/api/v1/orgs/{org}/members/{connector_id}", owner)
    assert left.status_code == 204
    shown = _api(stack, "activity", "get", repo_url, owner).json()
    assert shown["status"] == "needs_owner_token"
    assert "no longer a member" in shown["status_detail"]
    fake_github.tokens_used.clear()
    queued = _api(stack, "activity", "post", f"{repo_url}/backfill", owner, json={})
    assert queued.status_code == 202
    ran = stack.cli("worker", "backfill", "--once")
    assert ran.returncode == 0, ran.stderr
    progress = _api(stack, "activity", "get", f"{repo_url}/backfill", owner).json()
    assert progress["state"] == "failed" and "needs a new owner token" in progress["error"]
    assert fake_github.tokens_used == []  # not the connector's, not the other ADMIN's

    # Another ADMIN takes it over with their own token: verified, and the backfill runs
    # with their token.
    taken = _api(stack, "activity", "post", f"{repo_url}/verify", other_admin)
    assert taken.status_code == 200, taken.text
    assert taken.json()["status"] == "verified"
    assert taken.json()["token_owner"] != connector_id
    _api(stack, "activity", "post", f"{repo_url}/backfill", owner, json={})
    assert stack.cli("worker", "backfill", "--once").returncode == 0
    progress = _api(stack, "activity", "get", f"{repo_url}/backfill", owner).json()
    assert progress["state"] == "done", progress
    used = {token for _path, token in fake_github.tokens_used}
    assert used == {admin_token}

    # The new owner loses access on GitHub: the calls stop again, with the reason.
    fake_github.add_repository(full_name, 9_917_200, readers=[])
    _api(stack, "activity", "post", f"{repo_url}/backfill", owner, json={})
    assert stack.cli("worker", "backfill", "--once").returncode == 0
    shown = _api(stack, "activity", "get", repo_url, owner).json()
    assert shown["status"] == "needs_owner_token" and "refused" in shown["status_detail"]
    progress = _api(stack, "activity", "get", f"{repo_url}/backfill", owner).json()
    assert progress["state"] == "failed"
    record(
        "17.1 borrowed GitHub tokens",
        "the connector (token owner) leaves, then the next owner loses access on GitHub: "
        "status needs_owner_token, the backfill stops without using another member's token; "
        "an ADMIN's own verify takes it over",
        passed=True,
        faults=2,
    )


def test_a_github_apps_token_is_used_only_while_the_token_owner_stands(secure_stack, fake_github):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from tests.conftest import run_cli
    from tests.fake_github import load_rest_data
    from tests.services.conftest import join

    stack = secure_stack
    fake_github.rest = load_rest_data()
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake_github.app_id = "4217"
    fake_github.app_public_key = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    app_env = {
        **stack.env,
        "GITHUB_APP_ID": "4217",
        "GITHUB_APP_PRIVATE_KEY": private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode(),
    }
    owner, _ = github_sign_in(stack, fake_github, "founder17d", 9_917_061)
    connector, connector_token = github_sign_in(stack, fake_github, "connector17d", 9_917_062)
    org = _new_org(stack, owner, "App 17d")
    join(stack, org, "ADMIN", inviter=owner, invitee=connector)
    full_name = "app17d/service"
    fake_github.add_repository(full_name, 9_917_600, readers=[connector_token])
    repo = _api(
        stack,
        "activity",
        "post",
        f"/api/v1/orgs/{org}/repositories",
        connector,
        json={"full_name": full_name},
    ).json()
    assert repo["status"] == "verified"
    fake_github.installations[full_name] = 17_600  # the App is installed on it
    repo_url = f"/api/v1/orgs/{org}/repositories/{repo['id']}"

    def backfill() -> dict:
        fake_github.tokens_used.clear()
        _api(stack, "activity", "post", f"{repo_url}/backfill", owner, json={})
        ran = run_cli("worker", "backfill", "--once", database_url=stack.database_url, env=app_env)
        assert ran.returncode == 0, ran.stderr
        return _api(stack, "activity", "get", f"{repo_url}/backfill", owner).json()

    progress = backfill()
    assert progress["state"] == "done", progress
    reads = [(path, token) for path, token in fake_github.tokens_used if "/pulls" in path]
    assert reads and all(token.startswith("ghs_fake17600") for _path, token in reads)
    assert connector_token not in {token for _path, token in fake_github.tokens_used}

    # The token owner leaves: the App's token is not used either.
    members = _api(stack, "accounts", "get", f"/api/v1/orgs/{org}/members", owner).json()
    connector_id = next(m["user"]["id"] for m in members if m["user"]["login"] == "connector17d")
    _api(stack, "accounts", "delete", f"/api/v1/orgs/{org}/members/{connector_id}", owner)
    progress = backfill()
    assert progress["state"] == "failed" and "needs a new owner token" in progress["error"]
    assert fake_github.tokens_used == []
    record(
        "17.1 borrowed GitHub tokens",
        "with a GitHub App configured and installed: the backfill reads with the App's "
        "installation token, never the owner's; once the token owner leaves, with neither",
        passed=True,
        faults=1,
    )
