"""The whole accounts story over real HTTP between real services: sign in through (fake)
GitHub, create an org, invite a member who accepts, create a key, use it on another service,
revoke it, and read every step back from the audit log."""

from urllib.parse import parse_qs, urlparse

import requests

from tests.helpers import GITHUB_API, wait_until
from tests.services.conftest import CACHE_SECONDS


def sign_in(browser: requests.Session, accounts: str, code: str) -> str:
    start = browser.get(f"{accounts}/api/v1/auth/github/login", allow_redirects=False, timeout=10)
    assert start.status_code == 302
    state = parse_qs(urlparse(start.headers["Location"]).query)["state"][0]
    # (The person consents on GitHub, which sends the browser back with a code.)
    done = browser.get(
        f"{accounts}/api/v1/auth/github/callback", params={"code": code, "state": state}, timeout=10
    )
    assert done.status_code == 200, done.text
    return done.json()["token"]


def test_sign_in_to_revocation_every_step_audited(stack, fake_github):
    accounts, activity = stack.url("accounts"), stack.url("activity")
    fake_github.add_user(
        "colleague-code", "colleague", 7001, "Col League", email="col@flow.example"
    )
    fake_github.add_user("founder-code", "founder", 7000, "Fay Founder", email="fay@flow.example")
    colleague = requests.Session()
    colleague_token = sign_in(colleague, accounts, "colleague-code")
    browser = requests.Session()
    sign_in(browser, accounts, "founder-code")

    # The browser is signed in by its cookie alone from here on.
    org = browser.post(f"{accounts}/api/v1/orgs", json={"name": "Flow Co"}, timeout=10)
    assert org.status_code == 201 and org.json()["slug"] == "flow-co"
    invited = browser.post(
        f"{accounts}/api/v1/orgs/flow-co/invitations",
        json={"login": "colleague", "role": "MEMBER"},
        timeout=10,
    )
    assert invited.status_code == 201
    mine = colleague.get(f"{accounts}/api/v1/me/invitations", timeout=10).json()
    assert [i["organization"]["slug"] for i in mine] == ["flow-co"]
    accepted = colleague.post(
        f"{accounts}/api/v1/me/invitations/{mine[0]['id']}/accept", timeout=10
    )
    assert accepted.status_code == 200 and accepted.json()["role"] == "MEMBER"
    key = browser.post(
        f"{accounts}/api/v1/orgs/flow-co/api-keys",
        json={"name": "ci", "scopes": ["activity:read"]},
        timeout=10,
    )
    assert key.status_code == 201
    plaintext, key_id = key.json()["key"], key.json()["id"]

    # The key, and the colleague's session, work on another service (which asks accounts).
    repos = f"{activity}/api/v1/orgs/flow-co/repositories"
    assert (
        requests.get(repos, headers={"Authorization": f"Bearer {plaintext}"}, timeout=10).json()
        == []
    )
    as_colleague = requests.get(
        repos, headers={"Authorization": f"Bearer {colleague_token}"}, timeout=10
    )
    assert as_colleague.status_code == 200
    me = colleague.get(f"{accounts}/api/v1/me", timeout=10).json()
    assert {o["organization"]["slug"]: o["role"] for o in me["organizations"]}[
        "flow-co"
    ] == "MEMBER"

    revoked = browser.delete(f"{accounts}/api/v1/orgs/flow-co/api-keys/{key_id}", timeout=10)
    assert revoked.status_code == 204
    wait_until(
        lambda: (
            requests.get(
                repos, headers={"Authorization": f"Bearer {plaintext}"}, timeout=10
            ).status_code
            == 401
        ),
        timeout=CACHE_SECONDS + 5,
        what="activity to refuse the revoked key",
    )

    log = browser.get(f"{accounts}/api/v1/orgs/flow-co/audit-logs", timeout=10).json()
    actions = [entry["action"] for entry in reversed(log)]  # oldest first
    assert actions == [
        "organization.created",
        "invitation.created",
        "invitation.accepted",
        "member.added",
        "api_key.created",
        "api_key.revoked",
    ]
    assert all(entry["ip"] == "127.0.0.1" for entry in log)

    assert browser.post(f"{accounts}/api/v1/auth/logout", timeout=10).status_code == 204
    assert browser.get(f"{accounts}/api/v1/me", timeout=10).status_code == 401


def test_connecting_fetches_metadata_with_the_connectors_github_token(stack, fake_github):
    import json

    recorded = json.loads((GITHUB_API / "get-repository.json").read_text())
    fake_github.rest["repository"] = recorded[0]["response"]  # a real GET /repos response
    accounts, activity = stack.url("accounts"), stack.url("activity")
    fake_github.add_user("meta-code", "metaowner", 7100, "Meta Owner")
    browser = requests.Session()
    token = sign_in(browser, accounts, "meta-code")
    assert (
        browser.post(f"{accounts}/api/v1/orgs", json={"name": "Meta Org"}, timeout=10).status_code
        == 201
    )
    headers = {"Authorization": f"Bearer {token}"}
    repos = f"{activity}/api/v1/orgs/meta-org/repositories"
    connected = requests.post(
        repos, json={"full_name": "octokit-fixture-org/hello-world"}, headers=headers, timeout=10
    )
    assert connected.status_code == 201, connected.text
    body = connected.json()
    assert (body["github_id"], body["default_branch"], body["private"]) == (1000, "master", False)
    unknown = requests.post(
        repos, json={"full_name": "octokit-fixture-org/nope"}, headers=headers, timeout=10
    )
    assert unknown.status_code == 404 and "GitHub has no repository" in unknown.json()["message"]
