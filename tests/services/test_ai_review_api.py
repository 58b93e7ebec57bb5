"""AI review through the real path: a signed pull_request webhook to the activity service,
the events, outbox and ai_review workers as real `devmetrics worker` processes, the stored
review, its `ai_review.completed` notification, and the metrics API that reads it."""

import csv
import hashlib
import hmac
import io
import json
import uuid

import pytest
import requests

from shared.models import (
    AIReview,
    NotificationLog,
    NotificationRule,
    Organization,
    PullRequest,
    Repository,
)
from tests.helpers import WEBHOOK_SAMPLES, bound_to, wait_until
from tests.services.conftest import connect_verified
from tests.services.test_auth import new_key
from tests.test_ai_review import pr_file

SAMPLES = WEBHOOK_SAMPLES
FULL_NAME = "techcorp/ai-review-e2e"


@pytest.fixture
def reviewed(stack, fake_github):
    """A pull request opened on a fresh techcorp repository, reviewed through the workers."""
    # Connected by bob, signed in with GitHub: his token lists the pull request's files.
    repo = connect_verified(stack, fake_github, "techcorp", FULL_NAME, 880201)
    with bound_to(stack.database_url):
        techcorp = Organization.get(Organization.slug == "techcorp")
        rule = NotificationRule.create(
            organization=techcorp,
            name="AI reviews of the e2e repository",
            trigger="ai_review.completed",
            conditions={"all": [{"field": "repository", "op": "=", "value": FULL_NAME}]},
            channel="WEBHOOK",
            target="https://example.test/ai",
        )
    payload = json.loads((SAMPLES / "pull_request/opened.payload.json").read_text())
    payload["repository"].update(full_name=FULL_NAME, id=880201)
    payload["pull_request"]["id"] = 880201002
    number = payload["number"]
    fake_github.rest = {"pr_files": {number: [pr_file("README.md", 1, 1)]}}
    body = json.dumps(payload).encode()
    digest = hmac.new(repo["webhook_secret"].encode(), body, hashlib.sha256).hexdigest()
    delivered = requests.post(
        stack.url("activity") + "/webhooks/github",
        data=body,
        timeout=10,
        headers={
            "X-GitHub-Event": "pull_request",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": f"sha256={digest}",
            "Content-Type": "application/json",
        },
    )
    assert delivered.status_code == 202

    def review_exists():
        for worker in ("events", "outbox", "ai_review", "outbox"):
            assert stack.cli("worker", worker, "--once").returncode == 0
        with bound_to(stack.database_url):
            return (
                NotificationLog.select().where(NotificationLog.rule == rule.id).exists()
                and AIReview.select()
                .join(PullRequest)
                .where(PullRequest.repository == repo["id"])
                .exists()
            )

    wait_until(review_exists, timeout=60, interval=0.2, what="the review and its notification")
    try:
        yield {"repo": repo, "number": number, "rule": rule.id, "payload": payload}
    finally:
        writer = new_key(stack, "techcorp", "activity:write")
        base = stack.url("activity") + "/api/v1/orgs/techcorp/repositories"
        auth = {"Authorization": f"Bearer {writer}"}
        requests.delete(f"{base}/{repo['id']}", headers=auth, timeout=10)
        with bound_to(stack.database_url):
            NotificationRule.delete_by_id(rule.id)


def stored(stack, reviewed):
    """The pull request, its one review and the one notification of it."""
    with bound_to(stack.database_url):
        pr = PullRequest.get(
            (PullRequest.repository == reviewed["repo"]["id"])
            & (PullRequest.number == reviewed["number"])
        )
        [review] = list(AIReview.select().where(AIReview.pull_request == pr.id))
        [log] = list(NotificationLog.select().where(NotificationLog.rule == reviewed["rule"]))
    return pr, review, log


