"""Connecting repositories over real HTTP: the plan limit is asked of accounts, the webhook
secret is shown once and works, rotation, sensitivity, disconnect and delete, all audited."""

import hashlib
import hmac
import json
import uuid

import requests

from tests.conftest import connect
from tests.helpers import WEBHOOK_SAMPLES
from tests.services.conftest import SEEDED_GITHUB_IDS, connect_verified, github_sign_in
from tests.services.test_auth import new_key

PUSH = json.loads((WEBHOOK_SAMPLES / "push/1.payload.json").read_text())


def signed_push(stack, full_name: str, secret: str, github_id: int):
    payload = json.loads(json.dumps(PUSH))
    payload["repository"].update(full_name=full_name, id=github_id)
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return requests.post(
        stack.url("activity") + "/webhooks/github",
        data=body,
        timeout=10,
        headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": signature,
            "Content-Type": "application/json",
        },
    )


def test_connect_within_the_plan_then_webhooks_rotate_disconnect_delete(stack, fake_github):
    # bob (startup-inc's OWNER) signed in with GitHub, whose token reads both repositories.
    session, github_token = github_sign_in(stack, fake_github, "bob", SEEDED_GITHUB_IDS["bob"])
    fake_github.add_repository("startup-inc/api", 990001, readers=[github_token])
    fake_github.add_repository("startup-inc/web", 990002, readers=[github_token])
    reader = new_key(stack, "startup-inc", "activity:read")
    base = stack.url("activity") + "/api/v1/orgs/startup-inc/repositories"
    as_writer = {"Authorization": f"Bearer {session}"}
    as_reader = {"Authorization": f"Bearer {reader}"}

    assert (
        requests.post(
            base, json={"full_name": "startup-inc/x"}, headers=as_reader, timeout=10
        ).status_code
        == 403
    )
    bad = requests.post(base, json={"full_name": "no slash"}, headers=as_writer, timeout=10)
    assert bad.status_code == 422 and "full_name" in bad.json()["errors"]["json"]

    created = []
    for name in ("startup-inc/api", "startup-inc/web"):  # FREE: 1 seeded + 2 = the limit of 3
        response = requests.post(base, json={"full_name": name}, headers=as_writer, timeout=10)
        assert response.status_code == 201, response.text
        body = response.json()
        assert (
            body["webhook_url"].endswith("/webhooks/github") and len(body["webhook_secret"]) == 64
        )
        # Its GitHub identity came from GitHub's API with bob's token; bob owns the token.
        assert body["status"] == "verified" and body["github_id"] in (990001, 990002)
        created.append(body)
    over = requests.post(
        base, json={"full_name": "startup-inc/one-more"}, headers=as_writer, timeout=10
    )
    assert over.status_code == 402
    assert "FREE plan allows at most 3 repositories" in over.json()["message"]
    dup = requests.post(base, json={"full_name": "startup-inc/api"}, headers=as_writer, timeout=10)
    assert dup.status_code == 409

    api, secret = created[0], created[0]["webhook_secret"]
    assert signed_push(stack, "startup-inc/api", secret, 990001).status_code == 202
    got = requests.get(f"{base}/{api['id']}", headers=as_reader, timeout=10).json()
    assert got["github_id"] == 990001
    assert signed_push(stack, "startup-inc/api", "wrong", 990001).status_code == 401

    rotated = requests.post(f"{base}/{api['id']}/rotate-secret", headers=as_writer, timeout=10)
    assert rotated.status_code == 200
    new_secret = rotated.json()["webhook_secret"]
    assert signed_push(stack, "startup-inc/api", secret, 990001).status_code == 401
    assert signed_push(stack, "startup-inc/api", new_secret, 990001).status_code == 202

    restricted = requests.patch(
        f"{base}/{api['id']}", json={"sensitivity": "RESTRICTED"}, headers=as_writer, timeout=10
    )
    assert restricted.status_code == 200
    assert requests.get(f"{base}/{api['id']}", headers=as_reader, timeout=10).status_code == 404
    listed = requests.get(base, headers=as_reader, timeout=10).json()
    assert "startup-inc/api" not in {r["full_name"] for r in listed}

    off = requests.post(f"{base}/{api['id']}/disconnect", headers=as_writer, timeout=10)
    assert off.status_code == 200 and off.json()["is_active"] is False
    assert signed_push(stack, "startup-inc/api", new_secret, 990001).status_code == 404
    database = connect(stack.database_url)
    count = "SELECT COUNT(*) FROM events WHERE repository_id = " + database.param
    assert database.execute_sql(count, (api["id"],)).fetchone()[0] == 2  # data kept

    assert requests.delete(f"{base}/{api['id']}", headers=as_writer, timeout=10).status_code == 204
    assert database.execute_sql(count, (api["id"],)).fetchone()[0] == 0
    actions = [
        r[0]
        for r in database.execute_sql(
            # SQLite reuses the ids of deleted rows: start at this repository's connection.
            "SELECT action FROM audit_logs WHERE target_type = 'repository' AND target_id = "
            + database.param
            + " AND id >= (SELECT MAX(id) FROM audit_logs WHERE action = 'repository.connected'"
            + " AND target_id = "
            + database.param
            + ") ORDER BY id",
            (str(api["id"]), str(api["id"])),
        ).fetchall()
    ]
    database.close()
    assert actions == [
        "repository.connected",
        "repository.secret_rotated",
        "repository.sensitivity_changed",
        "repository.disconnected",
        "repository.deleted",
    ]


