"""`POST /webhooks/github`: every real sample of tests/fixtures/github/webhooks through the real
endpoint with a real signature, then the events worker, landing in the right rows once."""

import hashlib
import hmac
import json
import uuid
from pathlib import Path

import pytest

from services.activity import processing
from services.activity.logic import _signature_ok
from shared import crypto, jobs
from shared.models import (
    Commit,
    Deployment,
    Event,
    EventStatus,
    Issue,
    Job,
    Organization,
    PullRequest,
    Repository,
    Review,
    utcnow,
)
from tests.helpers import WEBHOOK_SAMPLES

SAMPLES = WEBHOOK_SAMPLES
SUPPORTED = [
    "workflow_run",
    "push",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "issue_comment",
    "issues",
    "deployment",
    "deployment_status",
    "repository",
]
KEPT_RAW = ["create", "delete", "star", "label"]
SECRET = "s3cret-for-tests"


def samples(event: str) -> list[Path]:
    return sorted((SAMPLES / event).glob("*.json"))


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def activity(tx, monkeypatch):
    from services.activity import create_app

    monkeypatch.delenv("GITHUB_WEBHOOK_SECRET", raising=False)
    org = Organization.create(name="Samples", slug="samples", plan="PRO")
    for github_id, full_name in [
        (186853002, "Codertocat/Hello-World"),
        (186853261, "Octocoders/Hello-World"),
        (300029405, "octo-org/octo-repo"),
        (17273051, "octo-org/octo-repo-old"),
    ]:
        Repository.create(
            organization=org,
            github_id=github_id,
            full_name=full_name,
            webhook_secret_encrypted=crypto.encrypt(SECRET),
            verified_at=utcnow(),  # GitHub's API confirmed it
        )
    return create_app({"TESTING": True, "DATABASE": tx}).test_client()


def deliver(
    client,
    event,
    body: bytes,
    *,
    delivery=None,
    signature=None,
    headers=None,
    content_type="application/json",
):
    all_headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "4711",
        "Content-Type": content_type,
        "X-Hub-Signature-256": signature or sign(body),
        "User-Agent": "GitHub-Hookshot/abc123",
    }
    all_headers.update(headers or {})
    return client.post("/webhooks/github", data=body, headers=all_headers)


def drain():
    while processing.process_batch("test-worker", limit=25):
        pass


def test_signature_matches_githubs_documented_test_vector():
    # docs.github.com "Validating webhook deliveries": this secret and body, this digest.
    header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert _signature_ok(b"Hello, World!", header, ["It's a Secret to Everybody"])
    assert not _signature_ok(b"Hello, World!", header, ["another secret"])
    assert not _signature_ok(b"Hello, World!", "sha1=" + header[7:], ["It's a Secret to Everybody"])


