"""The metric definitions on a hand-built history, with hand-computed answers.

The history (repository acme/api, GitHub deployments; all times UTC):

    2026-03-01 20:00  D0 production deployment created, success 20:10
    2026-03-01 23:00  c3 authored by bob (pushed 03-02 08:30 to feat-b)
    2026-03-02 08:00  c1, 09:00 c2 by alice on feat-a (pushed 08:05, 09:05)
    2026-03-02 09:00  PR #2 by bob opened as draft from feat-b
    2026-03-02 09:00  issue #10 by carol, labelled "incident" (closed 17:00 by alice)
    2026-03-02 10:00  PR #1 "Add feature A" by alice opened (ready) from feat-a
    2026-03-02 10:15  review comment by alice on her own PR #1 (no review)
    2026-03-02 10:20  conversation comment by carol on PR #1 (no review)
    2026-03-02 10:30  review comment by bob on PR #1 (first review)
    2026-03-02 11:00  bob reviews PR #1 (COMMENTED), 12:00 approves
    2026-03-02 12:00  c4 by dependabot[bot]; PR #3 by dependabot[bot], merged 12:30
    2026-03-02 14:00  PR #1 merged (+100 -20)
    2026-03-02 15:00  D1 production created, success 15:30
    2026-03-03 08:00  c5 by an e-mail that maps to nobody, on main
    2026-03-03 09:00  PR #2 ready for review; 10:00 alice approves; 11:00 merged (+7 -3)
    2026-03-03 10:00  issue #11 by alice (open)
    2026-03-03 11:00  D2 to staging created, success 11:30 (not production)
    2026-03-03 12:00  D3 production created, failure 12:10
    2026-03-03 13:00  D4 production created, success 13:20
    2026-03-03 16:00  PR #4 by carol opened (stays open)
    2026-03-04 09:00  PR #5 'Revert "Add feature A"' by alice from revert-1-feat-a, merged 10:00
    2026-03-04 10:30  D5 production created, success 10:45
    2026-03-04 11:00  PR #6 by carol opened, closed unmerged 12:00
"""

from __future__ import annotations

import datetime as dt

import pytest

from services.metrics import engine, periods
from services.metrics.engine import derive
from services.metrics.periods import Period
from services.metrics.scope import Scope
from shared.models import (
    Commit,
    DeveloperMetric,
    Incident,
    ProductionDeployment,
    PullRequest,
    Repository,
    RepositoryStats,
    Review,
    ReviewKind,
    TeamMetric,
    User,
)
from tests.metrics_history import History, at

D = dt.date
H = 3600