def test_an_opened_pull_request_is_reviewed_and_announced(stack, reviewed):
    pr, review, log = stored(stack, reviewed)
    assert review.head_sha == reviewed["payload"]["pull_request"]["head"]["sha"] == pr.head_sha
    assert review.provider == "heuristic"
    assert review.features["source"] == "github_files"
    assert [f["filename"] for f in review.features["file_list"]] == ["README.md"]
    # 2 lines in 1 file at the root, described, no fix: only Codertocat's first change (10).
    assert [(f["feature"], f["points"]) for f in review.findings] == [("author_prior_changes", 10)]
    assert (review.risk_score, review.risk_level) == (10, "LOW")
    assert review.summary == (
        "Risk 10/100 (LOW). Main factors: first change by Codertocat in the repository. "
        "Based on GitHub's list of the 1 changed files."
    )
    assert log.status == "PENDING"
    assert log.event_key == f"ai_review.completed:{review.id}"
    assert log.payload["data"] == {
        "risk_score": 10,
        "risk_level": "LOW",
        "provider": "heuristic",
        "pull_request_id": pr.id,
        "number": reviewed["number"],
        "title": "Update the README with new information.",
        "author": "Codertocat",
        "repository": FULL_NAME,
        "repository_id": reviewed["repo"]["id"],
        "sensitivity": "INTERNAL",
    }


def test_the_api_lists_filters_exports_and_summarizes(stack, reviewed):
    pr, review, _ = stored(stack, reviewed)
    reader = new_key(stack, "techcorp", "metrics:read")
    headers = {"Authorization": f"Bearer {reader}"}
    api = stack.url("metrics") + "/api/v1/orgs/techcorp"
    repo_id, pr_id = reviewed["repo"]["id"], pr.id

    listed = requests.get(f"{api}/ai-reviews", params={"repository": repo_id}, headers=headers)
    assert listed.status_code == 200, listed.text
    [item] = listed.json()
    assert item["id"] == review.id
    assert item["pull_request"]["repository"] == FULL_NAME
    assert (item["risk_score"], item["risk_level"]) == (10, "LOW")
    assert item["findings"][0]["feature"] == "author_prior_changes"
    assert json.loads(listed.headers["X-Pagination"])["total"] == 1
    for params, count in [
        ({"risk_level": "HIGH"}, 0),
        ({"provider": "llm"}, 0),
        ({"to": "2020-01-01"}, 0),
        ({"pull_request": pr_id}, 1),
    ]:
        response = requests.get(
            f"{api}/ai-reviews", params={"repository": repo_id, **params}, headers=headers
        )
        assert len(response.json()) == count, params

    per_pr = requests.get(f"{api}/pull-requests/{pr_id}/ai-reviews", headers=headers)
    assert [r["id"] for r in per_pr.json()] == [review.id]

    exported = requests.get(
        f"{api}/ai-reviews",
        params={"repository": repo_id},
        headers={**headers, "Accept": "text/csv"},
    )
    assert exported.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["pull_request.repository"], r["risk_score"], r["risk_level"]) for r in rows] == [
        (FULL_NAME, "10", "LOW")
    ]

    summary = requests.get(f"{api}/ai-reviews/summary", headers=headers).json()
    assert set(summary) == {"by_level", "reviews", "average_score", "riskiest"}
    assert set(summary["by_level"]) == {"LOW", "MEDIUM", "HIGH", "CRITICAL"}
    assert summary["reviews"] == sum(summary["by_level"].values()) >= 1
    assert len(summary["riskiest"]) <= 5

    with bound_to(stack.database_url):
        elsewhere = (
            PullRequest.select(PullRequest.id)
            .join(Repository)
            .where(Repository.full_name == "startup-inc/mobile-app")
            .first()
            .id
        )
    missing = requests.get(f"{api}/pull-requests/{elsewhere}/ai-reviews", headers=headers)
    assert missing.status_code == 404 and missing.json()["code"] == 404
    bad = requests.get(f"{api}/ai-reviews", params={"risk_level": "SEVERE"}, headers=headers)
    assert bad.status_code == 422 and "risk_level" in json.dumps(bad.json()["errors"])
    backwards = requests.get(
        f"{api}/ai-reviews/summary",
        params={"from": "2026-02-02", "to": "2026-01-01"},
        headers=headers,
    )
    assert backwards.status_code == 422 and "from" in json.dumps(backwards.json()["errors"])
    assert requests.get(f"{api}/ai-reviews").status_code == 401
    no_scope = new_key(stack, "techcorp", "activity:read")
    forbidden = requests.get(f"{api}/ai-reviews", headers={"Authorization": f"Bearer {no_scope}"})
    assert forbidden.status_code == 403
