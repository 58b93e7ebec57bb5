"""The shared GitHub webhook samples (tests/fixtures/github/webhooks) delivered through the real
`POST /webhooks/github`, processed, and turned into daily metrics that match values worked
out by hand from the JSON.

The samples are delivered in the order GitHub would have sent them: by the time of what
each action is about (a pull request's or issue's `updated_at`, a review's `submitted_at`,
a comment's `updated_at`, a deployment's or status's `created_at`, a run's `updated_at`,
a push's `repository.pushed_at`); at the same second what starts a thing goes first and
what ends it last (closed, dismissed, deleted). Read that way the samples tell this story
(all times UTC):

    2019-05-15 15:19:25  commit 6113728f "Initial commit" by Codertocat, pushed to master
                         15:20:57 (push/with-new-branch, push/with-no-username-committer;
                         the three other pushes are tags)
    2019-05-15 15:20:33  PR #2 "Update the README with new information." by Codertocat
                         opened ready from `changes` (pull_request/opened ...)
    2019-05-15 15:20:35  PR #2 milestoned v1.0, then demilestoned (issues/milestoned,
                         demilestoned: their issue has a `pull_request` key, html_url .../pull/2;
                         it is the pull request, never an issue)
    2019-05-15 15:20:37  review comment 284312630 by Codertocat on PR #2: created, edited,
                         then deleted (pull_request_review_comment/*)
    2019-05-15 15:20:38  Codertocat reviews his own PR #2 (pull_request_review/*)
    2019-05-15 15:20:53  deployment 145988746 to `production` created (deployment/payload),
                         success at 15:20:55 (deployment_status/payload)
    2019-05-15 15:21:18  PR #2 closed without merging (pull_request/closed)
    2019-10-25 22:45:54  issue #1 of octo-org/octo-repo (github id 17273051) by the account
                         octo-org, type Organization (issues/transferred), open
    2020-10-05 16:33:49  run 289782451 of .github/workflows/test.yml on master completed,
                         success (workflow_run/completed*), the deployment source of
                         octo-org/octo-repo (github id 300029405) in this test
    2021-07-05 18:05:24  issue #1 of Codertocat/Hello-World by Codertocat, closed 18:07:10
                         (issues/reopened and issues/deleted carry the newest `updated_at`,
                         2021-10-11, so their created_at/closed_at win over the 2019 copies)
    2022-01-03 01:28:30  deployment 145988746 again, now to `github-pages` (gh-pages samples):
                         the same id as the production one, so it changes nothing (a
                         deployment's row is its first delivery; a later non-terminal status
                         does not undo its outcome)

Issue comments (issue_comment/*) are on plain issue #1, not on a pull request: they count
nowhere. No sample is by a bot user (github-pages[bot] is only a deployment's creator).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from services.metrics import engine
from services.metrics.logic import RECOMPUTE_QUEUE, run_recompute_job
from shared import crypto
from shared.models import (
    Deployment,
    DeveloperMetric,
    Event,
    EventStatus,
    Incident,
    Job,
    Organization,
    ProductionDeployment,
    PullRequest,
    Repository,
    RepositoryStats,
    TeamMetric,
    User,
    utcnow,
)
from shared.worker import run_batch
from tests.helpers import INTERNAL_TOKEN
from tests.services.test_webhooks import SAMPLES, SECRET, deliver, drain

D = dt.date
EVENTS = [
    "push",
    "pull_request",
    "pull_request_review",
    "pull_request_review_comment",
    "issue_comment",
    "issues",
    "deployment",
    "deployment_status",
    "workflow_run",
]
# Where each event says when its action happened.
MOMENT = {
    "pull_request": ("pull_request", "updated_at"),
    "pull_request_review": ("review", "submitted_at"),
    "pull_request_review_comment": ("comment", "updated_at"),
    "issue_comment": ("comment", "updated_at"),
    "issues": ("issue", "updated_at"),
    "deployment": ("deployment", "created_at"),
    "deployment_status": ("deployment_status", "created_at"),
    "workflow_run": ("workflow_run", "updated_at"),
}
# At the same second: what starts a thing, then what changes it, then what ends it.
LIFECYCLE = {"opened": 0, "created": 0, "submitted": 0, "closed": 2, "dismissed": 2, "deleted": 3}
HELLO_WORLD, OCTO_REPO_OLD, OCTO_REPO, OCTOCODERS = 186853002, 17273051, 300029405, 186853261
DELIVERIES_PER_ROUND = 8  # processed and recomputed incrementally after every 8 deliveries


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def occurred_at(event: str, payload: dict) -> dt.datetime:
    if event == "push":
        return dt.datetime.fromtimestamp(payload["repository"]["pushed_at"], dt.UTC)
    thing, field = MOMENT[event]
    return dt.datetime.fromisoformat(payload[thing][field])


def deliveries() -> list[tuple[str, str, bytes]]:
    """(event, sample name, body) of every sample of the metric events, in GitHub's order."""
    found = []
    for event in EVENTS:
        for path in sorted((SAMPLES / event).glob("*.json")):
            payload = json.loads(path.read_bytes())
            rank = LIFECYCLE.get(payload.get("action"), 1)
            key = (occurred_at(event, payload), rank, event, path.name)
            found.append((key, event, f"{event}/{path.name}", path.read_bytes()))
    return [(event, name, body) for _key, event, name, body in sorted(found)]


