"""Issue 17, item 2: GitHub-id squatting. A repository connected while GitHub's metadata was
unavailable took its GitHub id from its first signed webhook, which its connector signs
himself: another organization's real repository could be claimed (its connect then answered
409) and, with the App secret set, the victim's real deliveries landed in the attacker's
organization.

Now a repository's GitHub identity comes only from GitHub's API with the connector's token;
an unverified repository accepts no webhooks (409 naming its state) and is verified in the
background; two organizations may connect one GitHub repository when each connector can read
it, and App-signed deliveries go to every organization that verified it."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import requests

from shared.models import Job, Organization, utcnow
from tests.conftest import connect
from tests.helpers import bound_to
from tests.reliability.report import record
from tests.security.conftest import APP_WEBHOOK_SECRET, github_sign_in, real_payload, sign

VICTIM_REPO = {"id": 9_917_300, "full_name": "victim17/product", "name": "product"}


def _api(stack, method: str, path: str, token: str, **kwargs):
    return requests.request(
        method,
        stack.url("activity") + path,
        headers={"Authorization": f"Bearer {token}"},
        timeout=15,
        **kwargs,
    )


def _org(stack, session: str, name: str) -> str:
    created = requests.post(
        stack.url("accounts") + "/api/v1/orgs",
        json={"name": name},
        headers={"Authorization": f"Bearer {session}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    with bound_to(stack.database_url):
        Organization.update(plan="PRO").where(Organization.slug == created.json()["slug"]).execute()
    return created.json()["slug"]


def _deliver(stack, secret: str, event: str = "push", delivery: str | None = None):
    payload = real_payload(event)
    payload["repository"].update(VICTIM_REPO)
    body = json.dumps(payload).encode()
    return requests.post(
        stack.url("activity") + "/webhooks/github",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
            "X-GitHub-Hook-ID": "17",
            "X-Hub-Signature-256": sign(body, secret),
        },
        timeout=10,
    )


def _events_by_org(stack) -> dict[str, int]:
    database = connect(stack.database_url)
    try:
        rows = database.execute_sql(
            "SELECT o.slug, COUNT(*) FROM events e JOIN organizations o ON o.id = e.organization_id"
            " JOIN repositories r ON r.id = e.repository_id WHERE r.full_name = 'victim17/product'"
            " GROUP BY o.slug"
        ).fetchall()
    finally:
        database.close()
    return dict(rows)


def test_a_webhook_never_gives_a_repository_its_github_identity(secure_stack, fake_github):
    stack = secure_stack
    attacker, _ = github_sign_in(stack, fake_github, "squatter17", 9_917_031)
    victim, victim_token = github_sign_in(stack, fake_github, "victim17", 9_917_032)
    evil, good = _org(stack, attacker, "Squat 17"), _org(stack, victim, "Victim 17")
    fake_github.add_repository(VICTIM_REPO["full_name"], VICTIM_REPO["id"], readers=[victim_token])

    # GitHub is down while the attacker connects the victim's repository by name.
    fake_github.mode = "error500"
    squat = _api(
        stack,
        "post",
        f"/api/v1/orgs/{evil}/repositories",
        attacker,
        json={"full_name": "victim17/product"},
    )
    fake_github.mode = "ok"
    assert squat.status_code == 201, squat.text
    claimed = squat.json()
    assert claimed["status"] == "pending_verification" and claimed["github_id"] is None
    assert "webhooks are refused" in claimed["status_detail"]
    # Its own signed deliveries, naming the victim's real GitHub id, are refused: 409 naming
    # the state, nothing stored, no identity learned.
    for event in ("ping", "push"):
        refused = _deliver(stack, claimed["webhook_secret"], event)
        assert refused.status_code == 409, refused.text
        assert "pending_verification" in refused.json()["message"]
    assert _events_by_org(stack) == {}

    # The victim connects the real repository: verified with their token, no 409.
    real = _api(
        stack,
        "post",
        f"/api/v1/orgs/{good}/repositories",
        victim,
        json={"full_name": "victim17/product"},
    )
    assert real.status_code == 201, real.text
    assert (real.json()["status"], real.json()["github_id"]) == ("verified", VICTIM_REPO["id"])
    # The victim's deliveries, signed with their hook's secret or the App's, land with them.
    assert _deliver(stack, real.json()["webhook_secret"]).status_code == 202
    assert _deliver(stack, APP_WEBHOOK_SECRET).status_code == 202
    assert _events_by_org(stack) == {good: 2}

    # The background retry asks GitHub with the attacker's token, which cannot read it: the
    # claim stays unverified, saying why, and still gets nothing.
    ran = stack.cli("worker", "backfill", "--once")
    assert ran.returncode == 0, ran.stderr
    shown = _api(stack, "get", f"/api/v1/orgs/{evil}/repositories/{claimed['id']}", attacker).json()
    assert shown["github_id"] is None and shown["status"] != "verified"
    assert "GitHub has no repository" in shown["status_detail"]
    assert _deliver(stack, APP_WEBHOOK_SECRET).status_code == 202
    assert _events_by_org(stack) == {good: 3}
    record(
        "17.2 GitHub-id squatting",
        "a repository connected while GitHub is down is unverified: its own signed ping and "
        "push naming another org's GitHub id answer 409, store nothing; the real owner "
        "connects it (no 409) and gets every delivery, App-signed ones too; the background "
        "check with the squatter's token fails and says why",
        passed=True,
        bad_inputs=2,
    )


def test_unverified_then_verified_in_the_background(secure_stack, fake_github):
    stack = secure_stack
    owner, token = github_sign_in(stack, fake_github, "patient17", 9_917_041)
    org = _org(stack, owner, "Patient 17")
    fake_github.add_repository("patient17/app", 9_917_400, readers=[token])
    fake_github.mode = "error500"
    pending = _api(
        stack,
        "post",
        f"/api/v1/orgs/{org}/repositories",
        owner,
        json={"full_name": "patient17/app"},
    )
    assert pending.status_code == 201 and pending.json()["status"] == "pending_verification"
    # Still down: the retry fails and stays queued.
    assert stack.cli("worker", "backfill", "--once").returncode == 0
    url = f"/api/v1/orgs/{org}/repositories/{pending.json()['id']}"
    assert _api(stack, "get", url, owner).json()["status"] == "pending_verification"
    fake_github.mode = "ok"
    with bound_to(stack.database_url):  # run the retry now rather than after its backoff
        Job.update(run_at=utcnow() - dt.timedelta(seconds=1)).where(
            Job.dedupe_key == f"verify:{pending.json()['id']}"
        ).execute()
    assert stack.cli("worker", "backfill", "--once").returncode == 0
    shown = _api(stack, "get", url, owner).json()
    assert (shown["status"], shown["github_id"]) == ("verified", 9_917_400)
    record(
        "17.2 GitHub-id squatting",
        "connected while GitHub is down: pending_verification, retried in the background "
        "with the connector's token until GitHub answers, then verified",
        passed=True,
        faults=2,
    )


def test_two_organizations_that_can_read_a_repository_both_get_its_app_deliveries(
    secure_stack, fake_github
):
    stack = secure_stack
    first, first_token = github_sign_in(stack, fake_github, "shared17a", 9_917_051)
    second, second_token = github_sign_in(stack, fake_github, "shared17b", 9_917_052)
    a, b = _org(stack, first, "Shared 17 A"), _org(stack, second, "Shared 17 B")
    full_name, github_id = "oss17/library", 9_917_500
    fake_github.add_repository(full_name, github_id, readers=[first_token, second_token])
    secrets_ = {}
    for slug, session in ((a, first), (b, second)):
        made = _api(
            stack,
            "post",
            f"/api/v1/orgs/{slug}/repositories",
            session,
            json={"full_name": full_name},
        )
        assert made.status_code == 201 and made.json()["status"] == "verified", made.text
        secrets_[slug] = made.json()["webhook_secret"]

    def deliver(secret, delivery, event="push", name="payload.json"):
        payload = real_payload(event, name)
        payload["repository"].update(id=github_id, full_name=full_name, name="library")
        body = json.dumps(payload).encode()
        return requests.post(
            stack.url("activity") + "/webhooks/github",
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": delivery,
                "X-GitHub-Hook-ID": "4242",
                "X-Hub-Signature-256": sign(body, secret),
            },
            timeout=10,
        )

    def counts():
        database = connect(stack.database_url)
        try:
            return dict(
                database.execute_sql(
                    "SELECT o.slug, COUNT(*) FROM events e JOIN repositories r ON r.id = "
                    "e.repository_id JOIN organizations o ON o.id = r.organization_id "
                    f"WHERE r.github_id = {database.param} GROUP BY o.slug",
                    (github_id,),
                ).fetchall()
            )
        finally:
            database.close()

    app_delivery = str(uuid.uuid4())
    assert deliver(APP_WEBHOOK_SECRET, app_delivery).status_code == 202
    assert counts() == {a: 1, b: 1}  # one App delivery, stored for each organization
    redelivered = deliver(APP_WEBHOOK_SECRET, app_delivery)
    assert redelivered.status_code == 200 and redelivered.json()["status"] == "duplicate"
    assert deliver(secrets_[a], str(uuid.uuid4())).status_code == 202  # a's own hook: a only
    assert counts() == {a: 2, b: 1}
    # A pull request and its review, App-signed: each organization keeps its own rows (the
    # same GitHub ids once per organization).
    for event, name in (
        ("pull_request", "opened.payload.json"),
        ("pull_request_review", "submitted.payload.json"),
    ):
        assert deliver(APP_WEBHOOK_SECRET, str(uuid.uuid4()), event, name).status_code == 202
    processed = stack.cli("worker", "events", "--once")
    assert processed.returncode == 0, processed.stderr
    database = connect(stack.database_url)
    try:
        rows = database.execute_sql(
            "SELECT o.slug, (SELECT COUNT(*) FROM pull_requests p WHERE p.repository_id = r.id),"
            " (SELECT COUNT(*) FROM reviews v JOIN pull_requests p ON p.id = v.pull_request_id"
            "  WHERE p.repository_id = r.id), (SELECT COUNT(*) FROM events e"
            "  WHERE e.repository_id = r.id AND e.status <> 'PROCESSED')"
            " FROM repositories r JOIN organizations o ON o.id = r.organization_id"
            f" WHERE r.github_id = {database.param}",
            (github_id,),
        ).fetchall()
    finally:
        database.close()
    assert sorted(rows) == sorted([(a, 1, 1, 0), (b, 1, 1, 0)])
    record(
        "17.2 GitHub-id squatting",
        "two organizations whose connectors can read one repository: an App-signed delivery "
        "is stored once for each, its redelivery for neither, a hook-signed one for its own; "
        "an App-signed pull request and review become each organization's own rows",
        passed=True,
        load=6,
    )
