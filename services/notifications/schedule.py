"""The scheduled pass of the notifications service: the triggers no other service sends as
events. For every enabled rule it evaluates

- `pull_request.stale`: open, non-draft pull requests by humans in active repositories with
  no review from someone else `params.hours` hours after they became ready for review;
- `metric.threshold`: yesterday's TeamMetric row (scope team) or DeveloperMetric rows (scope
  developer) against `params.metric op value`; metrics days are UTC days, so "yesterday" is
  the last complete UTC day, and only rows computed after that day ended count (a row the
  recompute worker built at 23:50 is not the day's final figure);
- `digest.daily` / `digest.weekly`: at `params.hour` (else the org's `settings.digest_hour`,
  else 09) in the org's `settings.timezone`, every day / on Mondays, a summary of the
  previous day / ISO week: the team rollup of the TeamMetric rows and the DORA four keys.

Each match becomes a NotificationLog through `logic.create_log` under a deterministic event
key (below), which is unique per rule: running the pass again, from several workers at
once, or after a crash never notifies twice. Keys: `pull_request.stale:<pr id>` (once per
pull request), `metric.threshold:<day>[:<user id>]` (once per day and subject),
`digest.daily:<local date>`, `digest.weekly:<local Monday>`.

A digest is due from its hour until the end of that local day (Monday for the weekly one),
so a pass missed while the worker was down catches up the same day. The `notify-schedule`
worker (devmetrics/workers.py) runs the pass at most once a minute per process.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import zoneinfo

from services.metrics.api import Period, dora, team_rollup
from services.notifications.conditions import OPERATORS, matches
from services.notifications.logic import SCHEDULED_TRIGGERS, create_log
from shared import tenant_settings
from shared.config import Settings
from shared.database import db
from shared.models import (
    DeveloperMetric,
    NotificationLog,
    NotificationRule,
    Organization,
    PullRequest,
    PullRequestState,
    Repository,
    TeamMetric,
    User,
    utcnow,
)

log = logging.getLogger(__name__)

SCHEDULE_EVERY_SECONDS = 60
DAY = dt.timedelta(days=1)


# --- the pass ----------------------------------------------------------------------------


def run_scheduled(now: dt.datetime | None = None) -> int:
    """Evaluate every enabled scheduled rule at `now` (default: the current time); returns
    how many logs were created (PENDING or SUPPRESSED by the rule's cooldown)."""
    now = (now or utcnow()).astimezone(dt.UTC)
    settings = Settings.from_env()
    rules = list(
        NotificationRule.select(NotificationRule, Organization)
        .join(Organization)
        .where(
            NotificationRule.trigger.in_(sorted(SCHEDULED_TRIGGERS))
            & (NotificationRule.enabled == True)  # noqa: E712
        )
        .order_by(NotificationRule.organization, NotificationRule.id)
    )
    created = 0
    for rule in rules:
        try:
            with db.atomic():
                created += _evaluate(rule, now, settings)
        except Exception:  # one broken rule must not hold back the others
            log.exception("scheduled rule failed", extra={"rule_id": rule.id})
    return created


_last_run = float("-inf")


def schedule_batch(worker_id: str, limit: int = 10) -> int:
    """The `notify-schedule` worker: the pass when a minute has gone by since the last one
    (the worker loop polls every second); returns the logs created."""
    global _last_run
    if time.monotonic() - _last_run < SCHEDULE_EVERY_SECONDS:
        return 0
    _last_run = time.monotonic()
    return run_scheduled()


def _evaluate(rule: NotificationRule, now: dt.datetime, settings: Settings) -> int:
    evaluate = {
        "pull_request.stale": stale_pull_requests,
        "metric.threshold": crossed_thresholds,
        "digest.daily": due_digest,
        "digest.weekly": due_digest,
    }[rule.trigger]
    created = 0
    for event_key, data in evaluate(rule, now, settings):
        if not matches(rule.conditions or {}, data):
            continue
        payload = {"type": rule.trigger, "data": data}
        if create_log(rule, event_key, payload, now=now) is not None:
            created += 1
    return created


def _logged_keys(rule: NotificationRule, keys: list[str]) -> set[str]:
    """Which of `keys` this rule already has a log of (to skip them before any work)."""
    if not keys:
        return set()
    return {
        key
        for (key,) in NotificationLog.select(NotificationLog.event_key)
        .where((NotificationLog.rule == rule) & NotificationLog.event_key.in_(keys))
        .tuples()
    }


def _dashboard_url(organization: Organization, settings: Settings) -> str:
    return f"{settings.dashboard_url}/dashboard/{organization.slug}"


def _plain(value):
    """JSON-ready: dates and times as ISO strings, all the way down."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


# --- pull_request.stale ------------------------------------------------------------------


def stale_pull_requests(rule, now: dt.datetime, settings: Settings):
    """(key, data) of each pull request waiting `hours` for its first review."""
    hours = rule.params["hours"]
    cutoff = now - dt.timedelta(hours=hours)
    # Backfilled pull requests have no ready_at: they were ready when opened.
    ready_long_enough = (PullRequest.ready_at <= cutoff) | (
        PullRequest.ready_at.is_null() & (PullRequest.created_at <= cutoff)
    )
    pulls = list(
        PullRequest.select(PullRequest, Repository)
        .join(Repository)
        .where(
            (PullRequest.organization == rule.organization_id)
            & (PullRequest.state == PullRequestState.OPEN)
            & (PullRequest.draft == False)  # noqa: E712
            & (PullRequest.author_is_bot == False)  # noqa: E712
            & PullRequest.first_review_at.is_null()
            & (Repository.is_active == True)  # noqa: E712
            & ready_long_enough
        )
        .order_by(PullRequest.id)
    )
    done = _logged_keys(rule, [f"pull_request.stale:{pr.id}" for pr in pulls])
    for pr in pulls:
        key = f"pull_request.stale:{pr.id}"
        if key in done:
            continue
        ready = pr.ready_at or pr.created_at
        repo = pr.repository
        yield (
            key,
            {
                "repository": repo.full_name,
                "repository_id": repo.id,
                "sensitivity": str(repo.sensitivity),
                "pull_request_id": pr.id,
                "number": pr.number,
                "title": pr.title,
                "author": pr.author_login,
                "url": f"{settings.github_url}/{repo.full_name}/pull/{pr.number}",
                "ready_at": ready.isoformat(),
                "age_hours": round((now - ready).total_seconds() / 3600, 1),
                "hours": hours,
            },
        )


# --- metric.threshold --------------------------------------------------------------------


def crossed_thresholds(rule, now: dt.datetime, settings: Settings):
    """(key, data) of each subject whose figure of the last complete UTC day crossed the
    rule's bound (a missing figure, e.g. no deployments for a failure rate, never does)."""
    params = rule.params
    metric, scope, op, bound = params["metric"], params["scope"], params["op"], params["value"]
    day = now.date() - DAY
    day_end = dt.datetime.combine(day + DAY, dt.time(), tzinfo=dt.UTC)
    organization = rule.organization
    common = {
        "metric": metric,
        "scope": scope,
        "op": op,
        "bound": float(bound),
        "date": day.isoformat(),
        "url": _dashboard_url(organization, settings),
    }
    if scope == "team":
        rows = [
            (f"metric.threshold:{day}", organization.name, "", row)
            for row in TeamMetric.select().where(
                (TeamMetric.organization == organization)
                & (TeamMetric.date == day)
                & (TeamMetric.computed_at >= day_end)
            )
        ]
    else:
        rows = [
            (f"metric.threshold:{day}:{row.user_id}", organization.name, row.user.login, row)
            for row in DeveloperMetric.select(DeveloperMetric, User)
            .join(User)
            .where(
                (DeveloperMetric.organization == organization)
                & (DeveloperMetric.date == day)
                & (DeveloperMetric.computed_at >= day_end)
            )
            .order_by(User.login)
        ]
    for key, team, developer, row in rows:
        value = getattr(row, metric)
        if value is None or not OPERATORS[op](value, bound):
            continue
        yield key, {**common, "team": team, "developer": developer, "value": float(value)}


# --- digest.daily / digest.weekly --------------------------------------------------------


def org_zone(organization: Organization) -> zoneinfo.ZoneInfo:
    name = tenant_settings.timezone_name(organization)
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        log.warning("unknown time zone, using UTC", extra={"organization_id": organization.id})
        return zoneinfo.ZoneInfo(tenant_settings.DEFAULT_TIMEZONE)


def digest_hour(rule: NotificationRule) -> int:
    hour = (rule.params or {}).get("hour")
    if hour is None:
        hour = tenant_settings.digest_hour(rule.organization)
    return int(hour)


def digest_period(rule: NotificationRule, now: dt.datetime) -> tuple[str, Period] | None:
    """(event key, period of UTC days) when the rule's digest is due at `now`, else None.

    Daily: from the hour until the end of the local day; the local yesterday. Weekly: the
    same on local Mondays; the local week before. Either ends at the last UTC day complete
    at the scheduled moment (metrics days are UTC: east of UTC the local yesterday may not
    be over in UTC yet), so consecutive digests cover consecutive days without gap or
    overlap, however late in the day the pass that sends them runs."""
    zone = org_zone(rule.organization)
    today = now.astimezone(zone).date()
    scheduled = dt.datetime.combine(today, dt.time(digest_hour(rule)), tzinfo=zone)
    if now < scheduled:
        return None
    # Judged at the scheduled moment, not `now`: a late pass covers the same days.
    last_complete = min(today - DAY, scheduled.astimezone(dt.UTC).date() - DAY)
    if rule.trigger == "digest.daily":
        return f"digest.daily:{today}", Period(last_complete, last_complete)
    if today.weekday() != 0:
        return None
    return f"digest.weekly:{today}", Period(today - 7 * DAY, last_complete)


def digest_content(organization: Organization, period: Period, settings: Settings) -> dict:
    """The organization's figures over `period`: the team rollup of its TeamMetric rows
    (counters summed, levels of the last day, medians over the period's pull requests) and
    the DORA four keys with the same number of days before for comparison."""
    granularity = "day" if period.days == 1 else "week"
    (row,) = team_rollup(organization, period, granularity)
    metrics = {k: v for k, v in row.items() if k not in ("period_start", "period_end")}
    return _plain(
        {
            "organization": organization.slug,
            "organization_name": organization.name,
            "timezone": str(org_zone(organization)),
            "period_start": period.start,
            "period_end": period.end,
            "days": period.days,
            "url": _dashboard_url(organization, settings),
            "metrics": metrics,
            "dora": dora(organization, period),
        }
    )


def due_digest(rule, now: dt.datetime, settings: Settings):
    due = digest_period(rule, now)
    if due is None:
        return
    key, period = due
    if _logged_keys(rule, [key]):
        return  # sent already: skip computing it again every minute
    yield key, digest_content(rule.organization, period, settings)