def build(history: History, recompute_each_step: bool = False):
    """The history above; with `recompute_each_step`, the incremental recompute runs after
    each step with what that step touched (as the activity messages would say)."""
    h = history

    def step():
        if recompute_each_step:
            changes = h.take_changes()
            engine.recompute(h.org.id, repository_ids=[h.repo.id], **changes)

    h.deployment("2026-03-01 20:00", "SUCCESS", "2026-03-01 20:10")
    step()
    h.commit("c3", "bob", "2026-03-01 23:00", branch="feat-b", pushed="2026-03-02 08:30")
    h.commit("c1", "alice", "2026-03-02 08:00", branch="feat-a", pushed="2026-03-02 08:05")
    h.commit("c2", "alice", "2026-03-02 09:00", branch="feat-a", pushed="2026-03-02 09:05")
    step()
    pr2 = h.pr(2, "bob", "2026-03-02 09:00", head="feat-b", draft=True)
    h.issue(10, "carol", "2026-03-02 09:00", labels=["incident", "bug"])
    pr1 = h.pr(1, "alice", "2026-03-02 10:00", head="feat-a", title="Add feature A")
    step()
    h.review(pr1, "alice", "2026-03-02 10:15", kind="REVIEW_COMMENT")
    h.review(pr1, "carol", "2026-03-02 10:20", kind="ISSUE_COMMENT")
    h.review(pr1, "bob", "2026-03-02 10:30", kind="REVIEW_COMMENT")
    h.review(pr1, "bob", "2026-03-02 11:00", state="COMMENTED")
    h.review(pr1, "bob", "2026-03-02 12:00", state="APPROVED")
    h.commit("c4", "dependabot[bot]", "2026-03-02 12:00", branch="dependabot/x")
    h.pr(3, "dependabot[bot]", "2026-03-02 12:00", merged="2026-03-02 12:30")
    step()
    PullRequest.update(
        merged_at=at("2026-03-02 14:00"),
        closed_at=at("2026-03-02 14:00"),
        state="MERGED",
        additions=100,
        deletions=20,
    ).where(PullRequest.id == pr1.id).execute()
    h._touch(at("2026-03-02 14:00"), pr=pr1, event_type="pull_request")
    step()
    h.deployment("2026-03-02 15:00", "SUCCESS", "2026-03-02 15:30")
    Issue_closed = "2026-03-02 17:00"
    from shared.models import Issue, IssueClosure

    issue10 = Issue.get(Issue.number == 10)
    Issue.update(state="CLOSED", closed_at=at(Issue_closed)).where(Issue.id == issue10.id).execute()
    IssueClosure.create(
        issue=issue10,
        organization=h.org,
        repository=h.repo,
        closed_at=at(Issue_closed),
        closer=h.user("alice"),
        closer_login="alice",
    )
    h._touch(at(Issue_closed), event_type="issues")
    step()
    h.commit("c5", None, "2026-03-03 08:00", email="dev@outside.example", pushed="2026-03-03 08:01")
    PullRequest.update(ready_at=at("2026-03-03 09:00"), draft=False).where(
        PullRequest.id == pr2.id
    ).execute()
    h._touch(at("2026-03-03 09:00"), pr=pr2, event_type="pull_request")
    step()
    h.review(pr2, "alice", "2026-03-03 10:00")
    h.issue(11, "alice", "2026-03-03 10:00")
    PullRequest.update(
        merged_at=at("2026-03-03 11:00"),
        closed_at=at("2026-03-03 11:00"),
        state="MERGED",
        additions=7,
        deletions=3,
    ).where(PullRequest.id == pr2.id).execute()
    h._touch(at("2026-03-03 11:00"), pr=pr2, event_type="pull_request")
    step()
    h.deployment("2026-03-03 11:00", "SUCCESS", "2026-03-03 11:30", environment="staging")
    h.deployment("2026-03-03 12:00", "FAILURE", "2026-03-03 12:10")
    step()
    h.deployment("2026-03-03 13:00", "SUCCESS", "2026-03-03 13:20")
    h.pr(4, "carol", "2026-03-03 16:00")
    step()
    h.pr(
        5,
        "alice",
        "2026-03-04 09:00",
        title='Revert "Add feature A"',
        head="revert-1-feat-a",
        merged="2026-03-04 10:00",
    )
    step()
    h.deployment("2026-03-04 10:30", "SUCCESS", "2026-03-04 10:45")
    h.pr(6, "carol", "2026-03-04 11:00", closed="2026-03-04 12:00")
    step()
    return h


@pytest.fixture
def history(tx):
    h = build(History())
    engine.recompute_full(h.org.id)
    return h


def pr(number) -> PullRequest:
    return PullRequest.get(PullRequest.number == number)


def test_pull_request_lifecycle_and_stages(history):
    one, two, five = pr(1), pr(2), pr(5)
    # PR #1: commits pushed to its branch; the first review is bob's review comment (the
    # author's own comment and conversation comments do not count).
    assert one.first_commit_at == at("2026-03-02 08:00")
    assert one.ready_at == at("2026-03-02 10:00")
    assert one.first_review_at == at("2026-03-02 10:30")
    assert one.approved_at == at("2026-03-02 12:00")
    assert one.deployed_at == at("2026-03-02 15:30")
    assert (one.coding_s, one.pickup_s, one.review_s, one.deploy_s, one.cycle_s) == (
        2 * H,
        0.5 * H,
        3.5 * H,
        1.5 * H,
        7.5 * H,
    )
    # PR #2: a commit authored the day before and pushed before the PR was opened counts;
    # a draft is ready when marked so; the failed and the staging deployments ship nothing.
    assert two.first_commit_at == at("2026-03-01 23:00")
    assert two.deployed_at == at("2026-03-03 13:20")
    assert (two.coding_s, two.pickup_s, two.review_s, two.deploy_s, two.cycle_s) == (
        34 * H,
        1 * H,
        1 * H,
        (2 + 1 / 3) * H,
        (38 + 1 / 3) * H,
    )
    # PR #5 has no commits and no review: its cycle starts when it was ready.
    assert five.first_commit_at is None and five.first_review_at is None
    assert (five.coding_s, five.pickup_s, five.review_s) == (None, None, None)
    assert (five.deploy_s, five.cycle_s) == (0.75 * H, 1.75 * H)
    # An open pull request has no cycle.
    assert pr(4).cycle_s is None and pr(6).cycle_s is None