def test_every_sample_lands_in_the_right_rows_exactly_once(activity):
    expected = {"commits": set(), "prs": {}, "reviews": set(), "issues": {}, "deployments": {}}
    for event in SUPPORTED + KEPT_RAW:
        for path in samples(event):
            body = path.read_bytes()
            response = deliver(activity, event, body)
            assert response.status_code == 202, (path.name, response.json)
            payload = json.loads(body)
            repo = payload["repository"]["id"]  # names change (renamed, transferred)
            if event == "push" and payload["ref"].startswith("refs/heads/"):
                expected["commits"] |= {(repo, c["id"]) for c in payload["commits"]}
            if "pull_request" in payload and event != "issue_comment":
                pr = payload["pull_request"]
                newest = expected["prs"].get((repo, pr["number"]))
                if newest is None or pr["updated_at"] >= newest["updated_at"]:
                    expected["prs"][(repo, pr["number"])] = pr
            if event == "pull_request_review" and payload["review"].get("submitted_at"):
                expected["reviews"].add(("REVIEW", payload["review"]["id"]))
            if event == "pull_request_review_comment" and payload["action"] != "deleted":
                expected["reviews"].add(("REVIEW_COMMENT", payload["comment"]["id"]))
            # An issue with a `pull_request` key (issues/milestoned, demilestoned: PR #2) is
            # the pull request's: never an issue.
            if event == "issues" and "pull_request" not in payload["issue"]:
                issue = payload["issue"]
                newest = expected["issues"].get((repo, issue["number"]))
                if newest is None or issue["updated_at"] >= newest["updated_at"]:
                    expected["issues"][(repo, issue["number"])] = issue
            if event in ("deployment", "deployment_status"):
                expected["deployments"][payload["deployment"]["id"]] = payload
    drain()
    assert Event.select().where(Event.status == EventStatus.FAILED).count() == 0, [
        e.last_error for e in Event.select().where(Event.status == EventStatus.FAILED)
    ]
    kept_raw = Event.select().where(Event.event_type.in_(KEPT_RAW))
    assert kept_raw.count() > 0 and all(e.status == EventStatus.SKIPPED for e in kept_raw)

    def snapshot():
        return {
            "commits": {(c.repository.github_id, c.sha) for c in Commit.select().join(Repository)},
            "prs": {
                (p.repository.github_id, p.number): (p.state, p.title, p.merged_at, p.ready_at)
                for p in PullRequest.select().join(Repository)
            },
            "reviews": {(str(r.kind), r.github_id) for r in Review.select()},
            "issues": {
                (i.repository.github_id, i.number): (i.state, tuple(i.labels), i.closed_at)
                for i in Issue.select().join(Repository)
            },
            "deployments": {
                (d.github_id, d.environment, str(d.state)) for d in Deployment.select()
            },
        }

    first = snapshot()
    assert first["commits"] == expected["commits"]
    assert set(first["prs"]) == set(expected["prs"])
    for key, pr in expected["prs"].items():
        row = PullRequest.get(
            (PullRequest.number == key[1])
            & (PullRequest.repository == Repository.get(Repository.github_id == key[0]))
        )
        assert row.title == pr["title"] and row.head_ref == pr["head"]["ref"]
        state = "MERGED" if pr.get("merged_at") else "CLOSED" if pr["state"] == "closed" else "OPEN"
        assert row.state == state
        assert row.created_at == processing.ts(pr["created_at"])
    assert first["reviews"] >= expected["reviews"] and expected["reviews"]
    assert set(first["issues"]) == set(expected["issues"])
    for key, issue in expected["issues"].items():
        state, labels, closed_at = first["issues"][key]
        assert state == issue["state"].upper()
        assert set(labels) == {label["name"] for label in issue["labels"]}
    assert {d[0] for d in first["deployments"]} == set(expected["deployments"])

    # Replaying every event converges on exactly the same rows (nothing doubled).
    assert processing.replay() == Event.select().count()
    drain()
    assert snapshot() == first
    # The metrics service is told which days changed, one message per (org, repository);
    # the notifications service gets the events alert rules can match.
    messages = [j.payload for j in Job.select().where(Job.queue == "outbox")]
    to_metrics = [m for m in messages if m["destination"] == "metrics"]
    assert to_metrics and {m["topic"] for m in to_metrics} == {
        "activity.changed",
        "ai_review.requested",  # opened and synchronized pull requests are reviewed
    }
    to_metrics = [m for m in to_metrics if m["topic"] == "activity.changed"]
    assert any(m["payload"]["dates"] for m in to_metrics)
    # Each names the webhook event types behind it (the metrics service narrows by them).
    stored_types = {t for (t,) in Event.select(Event.event_type).tuples()}
    assert all(set(m["payload"]["event_types"]) <= stored_types for m in to_metrics)
    assert {"push", "pull_request"} <= {t for m in to_metrics for t in m["payload"]["event_types"]}
    events = {m["payload"]["type"] for m in messages if m["destination"] == "notifications"}
    assert {"pull_request.opened", "pull_request.review_requested"} <= events


