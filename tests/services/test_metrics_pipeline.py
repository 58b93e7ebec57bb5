"""Webhooks to metrics across the real services: the activity service tells the metrics
service (outbox -> HTTP inbox) which days changed, the recompute worker rebuilds them, and
the metrics API serves the result."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import uuid

import requests

from shared.models import Job, Organization, PullRequest, TeamMetric
from tests.helpers import WEBHOOK_SAMPLES, bound_to
from tests.services.conftest import connect_verified
from tests.services.test_auth import new_key

SAMPLES = WEBHOOK_SAMPLES
DAY = "2026-10-05"


def _send(stack, secret: str, event: str, payload: dict) -> None:
    body = json.dumps(payload).encode()
    response = requests.post(
        stack.url("activity") + "/webhooks/github",
        data=body,
        timeout=10,
        headers={
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": "sha256="
            + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 202, response.text


def _sample(event: str, name: str, repo: dict) -> dict:
    payload = json.loads((SAMPLES / event / name).read_text())
    payload["repository"].update(full_name=repo["full_name"], id=repo["github_id"])
    return payload


def _run_workers(stack) -> None:
    for worker in ("events", "outbox", "recompute"):
        result = stack.cli("worker", worker, "--once")
        assert result.returncode == 0, result.stderr


def test_a_merged_and_deployed_pull_request_reaches_the_metrics_api(stack, fake_github):
    writer = new_key(stack, "techcorp", "activity:write")
    reader = new_key(stack, "techcorp", "metrics:read")
    base = stack.url("activity") + "/api/v1/orgs/techcorp/repositories"
    repo = connect_verified(stack, fake_github, "techcorp", "techcorp/pipeline", 880002)
    secret = repo["webhook_secret"]

    opened = _sample("pull_request", "opened.payload.json", repo)
    opened["pull_request"].update(
        created_at=f"{DAY}T09:00:00Z", updated_at=f"{DAY}T09:00:00Z", draft=False
    )
    _send(stack, secret, "pull_request", opened)
    _run_workers(stack)
    daily = stack.url("metrics") + "/api/v1/orgs/techcorp/metrics/daily"
    auth = {"Authorization": f"Bearer {reader}"}
    rows = requests.get(daily, params={"from": DAY, "to": DAY}, headers=auth, timeout=10).json()
    assert [(r["date"], r["prs_opened"], r["prs_merged"]) for r in rows] == [(DAY, 1, 0)]

    merged = _sample("pull_request", "closed.payload.json", repo)
    merged["pull_request"].update(
        created_at=f"{DAY}T09:00:00Z",
        updated_at=f"{DAY}T11:00:00Z",
        closed_at=f"{DAY}T11:00:00Z",
        merged_at=f"{DAY}T11:00:00Z",
        merged=True,
    )
    _send(stack, secret, "pull_request", merged)
    # Two days later, the production deployment that ships it.
    deployed = _sample("deployment_status", "payload.json", repo)
    later = (dt.date.fromisoformat(DAY) + dt.timedelta(days=2)).isoformat()
    deployed["deployment"].update(created_at=f"{later}T08:00:00Z", id=990001)
    deployed["deployment_status"].update(created_at=f"{later}T08:30:00Z", state="success")
    _send(stack, secret, "deployment_status", deployed)
    _run_workers(stack)

    rows = requests.get(daily, params={"from": DAY, "to": later}, headers=auth, timeout=10).json()
    by_day = {r["date"]: r for r in rows}
    assert by_day[DAY]["prs_merged"] == 1
    # The merge day's cycle now ends at the deployment: 09:00 ready -> +2 days 08:30.
    assert by_day[DAY]["cycle_time_median_s"] == (2 * 24 - 0.5) * 3600
    assert by_day[later]["deployments"] == 1
    with bound_to(stack.database_url):
        org = Organization.get(Organization.slug == "techcorp")
        pr = PullRequest.get(
            (PullRequest.repository == repo["id"]) & (PullRequest.number == opened["number"])
        )
        assert pr.deployed_at == dt.datetime(2026, 10, 7, 8, 30, tzinfo=dt.UTC)
        # The recompute covered every day from the change to today, and left no job behind.
        assert (
            TeamMetric.select()
            .where(
                (TeamMetric.organization == org)
                & (TeamMetric.date == dt.datetime.now(dt.UTC).date())
            )
            .exists()
        )
        pending = Job.select().where((Job.queue == "recompute") & (Job.status != "DONE"))
        assert not pending.exists()
    requests.delete(
        f"{base}/{repo['id']}", headers={"Authorization": f"Bearer {writer}"}, timeout=10
    )