def test_production_deployments_and_their_verdicts(history):
    rows = {
        row.finished_at: (row.succeeded, row.failed)
        for row in ProductionDeployment.select().order_by(ProductionDeployment.finished_at)
    }
    assert rows == {
        # followed by the labelled incident (03-02 09:00) before the next success
        at("2026-03-01 20:10"): (True, True),
        # first shipped PR #1, which was reverted
        at("2026-03-02 15:30"): (True, True),
        at("2026-03-03 12:10"): (False, True),
        at("2026-03-03 13:20"): (True, False),
        at("2026-03-04 10:45"): (True, False),
    }  # the staging deployment is not there


def test_incidents_of_all_three_kinds(history):
    incidents = {
        str(i.kind): (i.opened_at, i.resolved_at) for i in Incident.select().order_by(Incident.id)
    }
    assert incidents == {
        "LABELED_ISSUE": (at("2026-03-02 09:00"), at("2026-03-02 17:00")),
        "FAILED_DEPLOYMENT": (at("2026-03-03 12:10"), at("2026-03-03 13:20")),
        # from the reverted PR's deployment to the revert's deployment
        "REVERT": (at("2026-03-02 15:30"), at("2026-03-04 10:45")),
    }


TEAM = {
    D(2026, 3, 1): dict(
        commits=1,
        active_developers=1,
        deployments=1,
        failed_deployments=1,
        change_failure_rate=1.0,
        open_prs=0,
    ),
    D(2026, 3, 2): dict(
        commits=2,
        prs_opened=2,
        prs_merged=1,
        additions=100,
        deletions=20,
        reviews=2,
        review_comments=2,
        active_developers=2,
        issues_opened=1,
        issues_closed=1,
        deployments=1,
        failed_deployments=1,
        change_failure_rate=1.0,
        incidents_opened=2,
        incidents_resolved=1,
        time_to_restore_median_s=8 * H,
        open_prs=1,
        cycle_time_median_s=7.5 * H,
        cycle_time_p90_s=7.5 * H,
        coding_time_median_s=2 * H,
        pickup_time_median_s=0.5 * H,
        review_time_median_s=3.5 * H,
        deploy_time_median_s=1.5 * H,
        lead_time_median_s=7.5 * H,
    ),
    D(2026, 3, 3): dict(
        commits=1,
        prs_opened=1,
        prs_merged=1,
        additions=7,
        deletions=3,
        reviews=1,
        active_developers=3,
        issues_opened=1,
        deployments=2,
        failed_deployments=1,
        change_failure_rate=0.5,
        incidents_opened=1,
        incidents_resolved=1,
        time_to_restore_median_s=70 * 60,
        open_prs=1,
        cycle_time_median_s=(38 + 1 / 3) * H,
        coding_time_median_s=34 * H,
        lead_time_median_s=(38 + 1 / 3) * H,
    ),
    D(2026, 3, 4): dict(
        prs_opened=2,
        prs_merged=1,
        active_developers=2,
        deployments=1,
        change_failure_rate=0.0,
        incidents_resolved=1,
        time_to_restore_median_s=(43 + 0.25) * H,
        open_prs=1,
        cycle_time_median_s=1.75 * H,
        lead_time_median_s=1.75 * H,
    ),
}


def test_team_metrics_per_day(history):
    rows = {
        row.date: row for row in TeamMetric.select().where(TeamMetric.organization == history.org)
    }
    for day, expected in TEAM.items():
        row = rows[day]
        for name, value in expected.items():
            assert getattr(row, name) == pytest.approx(value), (day, name)
        for name in ("commits", "prs_opened", "prs_merged", "reviews", "deployments"):
            if name not in expected:
                assert getattr(row, name) == 0, (day, name)
    # A row for every day from the first activity to today, none before.
    today = dt.datetime.now(dt.UTC).date()
    assert min(rows) == D(2026, 3, 1) and max(rows) == today
    assert len(rows) == (today - D(2026, 3, 1)).days + 1
    quiet = rows[D(2026, 3, 10)]
    assert (quiet.commits, quiet.open_prs, quiet.deployments) == (0, 1, 0)