def test_backfill_is_queued_run_by_its_worker_and_reports_progress(stack, fake_github):
    from tests.fake_github import load_rest_data

    fake_github.rest = load_rest_data()
    writer = new_key(stack, "techcorp", "activity:write", "activity:read")
    headers = {"Authorization": f"Bearer {writer}"}
    base = stack.url("activity") + "/api/v1/orgs/techcorp/repositories"
    repo = connect_verified(stack, fake_github, "techcorp", "techcorp/backfilled", 990101)
    url = f"{base}/{repo['id']}/backfill"
    assert requests.get(url, headers=headers, timeout=10).json()["state"] is None
    queued = requests.post(url, json={"since": "2017-01-01T00:00:00Z"}, headers=headers, timeout=10)
    assert queued.status_code == 202 and queued.json()["state"] == "queued"
    ran = stack.cli("worker", "backfill", "--once")
    assert ran.returncode == 0, ran.stderr
    progress = requests.get(url, headers=headers, timeout=10).json()
    assert progress["state"] == "done", progress
    assert progress["pages"] > 0 and progress["items"] >= 13 + 3
    assert progress["rate_limit_remaining"] == 4999
    issues = requests.get(
        stack.url("activity") + "/api/v1/orgs/techcorp/issues",
        params={"repository": repo["id"]},
        headers=headers,
        timeout=10,
    )
    assert json.loads(issues.headers["X-Pagination"])["total"] == 13
    requests.delete(f"{base}/{repo['id']}", headers=headers, timeout=10)


def test_backfill_command_line(stack, fake_github):
    from tests.fake_github import load_rest_data

    fake_github.rest = load_rest_data()
    writer = new_key(stack, "techcorp", "activity:write")
    base = stack.url("activity") + "/api/v1/orgs/techcorp/repositories"
    repo = connect_verified(stack, fake_github, "techcorp", "techcorp/cli-backfill", 990102)
    result = stack.cli("backfill", "techcorp/cli-backfill", "--since", "2017-01-01")
    assert result.returncode == 0, result.stderr
    assert "pages" in result.stderr and result.stdout.startswith("done: ")
    again = stack.cli("backfill", "techcorp/cli-backfill")
    assert "unchanged" in again.stdout and again.returncode == 0
    missing = stack.cli("backfill", "nobody/nothing")
    assert missing.returncode == 1 and "no connected repository" in missing.stderr
    requests.delete(
        f"{base}/{repo['id']}", headers={"Authorization": f"Bearer {writer}"}, timeout=10
    )
