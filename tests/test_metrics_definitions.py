"""The metric definitions one rule at a time, each on a small hand-built history."""

from __future__ import annotations

import datetime as dt

import pytest

from services.activity import authors
from services.activity.processing import Changes
from services.metrics import engine
from shared.models import (
    Commit,
    DeveloperMetric,
    Incident,
    Issue,
    Job,
    ProductionDeployment,
    PullRequest,
    PullRequestCommit,
    TeamMetric,
    User,
    UserEmail,
)
from tests.metrics_history import History, at

H = 3600


def team(history, day: str) -> TeamMetric:
    return TeamMetric.get(
        (TeamMetric.organization == history.org) & (TeamMetric.date == dt.date.fromisoformat(day))
    )


def refresh(history: History) -> None:
    engine.recompute_full(history.org.id)


def reload(pr: PullRequest) -> PullRequest:
    return PullRequest.get_by_id(pr.id)


def test_merges_as_deployments(tx):
    """Deployment source `merges`: each PR merged into the default branch is a successful
    production deployment finishing at its merge; GitHub deployments are ignored."""
    h = History(repo_settings={"deployment_source": "merges"})
    feature = h.pr(1, "alice", "2026-04-01 09:00", merged="2026-04-01 12:00")
    h.commit("a1", "alice", "2026-04-01 08:00", branch="branch-1", pushed="2026-04-01 08:30")
    # Merged into a release branch, shipped by the next merge into main.
    release = h.pr(2, "bob", "2026-04-01 10:00", base="release", merged="2026-04-01 13:00")
    later = h.pr(3, "bob", "2026-04-02 09:00", merged="2026-04-02 10:00")
    h.deployment("2026-04-01 12:30", "FAILURE", "2026-04-01 12:40")  # ignored
    refresh(h)
    assert reload(feature).deployed_at == at("2026-04-01 12:00")
    assert (reload(feature).deploy_s, reload(feature).cycle_s) == (0, 4 * H)
    assert reload(release).deployed_at == at("2026-04-02 10:00")
    assert reload(later).deployed_at == at("2026-04-02 10:00")
    sources = {(r.source, r.source_id, r.succeeded) for r in ProductionDeployment.select()}
    assert sources == {("merge", feature.id, True), ("merge", later.id, True)}
    day = team(h, "2026-04-01")
    assert (day.deployments, day.failed_deployments, day.change_failure_rate) == (1, 0, 0.0)
    assert not Incident.select().exists()


def test_workflow_runs_as_deployments(tx):
    """Deployment source `workflow:<name>`: completed runs on the default branch, success
    or failure, finishing at the run's update time; other branches and GitHub deployments
    do not count."""
    h = History(repo_settings={"deployment_source": "workflow:deploy.yml"})
    pr = h.pr(1, "alice", "2026-04-01 09:00", merged="2026-04-01 10:00")
    h.deployment("2026-04-01 10:05", "FAILURE", "2026-04-01 10:15", kind="WORKFLOW_RUN")
    h.deployment("2026-04-01 10:20", "SUCCESS", "2026-04-01 10:50", kind="WORKFLOW_RUN")
    h.deployment(
        "2026-04-01 10:00", "SUCCESS", "2026-04-01 10:10", kind="WORKFLOW_RUN", ref="feature"
    )
    h.deployment("2026-04-01 10:01", "SUCCESS", "2026-04-01 10:02")  # a GitHub deployment
    refresh(h)
    assert reload(pr).deployed_at == at("2026-04-01 10:50")
    day = team(h, "2026-04-01")
    assert (day.deployments, day.failed_deployments) == (2, 1)
    (incident,) = Incident.select()
    assert (incident.opened_at, incident.resolved_at) == (
        at("2026-04-01 10:15"),
        at("2026-04-01 10:50"),
    )


def test_production_environments_are_the_orgs_compared_case_insensitively(tx):
    h = History(org_settings={"production_environments": ["Live"]})
    h.deployment("2026-04-01 10:00", "SUCCESS", "2026-04-01 10:05", environment="LIVE")
    h.deployment("2026-04-01 11:00", "SUCCESS", "2026-04-01 11:05", environment="production")
    h.deployment("2026-04-01 12:00", "ERROR", "2026-04-01 12:05", environment="live")
    refresh(h)
    day = team(h, "2026-04-01")
    assert (day.deployments, day.failed_deployments) == (2, 1)

    default = History("other", "other/app")
    default.deployment("2026-04-01 10:00", "SUCCESS", "2026-04-01 10:05", environment="Prod")
    default.deployment("2026-04-01 11:00", "SUCCESS", "2026-04-01 11:05", environment="qa")
    default.deployment("2026-04-01 12:00", "IN_PROGRESS", None, environment="production")
    refresh(default)
    assert team(default, "2026-04-01").deployments == 1  # no terminal status: nowhere