def test_developer_metrics_per_day(history):
    rows = {
        (row.user.login, row.date): row
        for row in DeveloperMetric.select()
        .join(User)
        .where(DeveloperMetric.organization == history.org)
    }
    expected = {
        ("bob", D(2026, 3, 1)): dict(commits=1),
        ("alice", D(2026, 3, 2)): dict(
            commits=2,
            prs_opened=1,
            prs_merged=1,
            additions=100,
            deletions=20,
            review_comments=1,
            issues_closed=1,
            cycle_time_median_s=7.5 * H,
        ),
        ("bob", D(2026, 3, 2)): dict(
            prs_opened=1, reviews_given=2, prs_reviewed=1, review_comments=1
        ),
        ("carol", D(2026, 3, 2)): dict(issues_opened=1),
        ("alice", D(2026, 3, 3)): dict(reviews_given=1, prs_reviewed=1, issues_opened=1),
        ("bob", D(2026, 3, 3)): dict(
            prs_merged=1, additions=7, deletions=3, cycle_time_median_s=(38 + 1 / 3) * H
        ),
        ("carol", D(2026, 3, 3)): dict(prs_opened=1),
        ("alice", D(2026, 3, 4)): dict(prs_opened=1, prs_merged=1, cycle_time_median_s=1.75 * H),
        ("carol", D(2026, 3, 4)): dict(prs_opened=1),
    }
    assert set(rows) == set(expected)  # no bot, no unmapped author, no empty row
    counters = (
        "commits",
        "prs_opened",
        "prs_merged",
        "reviews_given",
        "review_comments",
        "issues_opened",
        "issues_closed",
        "additions",
        "deletions",
    )
    for key, values in expected.items():
        for name in counters:
            assert getattr(rows[key], name) == values.get(name, 0), (key, name)
        if "cycle_time_median_s" in values:
            assert rows[key].cycle_time_median_s == pytest.approx(values["cycle_time_median_s"])


def test_repository_stats_per_day(history):
    rows = {row.date: row for row in RepositoryStats.select()}
    assert min(rows) == D(2026, 3, 1)
    expected = {
        D(2026, 3, 1): dict(commits=1, contributors=1, deployments=1, failed_deployments=1),
        D(2026, 3, 2): dict(
            commits=2,
            contributors=1,
            prs_opened=2,
            prs_merged=1,
            additions=100,
            deletions=20,
            issues_opened=1,
            issues_closed=1,
            open_prs=1,
            deployments=1,
            failed_deployments=1,
            reviews=2,
            review_comments=2,
        ),
        D(2026, 3, 3): dict(
            commits=1,
            contributors=1,
            prs_opened=1,
            prs_merged=1,
            additions=7,
            deletions=3,
            issues_opened=1,
            open_prs=1,
            open_issues=1,
            deployments=2,
            failed_deployments=1,
            reviews=1,
        ),
        D(2026, 3, 4): dict(
            prs_opened=2, prs_merged=1, prs_closed=1, open_prs=1, open_issues=1, deployments=1
        ),
    }
    names = (
        "commits",
        "contributors",
        "prs_opened",
        "prs_merged",
        "prs_closed",
        "additions",
        "deletions",
        "issues_opened",
        "issues_closed",
        "open_prs",
        "open_issues",
        "deployments",
        "failed_deployments",
        "reviews",
        "review_comments",
    )
    for day, values in expected.items():
        for name in names:
            assert getattr(rows[day], name) == values.get(name, 0), (day, name)


def _dump():
    def rows(model, *order):
        skip = {"id", "computed_at"}
        return [
            {k: v for k, v in row.items() if k not in skip}
            for row in model.select().order_by(*order).dicts()
        ]

    return {
        "team": rows(TeamMetric, TeamMetric.date),
        "developers": rows(DeveloperMetric, DeveloperMetric.user, DeveloperMetric.date),
        "repositories": rows(RepositoryStats, RepositoryStats.repository, RepositoryStats.date),
        "deployments": [
            (r.source, r.source_id, r.finished_at, r.succeeded, r.failed)
            for r in ProductionDeployment.select().order_by(ProductionDeployment.id)
        ],
        "incidents": [
            (str(r.kind), r.source_id, r.opened_at, r.resolved_at)
            for r in Incident.select().order_by(Incident.kind)
        ],
        "stages": list(
            PullRequest.select(
                PullRequest.number,
                PullRequest.first_commit_at,
                PullRequest.deployed_at,
                PullRequest.cycle_s,
                PullRequest.coding_s,
                PullRequest.deploy_s,
            )
            .order_by(PullRequest.number)
            .tuples()
        ),
    }


