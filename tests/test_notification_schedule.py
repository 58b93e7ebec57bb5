"""The scheduled pass (services/notifications/schedule.py) on the seed, at fixed moments.

The seed (devmetrics/seed.py, tests/test_seed_metrics.py): days d0 = 2026-11-02 (a Monday) and
d1 = 2026-11-03 (UTC), org settings {"timezone": "UTC", "digest_hour": 9}. Open pull
requests: techcorp/api-server#2 (charlie, ready d1 11:00, CONFIDENTIAL repository),
techcorp/web-dashboard#2 (charlie, ready d1 09:00, INTERNAL), startup-inc/mobile-app#2 (bob,
ready d1 16:00); none reviewed.
"""

from __future__ import annotations

import datetime as dt

import pytest

from devmetrics import workers as worker
from services.notifications import logic, schedule
from shared.models import (
    DeliveryStatus,
    NotificationLog,
    Organization,
    PullRequest,
    Repository,
    TeamMetric,
    User,
)

H, M = 3600, 60
D0, D1 = dt.date(2026, 11, 2), dt.date(2026, 11, 3)


@pytest.fixture(autouse=True)
def no_failed_rules(caplog):
    """A rule that raises is logged and skipped by the pass: here that is a failure."""
    yield
    failures = [
        r
        for r in caplog.get_records("call")
        if r.name == schedule.__name__ and r.levelname == "ERROR"
    ]
    assert not failures, failures[0].exc_text


def utc(day, hour, minute=0, second=0):
    return dt.datetime(2026, 11, day, hour, minute, second, tzinfo=dt.UTC)


def org(slug):
    return Organization.get(Organization.slug == slug)


def make_rule(slug, trigger, params=None, **fields):
    rule, _secret = logic.create_rule(
        org(slug),
        {
            "name": fields.pop("name", f"{trigger} rule"),
            "trigger": trigger,
            "params": params or {},
            "channel": "SLACK",
            "target": "https://hooks.slack.example/services/T0/B0/x",
            **fields,
        },
    )
    return rule


def logs(rule):
    return {
        log.event_key: log for log in NotificationLog.select().where(NotificationLog.rule == rule)
    }


def set_settings(slug, **settings):
    organization = org(slug)
    organization.settings = {**organization.settings, **settings}
    organization.save()


def pull_id(full_name, number):
    return (
        PullRequest.select(PullRequest.id)
        .join(Repository)
        .where((Repository.full_name == full_name) & (PullRequest.number == number))
        .scalar()
    )


def add_pull(full_name, number, created_at, **fields):
    repo = Repository.get(Repository.full_name == full_name)
    return PullRequest.create(
        repository=repo,
        organization=repo.organization_id,
        number=number,
        author_login=fields.pop("author_login", "alice"),
        title=f"PR {number}",
        base_ref="main",
        head_ref=f"branch-{number}",
        created_at=created_at,
        **fields,
    )


# --- pull_request.stale ------------------------------------------------------------------