# Hand-computed expectations ------------------------------------------------------------

TEAM = {  # day -> non-zero counters; every other counter of every day is 0
    D(2019, 5, 15): dict(
        # push/with-new-branch and with-no-username-committer: one commit (same sha
        # 6113728f), timestamp 2019-05-15T15:19:25Z, pushed to refs/heads/master
        commits=1,
        # pull_request/*: PR #2, created_at 2019-05-15T15:20:33Z (merged_at null everywhere)
        prs_opened=1,
        # not issues_opened: issues/milestoned, demilestoned are about PR #2
        # deployment/payload: environment "production"; deployment_status/payload: state
        # "success", created_at 2019-05-15T15:20:55Z
        deployments=1,
        # Codertocat: the commit's author.username and PR #2's user.login
        active_developers=1,
        # not counted: reviews (pull_request_review: Codertocat on his own PR), review
        # comments (284312630 deleted), open_prs (PR #2 closed 15:21:18Z the same day)
    ),
    # issues/transferred: issue #1 of repository 17273051, created 2019-10-25T22:45:54Z by
    # octo-org (user.type "Organization": not a bot)
    D(2019, 10, 25): dict(issues_opened=1),
    # workflow_run/completed*: conclusion "success", updated_at 2020-10-05T16:33:49Z
    D(2020, 10, 5): dict(deployments=1),
    # issues/reopened, deleted: issue #1 created_at 2021-07-05T18:05:24Z, closed_at
    # 2021-07-05T18:07:10Z (no `closed` event: the closer is unknown, a team count only)
    D(2021, 7, 5): dict(issues_opened=1, issues_closed=1),
}
TEAM_COUNTERS = (
    "active_developers",
    "commits",
    "additions",
    "deletions",
    "prs_opened",
    "prs_merged",
    "reviews",
    "review_comments",
    "issues_opened",
    "issues_closed",
    "open_prs",
    "deployments",
    "failed_deployments",
    "incidents_opened",
    "incidents_resolved",
)
TEAM_FIGURES = tuple(  # no PR was merged or deployed and there is no incident
    f"{stage}_time_{stat}_s"
    for stage in ("cycle", "coding", "pickup", "review", "deploy")
    for stat in ("median", "p90")
) + ("lead_time_median_s", "time_to_restore_median_s")

DEVELOPERS = {  # (login, day) -> non-zero counters; nobody else has a row
    # the commit (author.username Codertocat), PR #2 (user.login)
    ("Codertocat", D(2019, 5, 15)): dict(commits=1, prs_opened=1),
    # issues/reopened, deleted: issue #1 by Codertocat, created 2021-07-05T18:05:24Z
    ("Codertocat", D(2021, 7, 5)): dict(issues_opened=1),
    # issues/transferred: issue #1 of repository 17273051 by octo-org
    ("octo-org", D(2019, 10, 25)): dict(issues_opened=1),
}
DEVELOPER_COUNTERS = (
    "commits",
    "additions",
    "deletions",
    "prs_opened",
    "prs_merged",
    "prs_reviewed",
    "reviews_given",
    "review_comments",
    "issues_opened",
    "issues_closed",
)

