"""Partial pull-request objects and issue-shaped data about pull requests (issue 18 items 1
and 2), from the real samples in tests/fixtures/github/webhooks edited as GitHub sends them,
through `POST /webhooks/github` and the events worker.

What each event's object carries (the samples): `pull_request` events the full object;
`pull_request_review` and `pull_request_review_thread` one without additions, deletions,
changed_files, commits (and comments, review_comments, merged, mergeable...);
`pull_request_review_comment` one that also lacks draft; `issues` and `issue_comment` about
a pull request an issue object with a `pull_request` key (title, labels, milestone, state,
comments, no branch or size); check_run, check_suite, workflow_run, deployment_review (and
deployment/deployment_status through their workflow_run) bare references (id, number, url,
head and base ref/sha/repo, no updated_at). A payload sets only what it carries, and only
where it is at least as new as the payload each field was last taken from."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import requests

from services.activity import processing
from shared.models import (
    DeveloperMetric,
    Event,
    EventStatus,
    Issue,
    IssueClosure,
    Organization,
    PullRequest,
    Repository,
    RepositoryStats,
    Review,
    TeamMetric,
    User,
)
from tests.helpers import bound_to
from tests.services import test_webhooks
from tests.services.conftest import connect_verified
from tests.services.test_auth import new_key
from tests.services.test_metrics_pipeline import _run_workers, _send
from tests.services.test_webhooks import SAMPLES, deliver

activity = test_webhooks.activity  # the samples' repositories connected, in-process app

HELLO_WORLD = 186853002
CREATED = "2025-03-03T09:00:00Z"
# When each delivery's object was updated on GitHub, oldest first.
T0, T1, T2, T3, T4, T5 = (
    "2025-03-03T09:00:00Z",
    "2025-03-04T11:00:00Z",
    "2025-03-05T10:00:00Z",
    "2025-03-05T12:00:00Z",
    "2025-03-06T09:00:00Z",
    "2025-03-06T15:00:00Z",
)
SIZES = ("additions", "deletions", "changed_files", "commits")
SIZE_COLUMNS = ("additions", "deletions", "changed_files", "commits_count")


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


def send(client, event: str, payload: dict) -> None:
    response = deliver(client, event, json.dumps(payload).encode())
    assert response.status_code == 202, response.json


def drain(limit: int = 200) -> None:
    while processing.process_batch("test-worker", limit=limit):
        pass
    failed = Event.select().where(Event.status.in_([EventStatus.FAILED, EventStatus.DEAD]))
    assert not failed.exists(), [e.last_error for e in failed]


def full(action: str, updated_at: str, **fields) -> dict:
    """pull_request/opened (PR #2 of Codertocat/Hello-World, the full object) as `action`."""
    payload = sample("pull_request/opened.payload.json")
    payload["action"] = action
    payload["pull_request"].update({"created_at": CREATED, "updated_at": updated_at, **fields})
    return payload


MERGED = dict(state="closed", merged=True, merged_at=T1, closed_at=T1)


def review(name: str, updated_at: str, **fields) -> dict:
    """pull_request_review/<name>: its pull request object as GitHub sends it (partial)."""
    payload = sample(f"pull_request_review/{name}.payload.json")
    assert not set(SIZES) & set(payload["pull_request"])
    payload["pull_request"].update({"created_at": CREATED, "updated_at": updated_at, **fields})
    payload["review"]["submitted_at"] = updated_at
    return payload


def pull_request() -> PullRequest:
    return PullRequest.get(
        (PullRequest.number == 2)
        & (PullRequest.repository == Repository.get(Repository.github_id == HELLO_WORLD))
    )


def sizes(row: PullRequest) -> tuple:
    return tuple(getattr(row, name) for name in SIZE_COLUMNS)


def as_issue_of_pull_request(payload: dict, updated_at: str) -> dict:
    """An issue sample made the issue of PR #2, as GitHub sends it for a pull request: a
    `pull_request` key (issues/milestoned's), the pull request's number and page."""
    pr_issue = sample("issues/milestoned.payload.json")["issue"]
    payload["issue"].update(
        number=2,
        id=pr_issue["id"],
        node_id=pr_issue["node_id"],
        html_url=pr_issue["html_url"],
        title=pr_issue["title"],  # the pull request's
        pull_request=pr_issue["pull_request"],
        updated_at=updated_at,
    )
    return payload


# pull_request_review ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["submitted", "dismissed"])
def test_a_review_after_the_merge_keeps_the_sizes_its_object_lacks(activity, name):
    send(
        activity,
        "pull_request",
        full("opened", T0, additions=120, deletions=30, changed_files=7, commits=3),
    )
    merged = full("closed", T1, additions=130, deletions=35, changed_files=8, commits=4, **MERGED)
    send(activity, "pull_request", merged)
    drain()
    assert sizes(pull_request()) == (130, 35, 8, 4)

    # A day after the merge: newer, and carrying what it has (a title edited since).
    late = review(name, T2, state="closed", merged_at=T1, closed_at=T1, title="Renamed")
    send(activity, "pull_request_review", late)
    drain()
    row = pull_request()
    assert sizes(row) == (130, 35, 8, 4)  # not 0: the review's object has no sizes
    assert (row.title, row.state, row.merged_at) == ("Renamed", "MERGED", processing.ts(T1))
    assert row.updated_at == processing.ts(T2)


def test_a_late_full_object_sets_what_newer_partial_objects_lack(activity):
    # The review (T2) is processed before the pull request's own events: it creates the row
    # from its partial object, without sizes.
    send(activity, "pull_request_review", review("submitted", T2, title="Newest title"))
    drain()
    assert sizes(pull_request()) == (0, 0, 0, 0)
    # Then the older full objects: `opened` (T0) and `synchronize` (T1) are older than the
    # review, so they set only what it lacked; the review's title (T2) stays.
    send(
        activity,
        "pull_request",
        full("opened", T0, additions=10, deletions=1, changed_files=1, commits=1),
    )
    drain()
    assert sizes(pull_request()) == (10, 1, 1, 1)
    send(
        activity,
        "pull_request",
        full("synchronize", T1, additions=200, deletions=20, changed_files=9, commits=2),
    )
    drain()
    row = pull_request()
    assert sizes(row) == (200, 20, 9, 2)
    assert row.title == "Newest title" and row.updated_at == processing.ts(T2)
    assert row.ready_at == processing.ts(CREATED)  # opened ready
    # A full object older than the sizes now stored changes nothing.
    send(activity, "pull_request", full("edited", T0, additions=1, title="Oldest"))
    drain()
    assert sizes(pull_request()) == (200, 20, 9, 2) and pull_request().title == "Newest title"


# pull_request_review_comment ----------------------------------------------------------


@pytest.mark.parametrize("name", ["created", "edited", "deleted"])
def test_a_review_comment_keeps_draft_and_sizes(activity, name):
    send(
        activity,
        "pull_request",
        full(
            "converted_to_draft",
            T0,
            draft=True,
            additions=40,
            deletions=4,
            changed_files=2,
            commits=1,
        ),
    )
    drain()
    payload = sample(f"pull_request_review_comment/{name}.payload.json")
    assert not {"draft", *SIZES} & set(payload["pull_request"])  # GitHub leaves them out
    payload["pull_request"].update(created_at=CREATED, updated_at=T1, title="Commented")
    payload["comment"].update(created_at=T1, updated_at=T1)
    send(activity, "pull_request_review_comment", payload)
    drain()
    row = pull_request()
    assert row.draft is True  # a draft stays a draft
    assert sizes(row) == (40, 4, 2, 1) and row.title == "Commented"


# pull_request_review_thread -----------------------------------------------------------


@pytest.mark.parametrize("name", ["resolved", "unresolved"])
def test_a_review_thread_changes_nothing_it_does_not_carry(activity, name):
    send(
        activity,
        "pull_request",
        full("opened", T0, additions=40, deletions=4, changed_files=2, commits=1),
    )
    drain()
    before = pull_request().__data__
    payload = sample(f"pull_request_review_thread/{name}.payload.json")
    assert not set(SIZES) & set(payload["pull_request"])
    payload["pull_request"].update(created_at=CREATED, updated_at=T1)
    send(activity, "pull_request_review_thread", payload)
    drain()
    # Kept raw (its comments come as pull_request_review_comment events): the row as it was.
    assert Event.get(Event.event_type == "pull_request_review_thread").status == "SKIPPED"
    assert pull_request().__data__ == before


# issue_comment on a pull request --------------------------------------------------------


def test_a_comment_on_a_pull_request_updates_its_labels_and_milestone_not_an_issue(activity):
    send(
        activity,
        "pull_request",
        full("opened", T0, additions=40, deletions=4, changed_files=2, commits=1),
    )
    drain()
    payload = as_issue_of_pull_request(sample("issue_comment/created.payload.json"), T1)
    bug = payload["issue"]["labels"][0]
    payload["issue"]["labels"] = [bug, {**bug, "id": 1, "name": "needs-review"}]
    payload["issue"]["milestone"]["title"] = "v2.0"
    payload["comment"].update(created_at=T1, updated_at=T1)
    send(activity, "issue_comment", payload)
    drain()
    row = pull_request()
    assert (row.labels, row.milestone) == (["bug", "needs-review"], "v2.0")
    assert sizes(row) == (40, 4, 2, 1) and row.state == "OPEN" and row.head_ref == "changes"
    assert row.comments == 1 and Review.get().kind == "ISSUE_COMMENT"
    assert not Issue.select().exists()


# issues about a pull request ------------------------------------------------------------


def test_issue_events_about_a_pull_request_update_it_and_are_never_issues(activity):
    send(
        activity,
        "pull_request",
        full("opened", T0, additions=40, deletions=4, changed_files=2, commits=1),
    )
    drain()
    milestoned = sample("issues/milestoned.payload.json")  # GitHub's own: PR #2's issue
    milestoned["issue"].update(updated_at=T1)
    send(activity, "issues", milestoned)
    drain()
    assert pull_request().milestone == "v1.0"
    demilestoned = sample("issues/demilestoned.payload.json")
    demilestoned["issue"].update(updated_at=T2)
    send(activity, "issues", demilestoned)
    # Delivered late: older than the demilestoning, so it changes nothing.
    late = sample("issues/milestoned.payload.json")
    late["issue"].update(updated_at=T1)
    send(activity, "issues", late)
    drain()
    assert pull_request().milestone is None
    labeled = as_issue_of_pull_request(sample("issues/labeled.payload.json"), T3)
    labeled["label"] = {**labeled["label"], "id": 2, "name": "enhancement"}
    labeled["issue"]["labels"].append(labeled["label"])
    labeled["issue"]["milestone"] = None  # as the pull request now is
    send(activity, "issues", labeled)
    drain()
    row = pull_request()
    assert (row.labels, row.milestone) == (["bug", "enhancement"], None)
    assert (
        sizes(row) == (40, 4, 2, 1)
        and row.state == "OPEN"
        and row.title == "Update the README with new information."
    )
    assert not Issue.select().exists() and not IssueClosure.select().exists()


def test_issue_events_about_a_pull_request_not_stored_are_skipped(activity):
    send(activity, "issues", sample("issues/milestoned.payload.json"))
    send(
        activity,
        "issue_comment",
        as_issue_of_pull_request(sample("issue_comment/created.payload.json"), T1),
    )
    drain()
    assert not Issue.select().exists() and not PullRequest.select().exists()
    assert not Review.select().exists()


# check, workflow and deployment events ---------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "check_run/completed.payload.json",
        "check_suite/completed.payload.json",
        "workflow_run/completed.with-pull-requests.payload.json",
        "deployment_review/requested.payload.json",
    ],
)
def test_bare_pull_request_references_change_nothing(activity, name):
    send(
        activity,
        "pull_request",
        full("opened", T0, additions=40, deletions=4, changed_files=2, commits=1),
    )
    drain()
    before = pull_request().__data__
    payload = sample(name)
    hello = sample("pull_request/opened.payload.json")["repository"]
    payload["repository"] = hello
    found = []

    def refs(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "pull_requests" and isinstance(value, list):
                    found.extend(value)
                refs(value)
        elif isinstance(node, list):
            for value in node:
                refs(value)

    refs(payload)
    assert found
    for ref in found:  # PR #2, at another head (what a newer push would show)
        assert "updated_at" not in ref and "additions" not in ref
        ref.update(number=2, head={**ref["head"], "ref": "elsewhere", "sha": "f" * 40})
    Repository.update(settings={"deployment_source": "workflow:test.yml"}).where(
        Repository.github_id == HELLO_WORLD
    ).execute()
    send(activity, name.split("/")[0], payload)
    drain()
    assert pull_request().__data__ == before


# The batch and event by event ------------------------------------------------------------


def test_a_batch_and_event_by_event_leave_the_same_pull_request(activity, monkeypatch):
    comment = as_issue_of_pull_request(sample("issue_comment/created.payload.json"), T4)
    comment["comment"].update(created_at=T4, updated_at=T4)
    milestoned = sample("issues/milestoned.payload.json")
    milestoned["issue"].update(updated_at=T3)
    review_comment = sample("pull_request_review_comment/created.payload.json")
    review_comment["pull_request"].update(
        created_at=CREATED, updated_at=T5, title="Newest title", milestone=milestoned["milestone"]
    )
    for issue in (milestoned["issue"], comment["issue"]):
        issue["title"] = "Newest title"  # the pull request's title since T2
    for event, payload in [
        ("pull_request_review", review("submitted", T2, title="Newest title")),
        ("pull_request", full("opened", T0, additions=10, deletions=1, changed_files=1, commits=1)),
        (
            "pull_request",
            full("synchronize", T1, additions=200, deletions=20, changed_files=9, commits=2),
        ),
        ("issues", milestoned),
        ("issue_comment", comment),
        ("pull_request_review_comment", review_comment),
    ]:
        send(activity, event, payload)

    def state():
        row = {k: v for k, v in pull_request().__data__.items() if k != "id"}
        return row, sorted((str(r.kind), r.github_id) for r in Review.select())

    def again():
        for model in (Review, PullRequest):
            model.delete().execute()
        assert processing.replay() == 6

    drain()  # one batch, the fast path
    together = state()
    again()
    with monkeypatch.context() as m:  # each event in its own savepoint (process_one)
        m.setattr(processing, "_process_together", lambda events: 1 / 0)
        drain()
    assert state() == together
    again()
    drain(limit=1)  # one event per batch
    assert state() == together

    row, reviews = together
    assert tuple(row[c] for c in SIZE_COLUMNS) == (200, 20, 9, 2)
    assert (row["title"], row["milestone"], row["comments"]) == ("Newest title", "v1.0", 1)
    assert row["updated_at"] == processing.ts(T5)
    assert len(reviews) == 3


# What a user sees: the daily rows and the API -----------------------------------------------

DAY, NEXT_DAY = "2026-09-14", "2026-09-15"


def _send_to(stack, secret: str, event: str, payload: dict, repo: dict) -> None:
    payload["repository"].update(full_name=repo["full_name"], id=repo["github_id"])
    _send(stack, secret, event, payload)


def test_the_merge_days_line_counts_survive_a_review_after_the_merge(stack, fake_github):
    writer = new_key(stack, "techcorp", "activity:write")
    reader = new_key(stack, "techcorp", "metrics:read", "activity:read")
    auth = {"Authorization": f"Bearer {reader}"}
    repo = connect_verified(stack, fake_github, "techcorp", "techcorp/partial", 880018)
    try:
        secret = repo["webhook_secret"]
        opened = full(
            "opened",
            f"{DAY}T09:00:00Z",
            created_at=f"{DAY}T09:00:00Z",
            additions=120,
            deletions=30,
            changed_files=7,
            commits=3,
        )
        _send_to(stack, secret, "pull_request", opened, repo)
        merged = full(
            "closed",
            f"{DAY}T11:00:00Z",
            created_at=f"{DAY}T09:00:00Z",
            state="closed",
            merged=True,
            merged_at=f"{DAY}T11:00:00Z",
            closed_at=f"{DAY}T11:00:00Z",
            additions=130,
            deletions=35,
            changed_files=8,
            commits=4,
        )
        _send_to(stack, secret, "pull_request", merged, repo)
        _run_workers(stack)
        # The next day: a review of the merged pull request, and its milestone (an `issues`
        # event about it), each carrying a partial object.
        late = review(
            "submitted",
            f"{NEXT_DAY}T10:00:00Z",
            created_at=f"{DAY}T09:00:00Z",
            state="closed",
            merged_at=f"{DAY}T11:00:00Z",
            closed_at=f"{DAY}T11:00:00Z",
        )
        late["review"]["user"].update(login="partial-reviewer", id=880019)
        _send_to(stack, secret, "pull_request_review", late, repo)
        milestoned = sample("issues/milestoned.payload.json")
        milestoned["issue"].update(
            updated_at=f"{NEXT_DAY}T11:00:00Z", created_at=f"{DAY}T09:00:00Z"
        )
        _send_to(stack, secret, "issues", milestoned, repo)
        _run_workers(stack)

        metrics = stack.url("metrics") + "/api/v1/orgs/techcorp/metrics"
        where = {"from": DAY, "to": NEXT_DAY, "repository": repo["id"]}
        daily = requests.get(f"{metrics}/daily", params=where, headers=auth, timeout=10).json()
        by_day = {r["date"]: r for r in daily}
        assert (by_day[DAY]["additions"], by_day[DAY]["deletions"]) == (130, 35)
        assert by_day[DAY]["prs_merged"] == 1 and by_day[NEXT_DAY]["reviews"] == 1
        assert by_day[DAY]["issues_opened"] == by_day[NEXT_DAY]["issues_opened"] == 0
        params = {**where, "user": "Codertocat"}
        (developer,) = requests.get(
            f"{metrics}/developers", params=params, headers=auth, timeout=10
        ).json()
        assert (developer["additions"], developer["deletions"]) == (130, 35)
        repositories = requests.get(
            f"{metrics}/repositories", params=where, headers=auth, timeout=10
        ).json()
        merge_day = [r for r in repositories if r["period_start"] == DAY]
        assert [(r["additions"], r["deletions"]) for r in merge_day] == [(130, 35)]
        assert [(r["issues_opened"], r["open_issues"]) for r in repositories] == [(0, 0)] * 2

        api = stack.url("activity") + "/api/v1/orgs/techcorp"
        mine = {"repository": repo["id"]}
        (pr,) = requests.get(f"{api}/pull-requests", params=mine, headers=auth, timeout=10).json()
        assert tuple(pr[name] for name in SIZE_COLUMNS) == (130, 35, 8, 4)
        assert (pr["labels"], pr["milestone"], pr["state"]) == (["bug"], "v1.0", "MERGED")
        issues = requests.get(f"{api}/issues", params=mine, headers=auth, timeout=10)
        assert issues.status_code == 200 and issues.json() == []

        with bound_to(stack.database_url):  # the stored daily rows themselves
            day = dt.date.fromisoformat(DAY)
            team = TeamMetric.get(
                (TeamMetric.organization == Organization.get(Organization.slug == "techcorp").id)
                & (TeamMetric.date == day)
            )
            # (the seeded organization has no other activity that day)
            assert (team.additions, team.deletions, team.issues_opened) == (130, 35, 0)
            stats = RepositoryStats.get(
                (RepositoryStats.repository == repo["id"]) & (RepositoryStats.date == day)
            )
            assert (stats.additions, stats.deletions) == (130, 35)
            author = DeveloperMetric.get(
                (DeveloperMetric.user == User.get(User.login == "Codertocat").id)
                & (DeveloperMetric.date == day)
            )
            assert (author.additions, author.deletions) == (130, 35)
    finally:
        requests.delete(
            f"{stack.url('activity')}/api/v1/orgs/techcorp/repositories/{repo['id']}",
            headers={"Authorization": f"Bearer {writer}"},
            timeout=10,
        )