def test_stale_pull_requests_fire_once_each_after_the_hours(seeded):
    rule = make_rule("techcorp", "pull_request.stale", {"hours": 24})
    # Old enough but not qualifying: a draft, a bot's, a reviewed one, a closed one.
    add_pull("techcorp/api-server", 90, utc(1, 8), draft=True)
    add_pull("techcorp/api-server", 91, utc(1, 8), ready_at=utc(1, 8), author_is_bot=True)
    add_pull("techcorp/api-server", 92, utc(1, 8), ready_at=utc(1, 8), first_review_at=utc(3, 8))
    add_pull("techcorp/api-server", 93, utc(1, 8), ready_at=utc(1, 8), state="CLOSED")
    # Backfilled (no ready_at): ready since it was opened, d0 08:00.
    backfilled = add_pull("techcorp/web-dashboard", 94, utc(2, 8))

    # 10:59:59 on d1+1: web-dashboard#2 waits 25:59:59, #94 50:59:59; api-server#2 23:59:59.
    assert schedule.run_scheduled(utc(4, 10, 59, 59)) == 2
    web2 = pull_id("techcorp/web-dashboard", 2)
    assert set(logs(rule)) == {f"pull_request.stale:{web2}", f"pull_request.stale:{backfilled.id}"}

    # 11:00: api-server#2 has waited exactly 24 h.
    assert schedule.run_scheduled(utc(4, 11)) == 1
    api2 = pull_id("techcorp/api-server", 2)
    log = logs(rule)[f"pull_request.stale:{api2}"]
    assert log.status == DeliveryStatus.PENDING
    assert log.next_attempt_at == utc(4, 11)
    assert log.payload == {
        "type": "pull_request.stale",
        "data": {
            "repository": "techcorp/api-server",
            "repository_id": Repository.get(Repository.full_name == "techcorp/api-server").id,
            "sensitivity": "CONFIDENTIAL",
            "pull_request_id": api2,
            "number": 2,
            "title": "CSV export of metrics",
            "author": "charlie",
            "url": "https://github.com/techcorp/api-server/pull/2",
            "ready_at": "2026-11-03T11:00:00+00:00",
            "age_hours": 24.0,
            "hours": 24,
        },
    }

    # Once per pull request per rule: later passes add nothing; startup-inc's PR is not ours.
    assert schedule.run_scheduled(utc(5, 12)) == 0
    assert len(logs(rule)) == 3


def test_stale_rule_conditions_and_cooldown(seeded):
    only_web = make_rule(
        "techcorp",
        "pull_request.stale",
        {"hours": 1},
        name="web only",
        conditions={"field": "repository", "op": "=", "value": "techcorp/web-dashboard"},
    )
    quiet = make_rule(
        "techcorp", "pull_request.stale", {"hours": 1}, name="quiet", cooldown_seconds=3600
    )
    assert schedule.run_scheduled(utc(4, 12)) == 3
    assert [log.payload["data"]["number"] for log in logs(only_web).values()] == [2]
    assert logs(only_web).popitem()[1].payload["data"]["repository"] == "techcorp/web-dashboard"
    # Two stale PRs at once within the cooldown: the second is recorded as suppressed.
    statuses = sorted(str(log.status) for log in logs(quiet).values())
    assert statuses == ["PENDING", "SUPPRESSED"]


# --- metric.threshold --------------------------------------------------------------------


def test_team_threshold_bounds_once_per_day(seeded):
    # techcorp d1: change_failure_rate 0.25 (1 failed of 4); pickup median of the two PRs
    # merged that day, (2h40 + 16h40) / 2 = 9h40 = 34800 s.
    cfr_at_least = make_rule(
        "techcorp",
        "metric.threshold",
        {"metric": "change_failure_rate", "scope": "team", "op": ">=", "value": 0.25},
        name="cfr >= 25%",
    )
    cfr_above = make_rule(
        "techcorp",
        "metric.threshold",
        {"metric": "change_failure_rate", "scope": "team", "op": ">", "value": 0.25},
        name="cfr > 25%",
    )
    pickup_day = make_rule(
        "techcorp",
        "metric.threshold",
        {"metric": "pickup_time_median_s", "scope": "team", "op": ">", "value": 86400},
        name="pickup > 24h",
    )
    pickup_9h = make_rule(
        "techcorp",
        "metric.threshold",
        {"metric": "pickup_time_median_s", "scope": "team", "op": ">", "value": 34799},
        name="pickup > 9h40 - 1s",
    )
    assert schedule.run_scheduled(utc(4, 0, 5)) == 2
    assert logs(cfr_above) == {} and logs(pickup_day) == {}
    log = logs(cfr_at_least)["metric.threshold:2026-11-03"]
    assert log.payload == {
        "type": "metric.threshold",
        "data": {
            "metric": "change_failure_rate",
            "scope": "team",
            "op": ">=",
            "bound": 0.25,
            "value": 0.25,
            "date": "2026-11-03",
            "team": "TechCorp",
            "developer": "",
            "url": "http://127.0.0.1:8003/dashboard/techcorp",
        },
    }
    assert logs(pickup_9h)["metric.threshold:2026-11-03"].payload["data"]["value"] == 34800
    # Once per day: the rest of the day adds nothing.
    assert schedule.run_scheduled(utc(4, 23, 59)) == 0
    # d1+1 had no deployments (no failure rate) and no merged PR (no pickup): nothing.
    assert schedule.run_scheduled(utc(5, 0, 5)) == 0