REPOSITORIES = {  # github id -> (first day with a row, open issues every day since)
    # the commit, PR #2 and deployment 145988746, all on 2019-05-15; issue #1 (2021) opens
    # and closes within a day (PR #2 is no open issue)
    HELLO_WORLD: (D(2019, 5, 15), 0),
    # issues/transferred, created 2019-10-25, still open
    OCTO_REPO_OLD: (D(2019, 10, 25), 1),
    # its only activity is the production run of 2020-10-05
    OCTO_REPO: (D(2020, 10, 5), 0),
    # Octocoders/Hello-World: no sample of these events is about it: no rows
}
REPOSITORY_DAYS = {  # (github id, day) -> non-zero counters other than open_issues
    (HELLO_WORLD, D(2019, 5, 15)): dict(
        commits=1,
        contributors=1,  # Codertocat
        prs_opened=1,
        prs_closed=1,  # pull_request/closed: closed_at 15:21:18Z, merged_at null
        deployments=1,
    ),
    (HELLO_WORLD, D(2021, 7, 5)): dict(issues_opened=1, issues_closed=1),
    (OCTO_REPO_OLD, D(2019, 10, 25)): dict(issues_opened=1),
    (OCTO_REPO, D(2020, 10, 5)): dict(deployments=1),
}
REPOSITORY_COUNTERS = (
    "commits",
    "additions",
    "deletions",
    "contributors",
    "prs_opened",
    "prs_merged",
    "prs_closed",
    "open_prs",
    "open_issues",
    "reviews",
    "review_comments",
    "issues_opened",
    "issues_closed",
    "deployments",
    "failed_deployments",
)

PRODUCTION_DEPLOYMENTS = {
    # (source, GitHub id, created_at, finished_at, succeeded, failed)
    # deployment/payload: created_at 15:20:53Z; deployment_status/payload: success 15:20:55Z
    ("deployment", 145988746, utc("2019-05-15 15:20:53"), utc("2019-05-15 15:20:55"), True, False),
    # workflow_run/completed: run_started_at and updated_at both 2020-10-05T16:33:49Z
    ("workflow", 289782451, utc("2020-10-05 16:33:49"), utc("2020-10-05 16:33:49"), True, False),
}


# The pipeline -------------------------------------------------------------------------