def test_incremental_recompute_equals_full_recompute(tx):
    history = build(History(), recompute_each_step=True)
    incremental = _dump()
    assert incremental["team"] and incremental["developers"]
    for model in (TeamMetric, DeveloperMetric, RepositoryStats):
        model.delete().execute()
    engine.recompute_full(history.org.id)
    assert _dump() == incremental


def test_a_refresh_after_a_full_recompute_touches_no_day(tx):
    """Derived values compare equal to what is stored (PostgreSQL keeps stages as `real`), so
    an unchanged history re-dates nothing and an incremental job stays incremental."""
    history = build(History())
    # Sub-second times give stage durations that a float4 cannot hold exactly.
    for pr in PullRequest.select().where(PullRequest.merged_at.is_null(False)):
        pr.merged_at += dt.timedelta(microseconds=123_457)
        pr.save()
    engine.recompute_full(history.org.id)
    for repo in Repository.select().where(Repository.organization == history.org):
        derived = derive.refresh_repository(repo)
        assert (derived.days, derived.new_incidents) == (set(), []), repo.full_name


def test_the_team_rollup_by_day_is_the_stored_daily_rows(tx):
    """The org-wide rollup by day reads the stored TeamMetric rows; they equal what the
    rollup computes from the underlying rows for every figure, on every day, including
    days without activity."""
    history = build(History())
    engine.recompute_full(history.org.id)
    period = Period(dt.date(2026, 2, 28), dt.date(2026, 3, 6))
    stored = periods.team_rollup(Scope(history.org), period, "day")
    computed = periods.computed_team_rollup(Scope(history.org), period, "day")
    assert [row["period_start"] for row in stored] == [
        dt.date(2026, 2, 28) + dt.timedelta(days=n) for n in range(7)
    ]
    assert stored == computed
    by_day = {row["period_start"]: row for row in stored}
    # Hand-checked against the history: two PRs merged on 03-02 (#3 is a bot's, left out)
    # is one human PR; D3 failed on 03-03 among two production deployments.
    assert by_day[dt.date(2026, 3, 2)]["prs_merged"] == 1
    assert by_day[dt.date(2026, 3, 3)]["change_failure_rate"] == 0.5
    assert by_day[dt.date(2026, 2, 28)]["commits"] == 0


def test_a_review_rederives_only_its_pull_request_and_a_push_the_whole_repository(history):
    """A change made of pull-request-local events (a review) re-derives the pull requests it
    names (and their branches'), not the others; a push re-derives every one."""
    # A stale value on another pull request: only a whole-repository refresh repairs it.
    PullRequest.update(first_commit_at=at("2026-01-01 00:00")).where(
        PullRequest.number == 4
    ).execute()
    Review.create(
        pull_request=pr(6),
        organization=history.org,
        kind=ReviewKind.REVIEW,
        github_id=990_001,
        reviewer_login="bob",
        submitted_at=at("2026-03-04 11:30"),
        state="COMMENTED",
    )
    PullRequest.update(first_review_at=at("2026-03-04 11:30")).where(
        PullRequest.number == 6
    ).execute()
    engine.recompute(
        history.org.id,
        repository_ids=[history.repo.id],
        dates=[dt.date(2026, 3, 4)],
        pull_request_ids=[pr(6).id],
        event_types=["pull_request_review"],
    )
    assert pr(6).pickup_s == 0.5 * H  # ready 11:00, first review 11:30
    assert pr(4).first_commit_at == at("2026-01-01 00:00")  # left alone
    engine.recompute(
        history.org.id,
        repository_ids=[history.repo.id],
        dates=[dt.date(2026, 3, 4)],
        event_types=["push"],
    )
    assert pr(4).first_commit_at is None  # no commit on its branch: repaired