def test_team_threshold_fires_again_the_next_day_and_waits_for_a_final_row(seeded):
    rule = make_rule(
        "techcorp",
        "metric.threshold",
        {"metric": "open_prs", "scope": "team", "op": ">=", "value": 2},
    )
    # The d1 row as the recompute worker left it at 23:50 that day: not the final figure.
    (
        TeamMetric.update(computed_at=utc(3, 23, 50))
        .where((TeamMetric.organization == org("techcorp")) & (TeamMetric.date == D1))
        .execute()
    )
    assert schedule.run_scheduled(utc(4, 0, 5)) == 0
    (
        TeamMetric.update(computed_at=utc(4, 0, 0))
        .where((TeamMetric.organization == org("techcorp")) & (TeamMetric.date == D1))
        .execute()
    )
    assert schedule.run_scheduled(utc(4, 0, 6)) == 1
    # Two open PRs on d1+1 too: another day, another alert.
    assert schedule.run_scheduled(utc(5, 0, 5)) == 1
    assert sorted(logs(rule)) == ["metric.threshold:2026-11-03", "metric.threshold:2026-11-04"]
    assert logs(rule)["metric.threshold:2026-11-04"].payload["data"]["value"] == 2


def test_developer_threshold_one_alert_per_developer(seeded):
    # techcorp d1 cycle-time medians: alice 25h20 = 91200 s, bob 22h = 79200 s.
    over_a_day = make_rule(
        "techcorp",
        "metric.threshold",
        {"metric": "cycle_time_median_s", "scope": "developer", "op": ">", "value": 86400},
        name="over a day",
    )
    from_22h = make_rule(
        "techcorp",
        "metric.threshold",
        {"metric": "cycle_time_median_s", "scope": "developer", "op": ">=", "value": 79200},
        name="from 22h",
    )
    alice = User.get(User.login == "alice").id
    bob = User.get(User.login == "bob").id
    assert schedule.run_scheduled(utc(4, 6)) == 3
    assert list(logs(over_a_day)) == [f"metric.threshold:2026-11-03:{alice}"]
    data = logs(over_a_day)[f"metric.threshold:2026-11-03:{alice}"].payload["data"]
    assert (data["developer"], data["value"], data["scope"]) == ("alice", 91200, "developer")
    assert {k: v.payload["data"]["developer"] for k, v in logs(from_22h).items()} == {
        f"metric.threshold:2026-11-03:{alice}": "alice",
        f"metric.threshold:2026-11-03:{bob}": "bob",
    }
    assert schedule.run_scheduled(utc(4, 7)) == 0


# --- digests -----------------------------------------------------------------------------


