"""Period figures from hand-built rows (the engine's outputs), with hand-computed answers:
the DORA four keys and their categories (definitions 9-13), the cycle-time breakdown, and
day/week/month rollups of the daily tables."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from services.metrics import periods
from services.metrics.periods import Period
from services.metrics.scope import Scope, developer_in, scope_for, visible_repository
from shared.errors import NotFound
from shared.models import (
    Commit,
    DeveloperMetric,
    Incident,
    IncidentKind,
    Organization,
    ProductionDeployment,
    PullRequest,
    Repository,
    RepositoryStats,
    Review,
    ReviewKind,
    Sensitivity,
    TeamMetric,
    User,
    UserOrganization,
)

HOUR, DAY = 3600, 86_400
serial = itertools.count(1)


def at(day: str, hour: int = 12, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(hour, minute), tzinfo=dt.UTC)


def days(start: str, end: str) -> Period:
    return Period(dt.date.fromisoformat(start), dt.date.fromisoformat(end))


@pytest.fixture
def org(tx):
    n = next(serial)
    organization = Organization.create(name=f"Periods {n}", slug=f"periods-{n}")
    organization.repo_a = Repository.create(organization=organization, full_name=f"p{n}/a")
    organization.repo_b = Repository.create(organization=organization, full_name=f"p{n}/b")
    return organization


def pr(org, *, repo=None, bot=False, author=None, login="dev", **fields):
    number = next(serial)
    return PullRequest.create(
        repository=repo or org.repo_a,
        organization=org,
        number=number,
        author=author,
        author_login=login,
        author_is_bot=bot,
        base_ref="main",
        head_ref=f"branch-{number}",
        created_at=fields.pop("created_at", at("2026-01-01")),
        **fields,
    )


def deployment(org, finished: dt.datetime, *, succeeded=True, failed=False, repo=None):
    return ProductionDeployment.create(
        organization=org,
        repository=repo or org.repo_a,
        source="deployment",
        source_id=next(serial),
        created_at=finished - dt.timedelta(minutes=5),
        finished_at=finished,
        succeeded=succeeded,
        failed=failed,
    )


def incident(org, opened: dt.datetime, resolved: dt.datetime | None, *, kind, repo=None):
    return Incident.create(
        organization=org,
        repository=repo or org.repo_a,
        kind=kind,
        source_id=next(serial),
        opened_at=opened,
        resolved_at=resolved,
    )


# 9. Lead time -------------------------------------------------------------------------


def test_lead_time_is_the_median_cycle_of_human_prs_deployed_in_the_period(org):
    period = days("2026-03-02", "2026-03-08")
    for cycle, deployed in [
        (90_000, at("2026-03-02", 0)),  # first instant of the period
        (100_000, at("2026-03-04")),
        (200_000, at("2026-03-06")),
        (700_000, at("2026-03-08", 23, 59)),
    ]:
        pr(org, cycle_s=cycle, deployed_at=deployed)
    pr(org, bot=True, login="dependabot[bot]", cycle_s=10, deployed_at=at("2026-03-03"))
    pr(org, cycle_s=None, deployed_at=at("2026-03-05"))  # negative span: stored as NULL
    pr(org, cycle_s=1, deployed_at=at("2026-03-01", 23, 59))  # the day before
    pr(org, cycle_s=2, deployed_at=at("2026-03-09", 0))  # the day after
    pr(org, repo=org.repo_b, cycle_s=3, deployed_at=at("2026-03-04"))

    lead = periods.dora_keys(Scope(org), period)["lead_time"]
    # Human PRs deployed in the period with a cycle: 3 (repository b), 90000, 100000,
    # 200000, 700000 -> median 100000 (bots, NULL cycles and other days left out).
    assert lead == {"median_s": 100_000.0, "pull_requests": 5, "category": "high"}
    only_a = periods.dora_keys(Scope(org, org.repo_a), period)["lead_time"]
    # 90000, 100000, 200000, 700000 -> (100000 + 200000) / 2.
    assert only_a == {"median_s": 150_000.0, "pull_requests": 4, "category": "high"}


def test_lead_time_without_deployed_prs_has_no_category(org):
    pr(org, cycle_s=500, merged_at=at("2026-03-03"))  # merged, never deployed
    lead = periods.dora_keys(Scope(org), days("2026-03-02", "2026-03-08"))["lead_time"]
    assert lead == {"median_s": None, "pull_requests": 0, "category": None}


@pytest.mark.parametrize(
    ("seconds", "category"),
    [
        (0, "elite"),
        (DAY - 0.5, "elite"),
        (DAY, "high"),
        (7 * DAY - 1, "high"),
        (7 * DAY, "medium"),
        (30 * DAY - 1, "medium"),
        (30 * DAY, "low"),
        (None, None),
    ],
)
def test_lead_time_categories_at_their_boundaries(org, seconds, category):
    if seconds is not None:
        pr(org, cycle_s=seconds, deployed_at=at("2026-03-03"))
    lead = periods.dora_keys(Scope(org), days("2026-03-02", "2026-03-08"))["lead_time"]
    assert lead["category"] == category


# 10. Deployment frequency -------------------------------------------------------------


def test_deployment_frequency_counts_successes_finishing_in_the_period(org):
    period = days("2026-03-04", "2026-03-17")  # Wednesday to Tuesday, 14 days
    for day in ["2026-03-04", "2026-03-05", "2026-03-05", "2026-03-06", "2026-03-10"]:
        deployment(org, at(day))
    deployment(org, at("2026-03-16", 0))
    deployment(org, at("2026-03-17", 23, 59))
    deployment(org, at("2026-03-11"), succeeded=False, failed=True)  # not a success
    deployment(org, at("2026-03-12"), failed=True)  # a success counted failed: still one
    deployment(org, at("2026-03-03", 23, 59))  # before
    deployment(org, at("2026-03-18", 0))  # after
    deployment(org, at("2026-03-10"), repo=org.repo_b)

    frequency = periods.dora_keys(Scope(org), period)["deployment_frequency"]
    # 9 successes; clipped ISO weeks 04-08: 3 days, 09-15: 2 days (10, 12), 16-17: 2 days
    # -> median 2: high.
    assert frequency == {"deployments": 9, "per_day": 9 / 14, "per_week": 4.5, "category": "high"}
    only_a = periods.dora_keys(Scope(org, org.repo_a), period)["deployment_frequency"]
    assert only_a["deployments"] == 8 and only_a["per_week"] == 4.0


def test_deployment_frequency_weeks_are_clipped_to_the_period(org):
    # Thursday to Sunday: the first ISO week keeps only 4 days (05-08), the second all 7.
    period = days("2026-03-05", "2026-03-15")
    for day in range(2, 14):  # every day from Monday 03-02 to Friday 03-13
        deployment(org, at(f"2026-03-{day:02d}"))
    frequency = periods.dora_keys(Scope(org), period)["deployment_frequency"]
    # Inside: 4 days in the first week, 5 in the second -> median 4.5 < 5: high (counting
    # the 3 days before the period would give 7 and 5 -> 6: elite).
    assert frequency["deployments"] == 9
    assert frequency["category"] == "high"


def test_deployment_frequency_elite_counts_distinct_days(org):
    period = days("2026-03-02", "2026-03-15")  # two whole ISO weeks
    for day in ["02", "03", "04", "05", "06", "09", "10", "11", "12", "13"]:
        deployment(org, at(f"2026-03-{day}", 9))
    deployment(org, at("2026-03-02", 15))  # a second one the same day
    frequency = periods.dora_keys(Scope(org), period)["deployment_frequency"]
    assert frequency["deployments"] == 11 and frequency["category"] == "elite"

    # Four distinct days a week (the fifth deployment on a day already counted): high.
    ProductionDeployment.delete().where(
        (ProductionDeployment.organization == org)
        & (ProductionDeployment.finished_at.between(at("2026-03-13", 0), at("2026-03-13", 23)))
    ).execute()
    deployment(org, at("2026-03-12", 18))
    frequency = periods.dora_keys(Scope(org), period)["deployment_frequency"]
    assert frequency["deployments"] == 11 and frequency["category"] == "high"


def test_deployment_frequency_medium_and_low_by_month_medians(org):
    period = days("2026-01-15", "2026-04-10")  # months: Jan 15-31, Feb, Mar, Apr 1-10
    deployment(org, at("2026-01-20"))
    deployment(org, at("2026-02-10"))
    # Per month [1, 1, 0, 0] -> median 0.5: low. (Per week the median is 0.)
    assert periods.dora_keys(Scope(org), period)["deployment_frequency"]["category"] == "low"
    deployment(org, at("2026-03-05"))
    deployment(org, at("2026-03-06"))
    # Per month [1, 1, 2, 0] -> median 1: medium. (13 weeks, 4 with a deployment: median 0.)
    frequency = periods.dora_keys(Scope(org), period)["deployment_frequency"]
    assert frequency["category"] == "medium" and frequency["deployments"] == 4


def test_deployment_frequency_zero_deployments_is_low(org):
    keys = periods.dora_keys(Scope(org), days("2026-03-02", "2026-03-08"))
    frequency = keys["deployment_frequency"]
    assert frequency == {"deployments": 0, "per_day": 0.0, "per_week": 0.0, "category": "low"}


def test_frequency_category_medians_over_weeks_include_empty_weeks():
    period = days("2026-03-02", "2026-03-29")  # four whole weeks, one month (clipped)
    five_days = {dt.date(2026, 3, d) for d in range(2, 7)}
    # Weeks [5, 0, 0, 0] -> median 0; the month has 5 days -> medium.
    assert periods.frequency_category(five_days, period) == "medium"
    # Weeks [5, 5, 0, 0] -> median 2.5: high.
    ten_days = five_days | {dt.date(2026, 3, d) for d in range(9, 14)}
    assert periods.frequency_category(ten_days, period) == "high"
    # Weeks [5, 5, 5, 0] -> median 5: elite.
    fifteen = ten_days | {dt.date(2026, 3, d) for d in range(16, 21)}
    assert periods.frequency_category(fifteen, period) == "elite"


# 11. Change failure rate --------------------------------------------------------------


def test_change_failure_rate_is_failed_over_all_production_deployments(org):
    period = days("2026-03-02", "2026-03-08")
    for day in ["02", "03", "04", "05"]:
        deployment(org, at(f"2026-03-{day}"))
    deployment(org, at("2026-03-06"), failed=True)  # succeeded, then counted failed
    deployment(org, at("2026-03-07"), succeeded=False, failed=True)
    deployment(org, at("2026-03-09", 0), succeeded=False, failed=True)  # after
    deployment(org, at("2026-03-04"), succeeded=False, failed=True, repo=org.repo_b)

    cfr = periods.dora_keys(Scope(org), period)["change_failure_rate"]
    assert cfr == {"failed": 3, "deployments": 7, "rate": 3 / 7, "category": "low"}
    only_a = periods.dora_keys(Scope(org, org.repo_a), period)["change_failure_rate"]
    assert only_a == {"failed": 2, "deployments": 6, "rate": 2 / 6, "category": "low"}


def test_change_failure_rate_is_null_without_deployments(org):
    deployment(org, at("2026-03-01"), succeeded=False, failed=True)  # outside
    cfr = periods.dora_keys(Scope(org), days("2026-03-02", "2026-03-08"))["change_failure_rate"]
    assert cfr == {"failed": 0, "deployments": 0, "rate": None, "category": None}


@pytest.mark.parametrize(
    ("failed", "total", "category"),
    [(0, 20, "elite"), (1, 20, "elite"), (2, 20, "high"), (3, 20, "medium"), (4, 25, "low")],
)
def test_change_failure_rate_categories_at_their_boundaries(org, failed, total, category):
    start = at("2026-03-02", 0)
    for i in range(total):
        moment = start + dt.timedelta(minutes=10 * i)
        deployment(org, moment, succeeded=i >= failed, failed=i < failed)
    cfr = periods.dora_keys(Scope(org), days("2026-03-02", "2026-03-08"))["change_failure_rate"]
    assert (cfr["failed"], cfr["deployments"], cfr["category"]) == (failed, total, category)
    assert cfr["rate"] == pytest.approx(failed / total)


# 12. Time to restore ------------------------------------------------------------------


def test_time_to_restore_is_the_median_of_incidents_resolved_in_the_period(org):
    period = days("2026-03-02", "2026-03-08")
    opened = at("2026-03-03", 10)
    incident(org, opened, opened + dt.timedelta(seconds=1800), kind=IncidentKind.LABELED_ISSUE)
    incident(org, opened, opened + dt.timedelta(seconds=5400), kind=IncidentKind.REVERT)
    # Opened before the period, resolved in it: counts.
    incident(org, at("2026-02-27", 9), at("2026-03-02", 9), kind=IncidentKind.FAILED_DEPLOYMENT)
    incident(org, at("2026-03-04"), at("2026-03-04") - dt.timedelta(hours=1), kind="REVERT")
    incident(org, at("2026-03-04"), None, kind=IncidentKind.LABELED_ISSUE)  # unresolved
    incident(org, at("2026-03-08"), at("2026-03-09", 1), kind=IncidentKind.REVERT)  # after
    incident(org, opened, opened + dt.timedelta(seconds=60), kind="REVERT", repo=org.repo_b)

    restore = periods.dora_keys(Scope(org), period)["time_to_restore"]
    # 60, 1800, 5400, 259200 (Feb 27 09:00 -> Mar 2 09:00) -> (1800 + 5400) / 2 = 3600.
    assert restore == {"median_s": 3600.0, "incidents": 4, "category": "high"}
    only_a = periods.dora_keys(Scope(org, org.repo_a), period)["time_to_restore"]
    # 1800, 5400, 259200 -> 5400.
    assert only_a == {"median_s": 5400.0, "incidents": 3, "category": "high"}


@pytest.mark.parametrize(
    ("seconds", "category"),
    [
        (3599, "elite"),
        (3600, "high"),
        (DAY - 1, "high"),
        (DAY, "medium"),
        (7 * DAY - 1, "medium"),
        (7 * DAY, "low"),
    ],
)
def test_time_to_restore_categories_at_their_boundaries(org, seconds, category):
    opened = at("2026-02-20", 0)
    incident(org, opened, opened + dt.timedelta(seconds=seconds), kind=IncidentKind.REVERT)
    restore = periods.dora_keys(Scope(org), days("2026-02-20", "2026-03-01"))["time_to_restore"]
    assert (restore["median_s"], restore["category"]) == (seconds, category)


def test_time_to_restore_without_incidents_has_no_category(org):
    restore = periods.dora_keys(Scope(org), days("2026-03-02", "2026-03-08"))["time_to_restore"]
    assert restore == {"median_s": None, "incidents": 0, "category": None}


# Previous period -----------------------------------------------------------------------


def test_dora_compares_with_the_same_number_of_days_just_before(org):
    period = days("2026-03-09", "2026-03-15")
    deployment(org, at("2026-03-10"))
    deployment(org, at("2026-03-02", 0))  # first day of the previous period
    deployment(org, at("2026-03-08", 23), succeeded=False, failed=True)  # its last day
    deployment(org, at("2026-03-01", 23))  # before both
    pr(org, cycle_s=7200, deployed_at=at("2026-03-05"))

    figures = periods.dora(Scope(org), period)
    assert figures["period"] == {"start": period.start, "end": period.end, "days": 7}
    previous = figures["previous"]
    assert previous["period"] == {
        "start": dt.date(2026, 3, 2),
        "end": dt.date(2026, 3, 8),
        "days": 7,
    }
    assert previous["deployment_frequency"]["deployments"] == 1
    assert previous["change_failure_rate"] == {
        "failed": 1,
        "deployments": 2,
        "rate": 0.5,
        "category": "low",
    }
    assert previous["lead_time"] == {"median_s": 7200.0, "pull_requests": 1, "category": "elite"}
    assert figures["lead_time"]["pull_requests"] == 0
    assert figures["change_failure_rate"]["rate"] == 0.0
    assert "previous" not in previous


# Cycle-time breakdown ------------------------------------------------------------------


def test_cycle_time_breakdown_over_human_prs_merged_in_the_period(org):
    period = days("2026-03-02", "2026-03-08")
    stages = [  # coding, pickup, review, deploy, cycle
        (100, 10, 1000, 5, 1115),
        (200, 20, 2000, None, None),
        (300, 30, None, None, None),
        (400, None, None, None, None),
        (None, None, None, None, None),
    ]
    for i, (coding, pickup, review, deploy, cycle) in enumerate(stages):
        pr(
            org,
            merged_at=at(f"2026-03-0{i + 2}"),
            coding_s=coding,
            pickup_s=pickup,
            review_s=review,
            deploy_s=deploy,
            cycle_s=cycle,
        )
    pr(org, bot=True, merged_at=at("2026-03-03"), coding_s=9, cycle_s=9)
    pr(org, merged_at=at("2026-03-09", 0), coding_s=9, cycle_s=9)  # after
    pr(org, repo=org.repo_b, merged_at=at("2026-03-03"), coding_s=500, cycle_s=600)

    result = periods.cycle_time_breakdown(Scope(org, org.repo_a), period)
    assert result["pull_requests"] == 5
    # coding 100..400: median 250; p75 rank 2.25 -> 325; p90 rank 2.7 -> 370.
    assert result["stages"]["coding"] == {
        "median_s": 250.0,
        "p75_s": pytest.approx(325.0),
        "p90_s": pytest.approx(370.0),
        "count": 4,
    }
    # pickup 10, 20, 30: median 20; p75 rank 1.5 -> 25; p90 rank 1.8 -> 28.
    assert result["stages"]["pickup"] == {
        "median_s": 20.0,
        "p75_s": pytest.approx(25.0),
        "p90_s": pytest.approx(28.0),
        "count": 3,
    }
    assert result["stages"]["review"]["median_s"] == 1500.0
    assert result["stages"]["deploy"] == {"median_s": 5.0, "p75_s": 5.0, "p90_s": 5.0, "count": 1}
    assert result["stages"]["cycle"]["count"] == 1
    org_wide = periods.cycle_time_breakdown(Scope(org), period)
    # coding 100, 200, 300, 400, 500 -> 300; cycle 600 and 1115 -> 857.5.
    assert org_wide["pull_requests"] == 6
    assert org_wide["stages"]["coding"]["median_s"] == 300.0
    assert org_wide["stages"]["cycle"]["median_s"] == 857.5


# Rollups -------------------------------------------------------------------------------


def test_periods_are_clipped_iso_weeks_and_calendar_months():
    weeks = periods.periods_of(days("2026-03-04", "2026-03-18"), "week")
    assert [(p.start.isoformat(), p.end.isoformat()) for p in weeks] == [
        ("2026-03-04", "2026-03-08"),
        ("2026-03-09", "2026-03-15"),
        ("2026-03-16", "2026-03-18"),
    ]
    months = periods.periods_of(days("2024-01-31", "2024-03-01"), "month")
    assert [(p.start.isoformat(), p.end.isoformat()) for p in months] == [
        ("2024-01-31", "2024-01-31"),
        ("2024-02-01", "2024-02-29"),  # leap year
        ("2024-03-01", "2024-03-01"),
    ]
    assert len(periods.periods_of(days("2026-03-01", "2026-03-03"), "day")) == 3


def test_team_rollup_by_week_sums_days_and_recomputes_medians(org):
    alice = User.create(login="alice-p", name="Alice")
    for day, commits, open_prs in [
        ("2026-03-03", 100, 9),  # before the range
        ("2026-03-04", 1, 4),
        ("2026-03-08", 2, 6),
        ("2026-03-07", 4, 5),
        ("2026-03-09", 8, 7),
        ("2026-03-18", 16, 3),
        ("2026-03-19", 100, 1),  # after
    ]:
        TeamMetric.create(
            organization=org,
            date=dt.date.fromisoformat(day),
            commits=commits,
            open_prs=open_prs,
            deployments=1,
            cycle_time_median_s=999_999,  # daily medians are never averaged
        )
    # First week: human cycles 100, 200, 600 -> median 200, p90 rank 1.8 -> 520.
    for cycle, day in [(100, "2026-03-04"), (200, "2026-03-05"), (600, "2026-03-08")]:
        pr(org, merged_at=at(day), cycle_s=cycle, coding_s=cycle / 2, author=alice)
    pr(org, bot=True, merged_at=at("2026-03-05"), cycle_s=1)
    pr(org, merged_at=at("2026-03-10"), cycle_s=50, deployed_at=at("2026-03-11"))
    # Active people: commit authors (their user, else e-mail, case-insensitive), PR authors
    # (by creation), reviewers of others' PRs; bots and self-reviews left out.
    commit = {"organization": org, "repository": org.repo_a, "committed_at": at("2026-03-05")}
    for sha, fields, day in [
        ("c1", {"author": alice, "author_login": "Alice-P"}, "2026-03-05"),
        ("c2", {"author": alice, "author_email": "a@example.com"}, "2026-03-06"),
        ("c3", {"author_login": "ci[bot]", "author_is_bot": True}, "2026-03-06"),
        ("c4", {"author_email": "Dave@Example.com"}, "2026-03-10"),
        ("c5", {"author_email": "dave@example.com"}, "2026-03-11"),
    ]:
        Commit.create(sha=sha, authored_at=at(day), **fields, **commit)
    alices_pr = pr(org, login="alice-p", created_at=at("2026-03-09"))
    carols_pr = pr(org, login="carol", created_at=at("2026-03-01"))
    for reviewer, pull, day in [
        ("bob", alices_pr, "2026-03-06"),
        ("carol", carols_pr, "2026-03-06"),
    ]:
        Review.create(
            pull_request=pull,
            organization=org,
            kind=ReviewKind.REVIEW,
            github_id=next(serial),
            reviewer_login=reviewer,
            submitted_at=at(day),
        )

    rows = periods.team_rollup(Scope(org), days("2026-03-04", "2026-03-18"), "week")
    assert [(r["period_start"].isoformat(), r["period_end"].isoformat()) for r in rows] == [
        ("2026-03-04", "2026-03-08"),
        ("2026-03-09", "2026-03-15"),
        ("2026-03-16", "2026-03-18"),
    ]
    assert [r["commits"] for r in rows] == [7, 8, 16]
    assert [r["deployments"] for r in rows] == [3, 1, 1]
    assert [r["open_prs"] for r in rows] == [6, 7, 3]  # on the last day with a row
    assert rows[0]["cycle_time_median_s"] == 200.0
    assert rows[0]["cycle_time_p90_s"] == pytest.approx(520.0)
    assert rows[0]["coding_time_median_s"] == 100.0
    assert rows[1]["cycle_time_median_s"] == 50.0 and rows[1]["lead_time_median_s"] == 50.0
    assert rows[2]["cycle_time_median_s"] is None and rows[2]["commits"] == 16
    # Week 1: alice (two commits), bob (reviewed alice's PR); not carol (her own PR), not
    # the bot -> 2. Week 2: alice-p (opened a PR), dave (two commits) -> 2. Week 3: nobody.
    assert [r["active_developers"] for r in rows] == [2, 2, 0]


def test_team_rollup_by_month_and_for_one_repository(org):
    for day, repo, commits, open_prs in [
        ("2026-02-20", org.repo_a, 1, 2),
        ("2026-02-27", org.repo_a, 2, 3),
        ("2026-03-01", org.repo_a, 4, 4),
        ("2026-03-10", org.repo_b, 8, 5),
    ]:
        RepositoryStats.create(
            repository=repo,
            organization=org,
            date=dt.date.fromisoformat(day),
            commits=commits,
            open_prs=open_prs,
        )
    incident(org, at("2026-02-25"), at("2026-03-02"), kind=IncidentKind.REVERT)
    incident(org, at("2026-02-26"), None, kind=IncidentKind.REVERT, repo=org.repo_b)
    deployment(org, at("2026-03-03"), failed=True)
    deployment(org, at("2026-03-04"))
    rows = periods.team_rollup(Scope(org, org.repo_a), days("2026-02-20", "2026-03-10"), "month")
    assert [(r["period_start"].isoformat(), r["period_end"].isoformat()) for r in rows] == [
        ("2026-02-20", "2026-02-28"),
        ("2026-03-01", "2026-03-10"),
    ]
    assert [r["commits"] for r in rows] == [3, 4]
    assert [r["open_prs"] for r in rows] == [3, 4]
    assert [r["incidents_opened"] for r in rows] == [1, 0]
    assert [r["incidents_resolved"] for r in rows] == [0, 1]
    assert rows[1]["change_failure_rate"] == 0.5
    assert rows[1]["time_to_restore_median_s"] == 5 * DAY
    assert rows[0]["change_failure_rate"] is None


def test_developer_rollup_sums_each_developers_days(org):
    alice = User.create(login="alice-d", name="Alice D")
    bob = User.create(login="bob-d", name=None)
    robot = User.create(login="robot-d", is_bot=True)
    UserOrganization.create(user=alice, organization=org)
    for user, day, commits in [
        (alice, "2026-03-02", 1),
        (alice, "2026-03-08", 2),
        (alice, "2026-03-09", 4),
        (bob, "2026-03-03", 8),
        (robot, "2026-03-03", 50),
    ]:
        DeveloperMetric.create(
            user=user, organization=org, date=dt.date.fromisoformat(day), commits=commits
        )
    for cycle in (100, 300):
        pr(org, author=alice, login="alice-d", merged_at=at("2026-03-04"), cycle_s=cycle)
    pr(org, author=alice, login="alice-d", merged_at=at("2026-03-10"), cycle_s=50)
    # A week with a merged pull request and no daily row is a row of its own (zero counts).
    carol = User.create(login="carol-d")
    pr(org, author=carol, login="carol-d", merged_at=at("2026-03-11"), cycle_s=70)
    pr(org, author=robot, login="robot-d", merged_at=at("2026-03-11"), cycle_s=1, bot=True)

    rows = periods.developer_rollup(Scope(org), days("2026-03-02", "2026-03-15"), "week")
    assert [(r["period_start"].isoformat(), r["user"]["login"], r["commits"]) for r in rows] == [
        ("2026-03-02", "alice-d", 3),
        ("2026-03-02", "bob-d", 8),
        ("2026-03-09", "alice-d", 4),
        ("2026-03-09", "carol-d", 0),
    ]
    assert rows[0]["user"] == {"id": alice.id, "login": "alice-d", "name": "Alice D"}
    assert rows[0]["cycle_time_median_s"] == 200.0 and rows[1]["cycle_time_median_s"] is None
    # Sums and medians are computed for the page asked for: any page gives the same rows as
    # the whole.
    whole = list(rows)
    assert [r["cycle_time_median_s"] for r in whole] == [200.0, None, 50.0, 70.0]
    assert [r["commits"] for r in rows[1:3]] == [8, 4]
    assert rows[2:] == whole[2:] and rows[1:3] == whole[1:3] and rows[2] == whole[2]
    assert rows[3] == whole[3] and rows[0:1] == whole[0:1]
    assert len(rows) == 4 and rows[5:] == []
    only_bob = periods.developer_rollup(Scope(org), days("2026-03-02", "2026-03-15"), "week", bob)
    assert [r["commits"] for r in only_bob] == [8]
    # By login (case-insensitive) or id; a member with no metrics is still a developer.
    assert developer_in(Scope(org), "BOB-D").id == bob.id
    assert developer_in(Scope(org), str(alice.id)).id == alice.id
    outsider = User.create(login="outsider-d")
    for ref in ("outsider-d", str(outsider.id), "99999999999999999999", "nobody"):
        with pytest.raises(NotFound):
            developer_in(Scope(org), ref)


def test_repository_rollup_levels_and_contributors(org):
    for repo, day, prs, open_issues in [
        (org.repo_a, "2026-03-02", 1, 5),
        (org.repo_a, "2026-03-05", 2, 4),
        (org.repo_b, "2026-03-03", 4, 9),
    ]:
        RepositoryStats.create(
            repository=repo,
            organization=org,
            date=dt.date.fromisoformat(day),
            prs_opened=prs,
            open_issues=open_issues,
        )
    commit = {"organization": org, "committed_at": at("2026-03-03")}
    # Contributors are commit authors; a commit with no user is its author's e-mail.
    for sha, repo, who, day in [
        ("r1", org.repo_a, "x", "2026-03-03"),
        ("r2", org.repo_a, "y", "2026-03-04"),
        ("r3", org.repo_b, "x", "2026-03-04"),
    ]:
        Commit.create(
            sha=sha,
            repository=repo,
            author_email=f"{who}@example.com",
            authored_at=at(day),
            **commit,
        )
    pr(org, repo=org.repo_b, merged_at=at("2026-03-03"), cycle_s=42)

    rows = periods.repository_rollup(
        scope_for(org, can_see_restricted=False), days("2026-03-01", "2026-03-31"), "month"
    )
    assert [(r["repository"]["full_name"], r["prs_opened"], r["open_issues"]) for r in rows] == [
        (org.repo_a.full_name, 3, 4),
        (org.repo_b.full_name, 4, 9),
    ]
    assert [r["contributors"] for r in rows] == [2, 1]  # x and y / x
    assert [r["cycle_time_median_s"] for r in rows] == [None, 42.0]

    org.repo_b.sensitivity = Sensitivity.RESTRICTED
    org.repo_b.save()
    hidden = periods.repository_rollup(
        scope_for(org, can_see_restricted=False), days("2026-03-01", "2026-03-31"), "month"
    )
    assert [r["repository"]["id"] for r in hidden] == [org.repo_a.id]
    with pytest.raises(NotFound):
        visible_repository(org, org.repo_b.id, can_see_restricted=False)
    assert visible_repository(org, org.repo_b.id, can_see_restricted=True) == org.repo_b