def test_a_merge_that_adds_a_production_deployment_rederives_the_whole_repository(tx):
    """With merges as the deployment source, merging one pull request deploys the others
    merged before it: even a pull-request-local change re-derives the repository then."""
    h = History(repo_settings={"deployment_source": "merges"})
    h.pr(1, "alice", "2026-04-01 09:00", base="develop", merged="2026-04-01 10:00")
    h.pr(2, "bob", "2026-04-02 09:00")
    engine.recompute_full(h.org.id)
    assert pr(1).deployed_at is None  # merged into another branch: no deployment
    # Another stale value the merge's refresh must repair.
    PullRequest.update(first_commit_at=at("2026-01-01 00:00")).where(
        PullRequest.number == 2
    ).execute()
    h.take_changes()
    h.pr(3, "carol", "2026-04-03 09:00", merged="2026-04-03 10:00")
    changes = h.take_changes()
    assert changes["event_types"] == ["pull_request"]
    engine.recompute(h.org.id, repository_ids=[h.repo.id], **changes)
    assert pr(3).deployed_at == at("2026-04-03 10:00")
    assert pr(2).first_commit_at is None


def _with_a_second_repository(history: History) -> Repository:
    """Activity in a second repository: dave works only there, alice in both."""
    h = history
    vault = h.add_repository("acme/vault")
    h.commit("v1", "dave", "2026-03-02 09:30", repo=vault)
    h.commit("v2", "alice", "2026-03-03 09:30", repo=vault)
    pr = h.pr(
        40,
        "dave",
        "2026-03-02 10:00",
        merged="2026-03-03 15:00",
        additions=30,
        deletions=4,
        repo=vault,
    )
    h.review(pr, "alice", "2026-03-03 12:00")
    h.review(pr, "alice", "2026-03-03 13:00", state="COMMENTED")
    h.review(pr, "alice", "2026-03-03 13:10", kind="REVIEW_COMMENT")
    h.issue(41, "dave", "2026-03-03 08:00", closed="2026-03-04 08:00", closer="alice", repo=vault)
    h.deployment("2026-03-04 09:00", "FAILURE", "2026-03-04 09:20", repo=vault)
    return vault


@pytest.mark.parametrize("granularity", ["day", "week", "month"])
def test_figures_counted_from_activity_equal_the_stored_rows(tx, granularity):
    """A scope narrower than the organization cannot use the stored org-wide rows (they
    cannot be split by repository): its developer figures are counted from the activity
    and its team figures summed from the repositories' rows. Over every repository those
    equal the stored rows, figure for figure; hiding one leaves exactly the others' share."""
    history = build(History())
    vault = _with_a_second_repository(history)
    engine.recompute_full(history.org.id)
    org, period = history.org, Period(dt.date(2026, 2, 28), dt.date(2026, 3, 6))
    everything = Scope(org, hidden=(-1,))  # hides nothing that exists, reads no stored row
    assert not everything.whole_organization

    stored = list(periods.developer_rollup(Scope(org), period, granularity))
    assert {row["user"]["login"] for row in stored} == {"alice", "bob", "carol", "dave", "dev"}
    # c5's e-mail (dev@outside.example) no user owns: an unlinked contributor, by name part.
    assert {(r["user"]["id"], r["unlinked"]) for r in stored if r["user"]["login"] == "dev"} == {
        (None, True)
    }
    assert list(periods.developer_rollup(everything, period, granularity)) == stored
    assert periods.team_rollup(everything, period, granularity) == periods.team_rollup(
        Scope(org), period, granularity
    )
    all_days = periods.daily_rows(Scope(org), period.start, period.end)
    assert list(periods.daily_rows(everything, period.start, period.end)) == list(all_days)

    # Without the vault: dave is gone, alice keeps what she did in acme/api only, and the
    # figures are those of acme/api alone.
    hidden = Scope(org, hidden=(vault.id,))
    only_api = Scope(org, history.repo)
    without = list(periods.developer_rollup(hidden, period, granularity))
    assert without == list(periods.developer_rollup(only_api, period, granularity))
    assert "dave" not in {row["user"]["login"] for row in without}
    for figure in ("commits", "reviews_given", "prs_reviewed", "review_comments", "issues_closed"):
        assert sum(r[figure] for r in without if r["user"]["login"] == "alice") < sum(
            r[figure] for r in stored if r["user"]["login"] == "alice"
        ), figure
    team = periods.team_rollup(hidden, period, granularity)
    assert team == periods.team_rollup(only_api, period, granularity)
    assert (
        sum(r["commits"] for r in team)
        == Commit.select()
        .where(
            (Commit.repository == history.repo) & (Commit.author_is_bot == False)  # noqa: E712
        )
        .count()
    )
    assert sum(r["deployments"] for r in team) < sum(
        r["deployments"] for r in periods.team_rollup(Scope(org), period, granularity)
    )