def test_commits_of_a_reused_branch_and_listed_commits(tx):
    """A PR's commits: pushed to its branch before it ended and after an earlier PR from
    the same branch was closed, plus the commits the API lists for it."""
    h = History()
    h.commit("old", "alice", "2026-04-01 08:00", branch="fix", pushed="2026-04-01 08:00")
    first = h.pr(1, "alice", "2026-04-01 09:00", head="fix", merged="2026-04-01 10:00")
    h.commit("new", "alice", "2026-04-02 08:00", branch="fix", pushed="2026-04-02 08:05")
    second = h.pr(2, "alice", "2026-04-02 09:00", head="fix", merged="2026-04-02 12:00")
    h.commit("after", "alice", "2026-04-02 13:00", branch="fix", pushed="2026-04-02 13:00")
    # Backfilled: the API lists a commit first pushed to another branch (and pushed late).
    h.commit("cherry", "bob", "2026-03-30 07:00", branch="elsewhere", pushed="2026-04-05 00:00")
    listed = h.pr(3, "bob", "2026-04-03 09:00", head="pick", listed=["cherry"])
    refresh(h)
    assert reload(first).first_commit_at == at("2026-04-01 08:00")
    assert reload(second).first_commit_at == at("2026-04-02 08:00")
    assert reload(listed).first_commit_at == at("2026-03-30 07:00")
    assert PullRequestCommit.select().count() == 1


def test_negative_spans_are_null_and_left_out_of_medians(tx):
    h = History()
    # A commit authored after the PR was ready (a rebase with a new author date).
    h.commit("late", "alice", "2026-04-01 11:00", branch="branch-1", pushed="2026-04-01 11:00")
    odd = h.pr(1, "alice", "2026-04-01 10:00", merged="2026-04-01 12:00")
    plain = h.pr(2, "bob", "2026-04-01 09:00", merged="2026-04-01 13:00")
    refresh(h)
    odd = reload(odd)
    assert odd.first_commit_at == at("2026-04-01 11:00")
    assert odd.coding_s is None  # ready 10:00 - first commit 11:00 < 0
    assert odd.cycle_s == 1 * H  # merged 12:00 - first commit 11:00
    assert reload(plain).coding_s is None  # no commits at all
    day = team(h, "2026-04-01")
    assert day.coding_time_median_s is None
    assert day.cycle_time_median_s == pytest.approx(2.5 * H)  # (1h + 4h) / 2


def test_percentiles_interpolate_linearly_and_days_are_utc(tx):
    h = History()
    for number, (created, merged) in enumerate(
        [
            ("2026-04-01 00:00", "2026-04-01 01:00"),  # cycle 1h
            ("2026-04-01 08:00", "2026-04-01 10:00"),  # 2h
            ("2026-04-01 12:00", "2026-04-01 15:00"),  # 3h
            ("2026-04-01 13:59:59", "2026-04-01 23:59:59"),  # 10h, last second of the day
            ("2026-04-01 23:00", "2026-04-02 00:00"),  # 1h, first second of the next
        ],
        start=1,
    ):
        h.pr(number, "alice", created, merged=merged)
    refresh(h)
    first, second = team(h, "2026-04-01"), team(h, "2026-04-02")
    assert (first.prs_merged, second.prs_merged) == (4, 1)
    assert first.cycle_time_median_s == pytest.approx(2.5 * H)
    # rank 0.9 * 3 = 2.7: 3h + 0.7 * (10h - 3h)
    assert first.cycle_time_p90_s == pytest.approx(7.9 * H)
    assert second.cycle_time_median_s == pytest.approx(1 * H)
    (alice,) = DeveloperMetric.select().where(DeveloperMetric.date == dt.date(2026, 4, 1))
    assert alice.cycle_time_median_s == pytest.approx(2.5 * H)


def test_bots_count_nowhere_about_people_but_their_deployments_count(tx):
    h = History()
    bot_pr = h.pr(1, "renovate[bot]", "2026-04-01 09:00", merged="2026-04-01 10:00")
    h.review(bot_pr, "github-actions[bot]", "2026-04-01 09:30")
    h.commit("b1", "renovate[bot]", "2026-04-01 08:00")
    h.issue(
        1,
        "github-actions[bot]",
        "2026-04-01 08:00",
        closed="2026-04-01 09:00",
        closer="github-actions[bot]",
    )
    h.deployment("2026-04-01 10:30", "SUCCESS", "2026-04-01 10:40")
    refresh(h)
    day = team(h, "2026-04-01")
    counts = (
        day.commits,
        day.prs_opened,
        day.prs_merged,
        day.reviews,
        day.issues_opened,
        day.issues_closed,
        day.active_developers,
        day.open_prs,
    )
    assert counts == (0,) * 8
    assert day.cycle_time_median_s is None and day.lead_time_median_s is None
    assert day.deployments == 1
    assert reload(bot_pr).deployed_at == at("2026-04-01 10:40")  # derived all the same
    assert not DeveloperMetric.select().exists()
    assert not User.select().where(User.login.endswith("[bot]")).exists()