@pytest.fixture
def samples_org(tx, monkeypatch):
    """One organization with the samples' repositories, as they are on GitHub (default
    branch master); octo-org/octo-repo deploys with its test.yml workflow."""
    monkeypatch.delenv("GITHUB_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("INTERNAL_API_TOKEN", INTERNAL_TOKEN)
    org = Organization.create(name="Samples", slug="samples", plan="PRO")
    for github_id, full_name in [
        (HELLO_WORLD, "Codertocat/Hello-World"),
        (OCTOCODERS, "Octocoders/Hello-World"),
        (OCTO_REPO, "octo-org/octo-repo"),
        (OCTO_REPO_OLD, "octo-org/octo-repo-old"),
    ]:
        Repository.create(
            organization=org,
            github_id=github_id,
            full_name=full_name,
            default_branch="master",
            webhook_secret_encrypted=crypto.encrypt(SECRET),
            verified_at=utcnow(),  # GitHub's API confirmed it
            settings={"deployment_source": "workflow:test.yml"} if github_id == OCTO_REPO else {},
        )
    return org


def _apps(tx):
    from services.activity import create_app as activity_app
    from services.metrics import create_app as metrics_app

    config = {"TESTING": True, "DATABASE": tx}
    return activity_app(config).test_client(), metrics_app(config).test_client()


def _deliver_outbox_and_recompute(metrics) -> None:
    """What the outbox worker and the recompute worker do, in-process: messages for the
    metrics service go to its real inbox endpoint, then the queued recomputes run."""

    def to_inbox(job):
        message = job.payload
        if message["destination"] != "metrics":
            return  # the notifications service is not part of this test
        response = metrics.post(
            "/internal/v1/messages",
            json={"id": message["id"], "topic": message["topic"], "payload": message["payload"]},
            headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"},
        )
        assert response.status_code == 200, response.json

    while run_batch("outbox", to_inbox, "samples-outbox", limit=50):
        pass
    while run_batch(RECOMPUTE_QUEUE, run_recompute_job, "samples-recompute", limit=10):
        pass
    unfinished = Job.select().where(
        Job.queue.in_(["outbox", RECOMPUTE_QUEUE]) & (Job.status != "DONE")
    )
    assert not unfinished.exists(), [(j.queue, j.last_error) for j in unfinished]


def _round(activity, metrics, batch) -> None:
    """Deliver (event, name, body) samples, process them, then recompute incrementally."""
    for event, name, body in batch:
        response = deliver(activity, event, body)
        assert response.status_code == 202, (name, response.json)
    drain()
    failed = Event.select().where(Event.status != EventStatus.PROCESSED)
    assert not failed.exists(), [(e.event_type, e.status, e.last_error) for e in failed]
    _deliver_outbox_and_recompute(metrics)


def _sample(name: str) -> tuple[str, str, bytes]:
    return name.split("/")[0], name, (SAMPLES / name).read_bytes()


def _dump() -> dict:
    def rows(query):
        return [{k: v for k, v in row.items() if k not in ("id", "computed_at")} for row in query]

    return {
        "team": rows(TeamMetric.select().order_by(TeamMetric.date).dicts()),
        "developers": rows(
            DeveloperMetric.select(DeveloperMetric, User.login.alias("login"))
            .join(User)
            .order_by(User.login, DeveloperMetric.date)
            .dicts()
        ),
        "repositories": rows(
            RepositoryStats.select()
            .order_by(RepositoryStats.repository, RepositoryStats.date)
            .dicts()
        ),
        "production_deployments": sorted(
            ProductionDeployment.select(
                ProductionDeployment.source,
                ProductionDeployment.source_id,
                ProductionDeployment.created_at,
                ProductionDeployment.finished_at,
                ProductionDeployment.succeeded,
                ProductionDeployment.failed,
            ).tuples()
        ),
        "pull_requests": list(
            PullRequest.select(
                PullRequest.number,
                PullRequest.first_commit_at,
                PullRequest.deployed_at,
                PullRequest.coding_s,
                PullRequest.pickup_s,
                PullRequest.review_s,
                PullRequest.deploy_s,
                PullRequest.cycle_s,
            )
            .order_by(PullRequest.repository, PullRequest.number)
            .tuples()
        ),
        "incidents": list(Incident.select(Incident.kind, Incident.source_id).tuples()),
    }


def _full_recompute_of_everything() -> dict:
    """Everything the engine wrote, rebuilt from the activity alone."""
    for model in (TeamMetric, DeveloperMetric, RepositoryStats, ProductionDeployment):
        model.delete().execute()
    for org in Organization.select():
        engine.recompute_full(org.id)
    return _dump()


def _assert_hand_computed(org: Organization) -> None:
    today = engine.today()

    team = {row.date: row for row in TeamMetric.select().where(TeamMetric.organization == org)}
    # A row for every day from the first activity (the commit of 2019-05-15) to today.
    assert sorted(team) == [D(2019, 5, 15) + dt.timedelta(days=n) for n in range(len(team))]
    assert max(team) == today
    for day, row in team.items():
        expected = TEAM.get(day, {})
        assert {name: getattr(row, name) for name in TEAM_COUNTERS} == {
            name: expected.get(name, 0) for name in TEAM_COUNTERS
        }, day
        assert {name: getattr(row, name) for name in TEAM_FIGURES} == dict.fromkeys(TEAM_FIGURES), (
            day
        )
        # 0 failed of 1 on each deployment day; no rate without deployments
        assert row.change_failure_rate == (0.0 if expected.get("deployments") else None), day

    developers = {
        (row.user.login, row.date): row
        for row in DeveloperMetric.select().join(User).where(DeveloperMetric.organization == org)
    }
    assert set(developers) == set(DEVELOPERS)
    for key, row in developers.items():
        assert {name: getattr(row, name) for name in DEVELOPER_COUNTERS} == {
            name: DEVELOPERS[key].get(name, 0) for name in DEVELOPER_COUNTERS
        }, key
        assert (row.cycle_time_median_s, row.coding_time_median_s) == (None, None), key

    stats = {
        (row.repository.github_id, row.date): row
        for row in RepositoryStats.select()
        .join(Repository)
        .where(RepositoryStats.organization == org)
    }
    assert {github_id for github_id, _ in stats} == set(REPOSITORIES)
    for github_id, (first, open_issues) in REPOSITORIES.items():
        days = sorted(day for repo, day in stats if repo == github_id)
        assert (days[0], days[-1], len(days)) == (first, today, (today - first).days + 1)
        for day in days:
            row = stats[(github_id, day)]
            expected = {**REPOSITORY_DAYS.get((github_id, day), {}), "open_issues": open_issues}
            assert {name: getattr(row, name) for name in REPOSITORY_COUNTERS} == {
                name: expected.get(name, 0) for name in REPOSITORY_COUNTERS
            }, (github_id, day)
            assert row.cycle_time_median_s is None

    # Derived data: the production deployments, PR #2's (empty) stages, no incidents.
    production = (
        ProductionDeployment.select(
            ProductionDeployment.source,
            Deployment.github_id,
            ProductionDeployment.created_at,
            ProductionDeployment.finished_at,
            ProductionDeployment.succeeded,
            ProductionDeployment.failed,
        )
        .join(Deployment, on=(ProductionDeployment.source_id == Deployment.id))
        .where(ProductionDeployment.organization == org)
        .tuples()
    )
    assert set(production) == PRODUCTION_DEPLOYMENTS
    (pr,) = PullRequest.select().where(PullRequest.organization == org)
    assert (pr.number, pr.state, pr.draft) == (2, "CLOSED", False)  # pull_request/closed
    # pull_request/closed (the newest full object): additions, deletions, changed_files and
    # commits 1, labels ["bug"], milestone null (demilestoned before)
    assert (pr.additions, pr.deletions, pr.changed_files, pr.commits_count) == (1, 1, 1, 1)
    assert (pr.labels, pr.milestone) == (["bug"], None)
    # opened ready at created_at; closed at 15:21:18; no review by anyone but its author
    assert (pr.created_at, pr.ready_at, pr.closed_at, pr.merged_at, pr.first_review_at) == (
        utc("2019-05-15 15:20:33"),
        utc("2019-05-15 15:20:33"),
        utc("2019-05-15 15:21:18"),
        None,
        None,
    )
    # The only commit went to master, not to the PR's head branch `changes`; never merged,
    # so never deployed: no stage has both ends.
    assert (pr.first_commit_at, pr.deployed_at) == (None, None)
    assert (pr.coding_s, pr.pickup_s, pr.review_s, pr.deploy_s, pr.cycle_s) == (None,) * 5
    assert Incident.select().where(Incident.organization == org).count() == 0


def test_the_webhook_samples_give_the_hand_computed_metrics(samples_org, tx):
    planned = deliveries()
    order = [name for _event, name, _body in planned]
    # The hand computation above rests on this order where the samples collide:
    assert order.index("deployment/payload.json") < order.index("deployment/gh-pages.payload.json")
    assert order[-1] == "deployment_status/gh-pages.payload.json"
    pr_samples = [name for name in order if name.startswith("pull_request/")]
    assert pr_samples[-1] == "pull_request/closed.payload.json"
    comments = [name for name in order if name.startswith("pull_request_review_comment/")]
    assert comments[-1] == "pull_request_review_comment/deleted.payload.json"
    issues = [name for name in order if name.startswith("issues/")]
    assert issues[-2:] == ["issues/reopened.payload.json", "issues/deleted.payload.json"]

    activity, metrics = _apps(tx)
    # Incremental: the events worker, the outbox and the recompute jobs after every few
    # deliveries, as the running system would.
    for start in range(0, len(planned), DELIVERIES_PER_ROUND):
        _round(activity, metrics, planned[start : start + DELIVERIES_PER_ROUND])

    _assert_hand_computed(samples_org)
    incremental = _dump()

    assert _full_recompute_of_everything() == incremental
    _assert_hand_computed(samples_org)


# Orders and states the samples made us fix (each failed before its fix).


def test_an_issue_whose_created_at_moves_later_leaves_no_stale_day(samples_org, tx):
    activity, metrics = _apps(tx)
    # issues/opened: issue #1 created 2019-05-15T15:20:18Z. issues/reopened (updated_at
    # 2021-10-11, newer): the same issue #1 (id 444500041), created 2021-07-05T18:05:24Z.
    _round(activity, metrics, [_sample("issues/opened.payload.json")])
    _round(activity, metrics, [_sample("issues/reopened.payload.json")])
    incremental = _dump()
    # The day it used to count on is recomputed: it was the first activity, so rows now
    # start on the issue's new creation day.
    assert not TeamMetric.select().where(TeamMetric.date == D(2019, 5, 15)).exists()
    assert TeamMetric.get(TeamMetric.date == D(2021, 7, 5)).issues_opened == 1
    assert _full_recompute_of_everything() == incremental


def test_a_deleted_review_comment_stays_deleted_whatever_the_delivery_order(samples_org, tx):
    activity, metrics = _apps(tx)
    # pull_request_review_comment/*: comment 284312630 (created 2019-05-15T15:20:37Z),
    # created, edited and deleted; GitHub does not guarantee delivery order.
    names = ["created", "deleted", "edited"]
    _round(
        activity, metrics, [_sample(f"pull_request_review_comment/{n}.payload.json") for n in names]
    )
    row = TeamMetric.get(TeamMetric.date == D(2019, 5, 15))
    assert row.review_comments == 0  # the late edit does not revive it


def test_a_reopened_issue_counts_as_open(samples_org, tx):
    activity, metrics = _apps(tx)
    # issues/reopened: issue #1 state "open" (reopened; updated_at 2021-10-11T16:40:56Z),
    # closed_at 2021-07-05T18:07:10Z from its earlier closing.
    _round(activity, metrics, [_sample("issues/reopened.payload.json")])
    hello_world = Repository.get(Repository.github_id == HELLO_WORLD)
    today = RepositoryStats.get(
        (RepositoryStats.repository == hello_world) & (RepositoryStats.date == engine.today())
    )
    assert today.open_issues == 1  # its earlier closed_at no longer counts
