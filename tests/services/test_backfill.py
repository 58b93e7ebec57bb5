"""Backfill from a local fake GitHub serving recorded real GitHub objects: pagination across
pages, a rate limit waited out, a 502 retried, 304s for unchanged pages, an incremental second
run, and the same rows webhooks produce."""

import json

import pytest

from services.activity import backfill, processing
from shared import crypto
from shared.models import (
    Commit,
    Deployment,
    Issue,
    Organization,
    PullRequest,
    Repository,
    Review,
    User,
    UserOrganization,
    utcnow,
)
from tests.fake_github import env_for, load_rest_data


@pytest.fixture
def github(fake_github, monkeypatch, tx):
    for name, value in env_for(fake_github).items():
        monkeypatch.setenv(name, value)
    fake_github.rest = load_rest_data()
    return fake_github


@pytest.fixture
def repo(tx):
    org = Organization.create(name="Backfill", slug="backfill", plan="PRO")
    # Connected by a member who signed in with GitHub: its calls use their token.
    owner = User.create(
        login="connector", github_id=990200, oauth_token_encrypted=crypto.encrypt("t")
    )
    UserOrganization.create(user=owner, organization=org, role="ADMIN")
    return Repository.create(
        organization=org,
        full_name="Codertocat/Hello-World",
        github_id=186853002,
        default_branch="master",
        webhook_secret_encrypted=crypto.encrypt("x"),
        verified_at=utcnow(),
        connected_by=owner,
    )


def run(repo, **kwargs):
    waits = []
    state = backfill.backfill(
        Repository.get_by_id(repo.id), token="gho_test", sleep=waits.append, **kwargs
    )
    return state, waits


def test_full_backfill_pages_through_and_lands_in_rows(github, repo):
    github.page_cap = 3  # 13 recorded issues: 5 pages, as GitHub paginated them
    github.rate_limit_once.add("pulls")
    github.error502_once.add("issues")
    state, waits = run(repo)
    assert state["state"] == "done" and state["error"] is None
    data = github.rest
    assert Issue.select().where(Issue.repository == repo).count() == 13
    assert sorted(i.number for i in Issue.select()) == list(range(1, 14))
    issue_pages = [r for r in github.rest_requests if r[0] == "issues"]
    assert len([r for r in issue_pages if r[1].get("page")]) == 4  # pages 2..5 via Link
    assert {p.number for p in PullRequest.select()} == {p["number"] for p in data["pulls"]}
    merged = PullRequest.get(PullRequest.number == 2)
    assert merged.state == "CLOSED" and merged.closed_at is not None
    # The list's objects have no sizes (GitHub's "simple" schema); each pull request's own
    # page has them, and the backfill read it.
    listed = next(p for p in data["pulls"] if p["number"] == 2)
    assert (merged.additions, merged.deletions, merged.changed_files) == (
        listed["additions"],
        listed["deletions"],
        listed["changed_files"],
    )
    assert merged.additions > 0
    assert {r[0] for r in github.rest_requests} >= {f"pulls/{p['number']}" for p in data["pulls"]}
    assert {r.github_id for r in Review.select()} == {data["reviews"][2][0]["id"]}
    # The recorded review is by the pull request's own author: not a first review.
    assert data["reviews"][2][0]["user"]["login"] == merged.author_login
    assert merged.first_review_at is None
    shas = {c["sha"] for c in data["commits"]}
    assert len(shas) == 2 and {c.sha for c in Commit.select()} == shas
    (deployment,) = Deployment.select()
    assert deployment.state == "SUCCESS"
    # The rate limit was waited out (until its reset), the 502 retried: nothing hammered.
    assert waits and 0 < waits[0] <= 3
    assert state["pages"] >= 5 + 3 and state["rate_limit_remaining"] == 4999


def test_second_run_is_incremental_and_conditional(github, repo):
    first, _ = run(repo)
    rows = (Issue.select().count(), PullRequest.select().count(), Commit.select().count())
    github.rest_requests.clear()
    second, _ = run(repo)
    assert (Issue.select().count(), PullRequest.select().count(), Commit.select().count()) == rows
    asked = {r[0]: r for r in github.rest_requests}
    # Issues and commits ask only for what is newer than the last item seen...
    assert asked["issues"][1]["since"] == "2017-10-10T16:00:01Z"
    assert "since" in asked["commits"][1]
    # ...and unchanged first pages come back 304 (conditional on the stored ETag).
    assert all(r[2] for r in github.rest_requests if r[0] in ("pulls", "deployments"))
    assert second["not_modified"] >= 2
    assert second["marks"] == first["marks"]