def test_a_late_deployment_changes_the_day_its_pull_request_was_merged(tx):
    h = History()
    h.pr(1, "alice", "2026-04-01 09:00", merged="2026-04-01 10:00")
    engine.recompute(h.org.id, repository_ids=[h.repo.id], **h.take_changes())
    assert team(h, "2026-04-01").deploy_time_median_s is None
    # Three days later, the first production deployment since the merge.
    h.deployment("2026-04-04 09:00", "SUCCESS", "2026-04-04 10:00")
    changes = h.take_changes()
    assert changes["dates"] == [dt.date(2026, 4, 4)]
    engine.recompute(h.org.id, repository_ids=[h.repo.id], **changes)
    merged_day = team(h, "2026-04-01")
    assert merged_day.deploy_time_median_s == 72 * H
    assert merged_day.cycle_time_median_s == 73 * H
    assert team(h, "2026-04-04").lead_time_median_s == 73 * H


def test_an_incident_label_fails_an_older_deployment_and_taking_it_off_undoes_it(tx):
    h = History()
    h.deployment("2026-04-01 10:00", "SUCCESS", "2026-04-01 10:10")
    h.deployment("2026-04-03 10:00", "SUCCESS", "2026-04-03 10:10")
    engine.recompute(h.org.id, repository_ids=[h.repo.id], **h.take_changes())
    assert team(h, "2026-04-01").failed_deployments == 0
    issue = h.issue(7, "carol", "2026-04-02 15:00", labels=["incident"])
    engine.recompute(h.org.id, repository_ids=[h.repo.id], **h.take_changes())
    assert team(h, "2026-04-01").failed_deployments == 1  # the day of the deployment
    assert team(h, "2026-04-03").failed_deployments == 0  # after the incident opened
    assert team(h, "2026-04-02").incidents_opened == 1
    # The new incident is announced to the notifications service.
    (message,) = [
        job.payload
        for job in Job.select().where(Job.queue == "outbox")
        if job.payload["payload"].get("type") == "incident.opened"
    ]
    assert message["destination"] == "notifications"
    assert message["payload"]["data"]["kind"] == "LABELED_ISSUE"

    Issue.update(labels=["bug"]).where(Issue.id == issue.id).execute()
    engine.recompute(h.org.id, repository_ids=[h.repo.id], dates=[dt.date(2026, 4, 2)])
    assert not Incident.select().exists()
    assert team(h, "2026-04-01").failed_deployments == 0
    assert team(h, "2026-04-02").incidents_opened == 0


def test_a_revert_by_title_and_a_revert_of_an_undeployed_pull_request(tx):
    h = History()
    original = h.pr(
        1, "alice", "2026-04-01 09:00", title="Speed up search", merged="2026-04-01 10:00"
    )
    h.pr(
        2,
        "bob",
        "2026-04-01 11:00",
        title='Revert "Speed up search"',
        head="bob/undo",
        merged="2026-04-01 12:30",
    )
    h.pr(
        3, "bob", "2026-04-01 11:30", title='Revert "Nothing we merged"', merged="2026-04-01 11:45"
    )
    refresh(h)
    (incident,) = Incident.select()
    # Never deployed: from the reverted PR's merge to the revert's merge.
    assert (incident.opened_at, incident.resolved_at) == (
        at("2026-04-01 10:00"),
        at("2026-04-01 12:30"),
    )
    assert reload(original).deployed_at is None
    assert team(h, "2026-04-01").time_to_restore_median_s == 2.5 * H


def test_commit_authors_map_by_login_else_by_email(tx):
    h = History()
    h.commit("x1", "newcomer", "2026-04-01 08:00")  # a login never signed in
    h.commit("x2", None, "2026-04-01 09:00", email="dana@example.com")
    h.commit("x3", None, "2026-04-01 10:00", email="nobody@example.com")
    refresh(h)
    newcomer = User.get(User.login == "newcomer")
    assert newcomer.github_id is None and newcomer.last_login_at is None
    assert team(h, "2026-04-01").commits == 3
    assert [(r.user.login, r.commits) for r in DeveloperMetric.select()] == [("newcomer", 1)]
    # Dana signs up later; GitHub lists that e-mail verified for her (accounts records it and
    # tells the activity service): her commit is hers from the next recompute on.
    dana = User.create(login="dana", github_id=4242, email="dana@example.com")
    UserEmail.create(user=dana, email="dana@example.com", verified=True, linked=True)
    authors.reconsider(["dana@example.com"], Changes())
    refresh(h)
    rows = {r.user.login: r.commits for r in DeveloperMetric.select().join(User)}
    assert rows == {"newcomer": 1, "dana": 1}
    assert Commit.get(Commit.sha == "x2").author.login == "dana"
    assert team(h, "2026-04-01").active_developers == 3  # nobody@ counts in the team only