def test_form_encoded_deliveries_are_accepted(activity):
    from urllib.parse import urlencode

    raw = samples("issues")[0].read_bytes()
    body = urlencode({"payload": raw.decode()}).encode()
    response = deliver(activity, "issues", body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 202
    assert Event.get_by_id(response.json["id"]).payload == json.loads(raw)


@pytest.mark.parametrize(
    "case,status",
    [
        ("missing", 401),
        ("wrong", 401),
        ("sha1-only", 401),
        ("malformed", 400),
        ("not-an-object", 400),
        ("bad-utf8", 400),
        ("wrong-type", 400),
        ("unknown-repo", 404),
        ("no-delivery-id", 400),
    ],
)
def test_bad_deliveries_are_refused_and_nothing_is_stored(activity, case, status):
    body = samples("push")[0].read_bytes()
    headers, signature, content_type = {}, None, "application/json"
    if case == "missing":
        headers = {"X-Hub-Signature-256": ""}
    elif case == "wrong":
        signature = sign(body, "not-the-secret")
    elif case == "sha1-only":
        headers = {
            "X-Hub-Signature-256": "",
            "X-Hub-Signature": "sha1=" + hmac.new(SECRET.encode(), body, "sha1").hexdigest(),
        }
    elif case == "malformed":
        body = body[: len(body) // 2]
    elif case == "not-an-object":
        body = b"[1, 2, 3]"
    elif case == "bad-utf8":
        body = b'{"a": "\xff\xfe"}'
    elif case == "wrong-type":
        content_type = "text/plain"
    elif case == "unknown-repo":
        payload = json.loads(body)
        payload["repository"]["id"], payload["repository"]["full_name"] = 1, "nobody/nothing"
        body = json.dumps(payload).encode()
    elif case == "no-delivery-id":
        headers = {"X-GitHub-Delivery": ""}
    response = deliver(
        activity,
        "push",
        body,
        signature=signature or sign(body),
        headers=headers,
        content_type=content_type,
    )
    assert response.status_code == status, response.json
    assert set(response.json) == {"code", "status", "message", "errors"}
    assert Event.select().count() == 0


def test_redelivery_is_acknowledged_without_storing_again(activity):
    body = samples("push")[0].read_bytes()
    first = deliver(activity, "push", body, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    again = deliver(activity, "push", body, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json["status"] == "duplicate"
    assert Event.select().count() == 1
    # The same delivery id from another hook (an org hook, say) is a different delivery.
    other = deliver(
        activity,
        "push",
        body,
        delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958",
        headers={"X-GitHub-Hook-ID": "9999"},
    )
    assert other.status_code == 202 and Event.select().count() == 2


def test_ping_disconnected_and_oversize(activity):
    ping = samples("ping")[0].read_bytes()
    response = deliver(activity, "ping", ping)
    assert response.status_code == 200 and response.json["status"] == "pong"
    assert Event.select().count() == 0
    repo = Repository.get(Repository.github_id == 186853002)
    repo.is_active = False
    repo.save()
    assert deliver(activity, "push", samples("push")[0].read_bytes()).status_code == 404
    huge = b'{"x": "' + b"a" * (25 * 1024 * 1024 + 10) + b'"}'
    too_big = deliver(activity, "push", huge)
    assert too_big.status_code == 413 and too_big.json["code"] == 413


def test_out_of_order_events_converge(activity):
    pr_samples = {p.name: json.loads(p.read_bytes()) for p in samples("pull_request")}
    opened = next(
        p
        for p in pr_samples.values()
        if p["action"] == "opened" and p["repository"]["id"] == 186853002
    )
    closed = json.loads(json.dumps(opened))
    closed["action"] = "closed"
    closed["pull_request"].update(
        state="closed",
        merged_at="2030-01-02T00:00:00Z",
        closed_at="2030-01-02T00:00:00Z",
        updated_at="2030-01-02T00:00:00Z",
    )
    # The close arrives (and is processed) before the open.
    deliver(activity, "pull_request", json.dumps(closed).encode())
    drain()
    deliver(activity, "pull_request", json.dumps(opened).encode())
    drain()
    row = PullRequest.get(PullRequest.number == opened["number"])
    assert row.state == "MERGED"  # the older "opened" did not reopen it
    assert row.ready_at == processing.ts(opened["pull_request"]["created_at"])  # but set ready


def test_a_worker_killed_mid_batch_loses_and_doubles_nothing(activity):
    for path in samples("push"):
        deliver(activity, "push", path.read_bytes())
    due = Event.status == EventStatus.PENDING
    # A worker leases the batch and dies before finishing (its lease runs out).
    dead = jobs.lease(
        Event,
        due,
        "dead-worker",
        limit=50,
        lease_seconds=0,
        running_status=EventStatus.PROCESSING,
        order_by=(Event.id,),
    )
    assert dead and Commit.select().count() == 0
    drain()
    assert Event.select().where(Event.status != EventStatus.PROCESSED).count() == 0
    shas = [c.sha for c in Commit.select()]
    assert len(shas) == len(set(shas)) > 0
    assert all(e.attempts == 2 for e in Event.select())


def test_a_failing_event_is_recorded_and_retried_with_backoff(activity):
    payload = json.loads(samples("issues")[0].read_bytes())
    del payload["issue"]["number"]  # breaks normalization, not intake
    deliver(activity, "issues", json.dumps(payload).encode())
    drain()
    event = Event.get()
    assert event.status == EventStatus.FAILED and "number" in event.last_error
    assert event.next_attempt_at is not None and event.attempts == 1


def test_database_down_answers_503_never_2xx(restore_db):
    from services.activity import create_app

    app = create_app({"TESTING": True, "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"})
    body = samples("push")[0].read_bytes()
    response = deliver(app.test_client(), "push", body)
    assert response.status_code == 503
    assert response.json["message"] == "database unavailable, retry shortly"


def _variant(event: str, name: str, **changes) -> bytes:
    payload = json.loads((SAMPLES / event / name).read_text())
    for path, value in changes.items():
        target = payload
        *parents, leaf = path.split("__")
        for key in parents:
            target = target[key]
        target[leaf] = value
    return json.dumps(payload).encode()


def test_workflow_runs_named_by_the_repository_are_deployments(activity):
    body = (SAMPLES / "workflow_run" / "completed.payload.json").read_bytes()
    repo = Repository.get(Repository.github_id == json.loads(body)["repository"]["id"])
    deliver(activity, "workflow_run", body)
    drain()
    assert Deployment.select().count() == 0  # not a deploying workflow (yet)
    repo.settings = {"deployment_source": "workflow:test.yml"}
    repo.save()
    deliver(activity, "workflow_run", body)
    drain()
    (deployment,) = Deployment.select()
    run = json.loads(body)["workflow_run"]
    assert (deployment.kind, deployment.github_id, deployment.state) == (
        "WORKFLOW_RUN",
        run["id"],
        "SUCCESS",
    )
    assert deployment.sha == run["head_sha"] and deployment.environment == "production"
    assert deployment.finished_at == processing.ts(run["updated_at"])


@pytest.mark.parametrize(
    "statuses,outcome",
    [
        (
            [("in_progress", "10:00"), ("success", "10:10"), ("inactive", "12:00")],
            ("SUCCESS", "10:10"),
        ),
        ([("success", "10:10"), ("in_progress", "10:00")], ("SUCCESS", "10:10")),
        ([("success", "10:20"), ("failure", "10:10")], ("FAILURE", "10:10")),
        ([("failure", "10:10"), ("success", "10:20")], ("FAILURE", "10:10")),
        ([("queued", "10:00"), ("in_progress", "10:05")], ("IN_PROGRESS", None)),
    ],
)
def test_a_deployments_outcome_is_its_first_terminal_status(activity, statuses, outcome):
    base = json.loads((SAMPLES / "deployment_status/payload.json").read_text())
    for state, hhmm in statuses:  # delivered (and processed) in this order
        payload = json.loads(json.dumps(base))
        payload["deployment_status"].update(state=state, created_at=f"2030-05-01T{hhmm}:00Z")
        deliver(activity, "deployment_status", json.dumps(payload).encode())
        drain()
    (deployment,) = Deployment.select()
    state, finish = outcome
    assert deployment.state == state
    assert deployment.finished_at == (processing.ts(f"2030-05-01T{finish}:00Z") if finish else None)


def test_nul_characters_and_huge_numbers_are_handled_not_500(activity):
    payload = json.loads(samples("push")[0].read_bytes())
    payload["head_commit"] = {"message": "nul \u0000 inside"}
    nul = deliver(activity, "push", json.dumps(payload).encode())
    assert nul.status_code == 202
    stored = Event.get_by_id(nul.json["id"]).payload["head_commit"]["message"]
    assert stored == "nul \ufffd inside"
    payload["repository"]["id"] = 10**30
    payload["repository"]["full_name"] = "nobody/huge"
    huge = deliver(activity, "push", json.dumps(payload).encode())
    assert huge.status_code == 404