def test_backfill_and_webhooks_produce_the_same_rows(github, repo, tx):
    from tests.services.test_webhooks import SAMPLES

    # The same pull request and review, once through webhooks into another repository...
    other_org = Organization.create(name="Hooks", slug="hooks", plan="PRO")
    hooked = Repository.create(
        organization=other_org,
        full_name="hooks/copy",
        github_id=1,
        webhook_secret_encrypted=crypto.encrypt("x"),
    )
    github.rest["pulls"] = [p for p in github.rest["pulls"] if p["number"] == 2]
    changes = processing.Changes()
    for name in (
        "pull_request/opened.payload.json",
        "pull_request/closed.payload.json",
        "pull_request_review/submitted.payload.json",
    ):
        payload = json.loads((SAMPLES / name).read_text())
        # GitHub ids are global: the copy gets its own, everything else is the same.
        payload["pull_request"]["id"] += 10**9
        if "review" in payload:
            payload["review"]["id"] += 10**9
        event = type("E", (), {"action": payload["action"], "received_at": None})()
        handler = processing.HANDLERS[name.split("/")[0]]
        handler(event, hooked, payload, changes)
    # ...and once through the backfill.
    run(repo)

    def pr_row(repository):
        row = PullRequest.get(PullRequest.repository == repository)
        fields = (
            "number",
            "title",
            "state",
            "draft",
            "base_ref",
            "head_ref",
            "created_at",
            "ready_at",
            "first_review_at",
            "approved_at",
            "merged_at",
            "closed_at",
            # Not in GitHub's list of pull requests: the backfill reads each one's page.
            "additions",
            "deletions",
            "changed_files",
        )
        return {f: getattr(row, f) for f in fields}

    assert pr_row(hooked) == pr_row(repo)
    reviews = {(r.github_id % 10**9, r.state, r.submitted_at) for r in Review.select()}
    assert Review.select().count() == 2 and len(reviews) == 1  # same review, same values


def test_a_truncated_push_is_completed_from_the_compare_api(github, repo, tx):
    from shared import jobs
    from shared.models import Job
    from tests.fake_github import push_commit_as_api
    from tests.services.test_webhooks import SAMPLES

    sample = json.loads((SAMPLES / "push/with-new-branch.payload.json").read_text())
    base = sample["commits"][0]
    every = [{**base, "id": f"{n:040x}", "timestamp": "2019-05-15T15:20:00Z"} for n in range(2050)]
    payload = {**sample, "before": "a" * 40, "after": every[-1]["id"], "commits": every[:2048]}
    github.rest["compare"] = [push_commit_as_api(c) for c in every]
    processing.handle_push(
        type("E", (), {"received_at": None})(), repo, payload, processing.Changes()
    )
    assert Commit.select().count() == 2048
    (job,) = jobs.claim("backfill", "w")
    assert job.payload["kind"] == "push" and job.payload["after"] == every[-1]["id"]
    backfill.run_job(job)
    assert Commit.select().count() == 2050  # the two GitHub left out, nothing doubled
    pages = [r for r in github.rest_requests if r[0].startswith("compare/")]
    assert len(pages) == 9  # 2050 commits at 250 a page
    assert Job.select().where(Job.queue == "backfill", Job.status == "PENDING").count() == 0


def test_pull_requests_in_the_issues_list_update_them_and_are_never_issues(github, repo, tx):
    from services.metrics import engine
    from shared.models import IssueClosure, TeamMetric
    from tests.services.test_webhooks import SAMPLES

    # GitHub's issues list includes the pull requests, as issue objects with a
    # `pull_request` key: PR #3 (issues/milestoned's issue, GitHub's own shape), labelled
    # and milestoned after its last pull request update (2019-05-16T11:00:00Z).
    pr_issue = json.loads((SAMPLES / "issues/milestoned.payload.json").read_text())["issue"]
    pr_issue.update(
        number=3,
        title="Update the README with new information. #3",
        updated_at="2019-05-16T12:00:00Z",
        state="closed",
        closed_at="2019-05-16T12:00:00Z",
    )
    pr_issue["labels"].append({**pr_issue["labels"][0], "id": 7, "name": "docs"})
    # The recorded issues, less the numbers the recorded pull requests have (one sequence).
    plain = [i for i in github.rest["issues"] if i["number"] not in (2, 3, 4)]
    github.rest["issues"] = sorted([*plain, pr_issue], key=lambda i: i["updated_at"])
    state, _ = run(repo)
    assert state["state"] == "done"

    assert sorted(i.number for i in Issue.select()) == sorted(i["number"] for i in plain)
    assert not IssueClosure.select().exists()  # the recorded issues are open
    pr = PullRequest.get(PullRequest.number == 3)
    assert (pr.labels, pr.milestone) == (["bug", "docs"], "v1.0")
    # What the pull request's own object says stays: it is open, on its branch.
    assert (pr.state, pr.closed_at, pr.head_ref) == ("OPEN", None, "feature-3")
    # The daily issue counts are the plain issues only (all opened 2017-10-10).
    engine.recompute_full(repo.organization_id)
    opened = sum(row.issues_opened for row in TeamMetric.select())
    closed = sum(row.issues_closed for row in TeamMetric.select())
    assert (opened, closed) == (len(plain), 0)


def test_a_value_no_column_can_hold_makes_the_backfill_job_dead_at_once(github, repo, tx):
    from shared import jobs
    from shared.models import Job
    from shared.worker import run_batch

    # A pull request whose number is past 32 bits (the column is an integer): every attempt
    # would fail the same way, so the job is not retried for hours.
    github.rest["pulls"][0]["number"] = 2**32
    jobs.enqueue("backfill", {"repository_id": repo.id})
    assert run_batch("backfill", backfill.run_job, "test-backfill") == 1
    (job,) = Job.select().where(Job.queue == "backfill")
    assert (job.status, job.attempts) == ("DEAD", 1)
    assert job.last_error == (f"permanent: value out of range for pull_requests.number: {2**32}")
    assert run_batch("backfill", backfill.run_job, "test-backfill") == 0  # not leased again
    assert Repository.get_by_id(repo.id).backfill_state["state"] == "failed"