def test_daily_digest_content_of_the_seeded_day(seeded):
    rule = make_rule("techcorp", "digest.daily")
    assert schedule.run_scheduled(utc(4, 8, 59, 59)) == 0  # digest_hour 9 (UTC)
    assert schedule.run_scheduled(utc(4, 9)) == 1
    log = logs(rule)["digest.daily:2026-11-04"]
    assert log.status == DeliveryStatus.PENDING
    assert log.payload["type"] == "digest.daily"
    data = log.payload["data"]
    assert {k: data[k] for k in ("period_start", "period_end", "days", "timezone", "url")} == {
        "period_start": "2026-11-03",
        "period_end": "2026-11-03",
        "days": 1,
        "timezone": "UTC",
        "url": "http://127.0.0.1:8003/dashboard/techcorp",
    }
    # techcorp on d1 (tests/test_seed_metrics.py).
    expected = dict(
        commits=3,
        prs_opened=2,
        prs_merged=2,
        additions=259,
        deletions=24,
        reviews=1,
        review_comments=2,
        issues_opened=1,
        issues_closed=1,
        active_developers=3,
        open_prs=2,
        deployments=4,
        failed_deployments=1,
        incidents_opened=1,
        incidents_resolved=1,
        change_failure_rate=0.25,
        time_to_restore_median_s=2 * H + 20 * M,
        cycle_time_median_s=85200,
        coding_time_median_s=2 * H,
        pickup_time_median_s=9 * H + 40 * M,
        deploy_time_median_s=40 * M,
        lead_time_median_s=85200,
    )
    for name, value in expected.items():
        assert data["metrics"][name] == pytest.approx(value), name
    # DORA over d1: api-server#1 (cycle 25h20) and web-dashboard#1 (22h) deployed that day;
    # 4 production deployments, 3 succeeded, 1 failed; one incident restored in 2h20.
    dora = data["dora"]
    assert dora["lead_time"] == {"median_s": 85200, "pull_requests": 2, "category": "elite"}
    assert dora["deployment_frequency"]["deployments"] == 3
    assert dora["change_failure_rate"] == {
        "failed": 1,
        "deployments": 4,
        "rate": 0.25,
        "category": "low",
    }
    assert dora["time_to_restore"] == {"median_s": 8400, "incidents": 1, "category": "high"}
    # The day before (d0) for comparison: no production deployment in techcorp yet.
    assert dora["previous"]["period"] == {"start": "2026-11-02", "end": "2026-11-02", "days": 1}
    assert dora["previous"]["change_failure_rate"]["deployments"] == 0

    # One per local date; the next day's covers the next day.
    assert schedule.run_scheduled(utc(4, 15)) == 0
    assert schedule.run_scheduled(utc(5, 9, 30)) == 1
    next_day = logs(rule)["digest.daily:2026-11-05"].payload["data"]
    assert (next_day["period_start"], next_day["metrics"]["commits"]) == ("2026-11-04", 0)
    assert next_day["metrics"]["open_prs"] == 2


def test_weekly_digest_on_mondays_only(seeded):
    rule = make_rule("techcorp", "digest.weekly")
    assert schedule.run_scheduled(utc(8, 12)) == 0  # Sunday
    assert schedule.run_scheduled(utc(10, 12)) == 0  # Tuesday
    assert schedule.run_scheduled(utc(9, 8, 59)) == 0  # Monday, before the hour
    assert schedule.run_scheduled(utc(9, 9)) == 1
    assert schedule.run_scheduled(utc(9, 18)) == 0
    data = logs(rule)["digest.weekly:2026-11-09"].payload["data"]
    assert (data["period_start"], data["period_end"], data["days"]) == (
        "2026-11-02",
        "2026-11-08",
        7,
    )
    # The week of d0 and d1: counters summed, open PRs of its last day, medians over the
    # week's pull requests; alice, bob and charlie were active.
    expected = dict(
        commits=4 + 3,
        prs_opened=3 + 2,
        prs_merged=2,
        reviews=2 + 1,
        review_comments=4 + 2,
        issues_opened=2 + 1,
        open_prs=2,
        deployments=4,
        failed_deployments=1,
        active_developers=3,
        cycle_time_median_s=85200,
        change_failure_rate=0.25,
    )
    for name, value in expected.items():
        assert data["metrics"][name] == pytest.approx(value), name
    assert data["dora"]["change_failure_rate"]["rate"] == 0.25
    assert data["dora"]["previous"]["period"]["start"] == "2026-10-26"
    assert data["dora"]["previous"]["deployment_frequency"]["deployments"] == 0
    # The next Monday: the next week.
    assert schedule.run_scheduled(utc(16, 9)) == 1
    assert logs(rule)["digest.weekly:2026-11-16"].payload["data"]["metrics"]["commits"] == 0


def test_digest_hour_in_the_organization_time_zone(seeded):
    set_settings("techcorp", timezone="Europe/Paris")  # UTC+1 in November
    paris = make_rule("techcorp", "digest.daily")
    utc_org = make_rule("startup-inc", "digest.daily")
    early = make_rule("startup-inc", "digest.daily", {"hour": 7}, name="early")
    assert schedule.run_scheduled(utc(4, 6, 59)) == 0
    assert schedule.run_scheduled(utc(4, 7)) == 1  # 07:00 UTC: the rule's own hour
    assert list(logs(early)) == ["digest.daily:2026-11-04"]
    assert schedule.run_scheduled(utc(4, 7, 59)) == 0
    assert schedule.run_scheduled(utc(4, 8)) == 1  # 09:00 in Paris
    assert list(logs(paris)) == ["digest.daily:2026-11-04"]
    assert logs(paris)["digest.daily:2026-11-04"].payload["data"]["timezone"] == "Europe/Paris"
    assert logs(utc_org) == {}
    assert schedule.run_scheduled(utc(4, 9)) == 1  # 09:00 UTC
    assert list(logs(utc_org)) == ["digest.daily:2026-11-04"]
    # startup-inc d1 (tests/test_seed_metrics.py): 1 commit, 1 deployment.
    metrics = logs(utc_org)["digest.daily:2026-11-04"].payload["data"]["metrics"]
    assert (metrics["commits"], metrics["deployments"]) == (1, 1)


def test_digest_east_of_utc_covers_the_last_complete_utc_day(seeded):
    set_settings("techcorp", timezone="Pacific/Auckland")  # UTC+13 in November
    rule = make_rule("techcorp", "digest.daily")
    # 2026-11-04 20:00 UTC is 09:00 on the 5th in Auckland; the UTC 4th is not over yet.
    assert schedule.run_scheduled(utc(4, 19, 59)) == 0
    assert schedule.run_scheduled(utc(4, 20)) == 1
    data = logs(rule)["digest.daily:2026-11-05"].payload["data"]
    assert (data["period_start"], data["period_end"]) == ("2026-11-03", "2026-11-03")
    assert data["metrics"]["commits"] == 3
    # The next local day covers the next UTC day (no gap, no repeat), even from a pass that
    # runs late, at 23:30 in Auckland, when the UTC 5th is over too.
    assert schedule.run_scheduled(utc(6, 10, 30)) == 1
    assert logs(rule)["digest.daily:2026-11-06"].payload["data"]["period_start"] == "2026-11-04"


def test_disabled_rules_are_ignored(seeded):
    rules = [
        make_rule("techcorp", "pull_request.stale", {"hours": 1}, enabled=False),
        make_rule(
            "techcorp",
            "metric.threshold",
            {"metric": "commits", "scope": "team", "op": ">=", "value": 0},
            enabled=False,
        ),
        make_rule("techcorp", "digest.daily", enabled=False),
        make_rule("techcorp", "digest.weekly", enabled=False),
    ]
    assert schedule.run_scheduled(utc(9, 12)) == 0  # a Monday: every trigger would fire
    assert all(logs(rule) == {} for rule in rules)
    logic.update_rule(rules[2], {"enabled": True})
    assert schedule.run_scheduled(utc(9, 12)) == 1
    assert list(logs(rules[2])) == ["digest.daily:2026-11-09"]


def test_worker_runs_the_pass_at_most_once_a_minute(seeded, monkeypatch):
    assert worker.batch_for("notify-schedule") is schedule.schedule_batch
    monkeypatch.setattr(schedule, "_last_run", float("-inf"))
    first = make_rule("startup-inc", "pull_request.stale", {"hours": 24})
    # Now (the real clock, after November 2026): mobile-app#2 has waited more than a day.
    assert schedule.schedule_batch("test-worker") == 1
    second = make_rule("startup-inc", "pull_request.stale", {"hours": 24}, name="second")
    assert schedule.schedule_batch("test-worker") == 0  # within the minute: not run
    assert logs(second) == {}
    monkeypatch.setattr(schedule, "_last_run", schedule._last_run - schedule.SCHEDULE_EVERY_SECONDS)
    assert schedule.schedule_batch("test-worker") == 1
    assert len(logs(first)) == len(logs(second)) == 1
