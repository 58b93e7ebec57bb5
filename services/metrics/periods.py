"""Figures over a period of whole UTC days, computed from the rows (no Flask here):
day/week/month rollups of the daily tables, the DORA four keys and the cycle-time breakdown.

Rollups: counters are sums of the daily rows inside each period (weeks are ISO weeks labelled
by their Monday, months by their 1st, both clipped to the requested range); levels (open PRs,
open issues) are the value on the period's last day that has a row; medians and p90s are
recomputed from the underlying pull requests, deployments and incidents of the period, never
averaged from daily values; active developers (and a repository's contributors) are distinct
humans recomputed from the activity itself, identified as the daily engine does.

Every figure is over a Scope (services/metrics/scope.py; an Organization stands for the
whole of it): the whole organization reads the stored org-wide rows; a narrower one (one
repository, or the organization less its RESTRICTED repositories for a caller below ADMIN)
sums its repositories' daily rows, or counts its activity where no per-repository row
exists (developers).

Lists that can grow past a page (daily rows, developers, repositories) are LazyRows: built a
page, or for a CSV export a chunk, at a time.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import reduce

import peewee as pw
from peewee import fn

from services.metrics.engine.daily import DEVELOPER_COUNTERS, STAGES, human_issue
from services.metrics.scope import Scope
from shared.models import (
    Commit,
    DeveloperMetric,
    Incident,
    Issue,
    IssueClosure,
    Organization,
    ProductionDeployment,
    PullRequest,
    Repository,
    RepositoryStats,
    Review,
    ReviewKind,
    TeamMetric,
    User,
    by_another_human,
)
from shared.sql import (
    as_date,
    day_of,
    is_postgres,
    percentile,
    raw_rows,
    seconds_between,
)
from shared.sqlite_functions import percentile_cont

GRANULARITIES = ("day", "week", "month")
DAY_S = 86_400
WEEK_S = 7 * DAY_S
MONTH_S = 30 * DAY_S

TEAM_COUNTERS = (
    "commits",
    "additions",
    "deletions",
    "prs_opened",
    "prs_merged",
    "reviews",
    "review_comments",
    "issues_opened",
    "issues_closed",
    "deployments",
    "failed_deployments",
    "incidents_opened",
    "incidents_resolved",
)
REPOSITORY_COUNTERS = (
    "commits",
    "additions",
    "deletions",
    "prs_opened",
    "prs_merged",
    "prs_closed",
    "reviews",
    "review_comments",
    "issues_opened",
    "issues_closed",
    "deployments",
    "failed_deployments",
)
# The columns RepositoryStats shares with TeamMetric: a team rollup of one repository.
REPOSITORY_TEAM_COUNTERS = tuple(c for c in TEAM_COUNTERS if c in REPOSITORY_COUNTERS)


@dataclass(frozen=True)
class Period:
    """Whole UTC days from `start` to `end`, both included."""

    start: dt.date
    end: dt.date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def since(self) -> dt.datetime:
        return dt.datetime.combine(self.start, dt.time(), tzinfo=dt.UTC)

    @property
    def until(self) -> dt.datetime:
        """The first instant after the period."""
        return dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)

    def previous(self) -> Period:
        """The same number of days immediately before."""
        return Period(self.start - dt.timedelta(days=self.days), self.start - dt.timedelta(days=1))

    def contains(self, moment):
        """SQL: a timestamp column falls inside the period."""
        return (moment >= self.since) & (moment < self.until)

    def as_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "days": self.days}


# Periods ------------------------------------------------------------------------------


def period_label(day: dt.date, granularity: str) -> dt.date:
    """The day naming the period that holds `day`: itself, its ISO week's Monday, its 1st."""
    if granularity == "week":
        return day - dt.timedelta(days=day.weekday())
    if granularity == "month":
        return day.replace(day=1)
    return day


def _last_day_of_period(day: dt.date, granularity: str) -> dt.date:
    """The last day of the day/week/month that holds `day`."""
    label = period_label(day, granularity)
    if granularity == "week":
        return label + dt.timedelta(days=6)
    if granularity == "month":
        return (label + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)
    return day


def periods_of(period: Period, granularity: str) -> list[Period]:
    """The day/week/month periods overlapping `period`, clipped to it, in order."""
    out, day = [], period.start
    while day <= period.end:
        last = min(_last_day_of_period(day, granularity), period.end)
        out.append(Period(day, last))
        day = last + dt.timedelta(days=1)
    return out


def label_sql(expr, granularity: str):
    """SQL: the period label (a day) of a date or timestamp column."""
    if is_postgres():
        if granularity == "day":
            return pw.Cast(expr, "date")
        # Through `timestamp` (not timestamptz) so the session's time zone plays no part.
        truncated = fn.date_trunc(granularity, pw.Cast(expr, "timestamp"))
        return pw.Cast(truncated, "date")
    if granularity == "week":
        # 'weekday 0' moves to the next Sunday (or stays on one); six days back is Monday.
        return fn.date(expr, "weekday 0", "-6 days")
    if granularity == "month":
        return fn.date(expr, "start of month")
    return fn.date(expr)


def _covered(period: Period, label: dt.date, granularity: str) -> Period:
    start = max(label, period.start)
    # Only the period that holds `start` (listing every period to the range's end made a
    # table of developers by week quadratic).
    return Period(start, min(_last_day_of_period(start, granularity), period.end))


# Shared pieces ------------------------------------------------------------------------


def _human_prs(scope: Scope):
    query = PullRequest.select().where(
        (PullRequest.organization == scope.organization) & (PullRequest.author_is_bot == False)  # noqa: E712
    )
    return scope.where(query, PullRequest.repository)


def _stage_column(stage: str):
    return getattr(PullRequest, f"{stage}_s")


def _people_query(scope: Scope, period: Period, granularity: str, commits_only, *, union_all=False):
    """SELECT (repository_id, label, user_id, kind, name): the humans active in each period, as the
    daily engine counts them: commit authors, pull request authors (by creation) and
    reviewers of others' pull requests (`commits_only`: a repository's contributors). A
    person is their user, else their e-mail (or name) for commits, their login otherwise."""
    organization = scope.organization
    commits = Commit.select(
        Commit.repository.alias("repository_id"),
        label_sql(Commit.authored_at, granularity).alias("label"),
        Commit.author.alias("user_id"),
        pw.Value("email").alias("kind"),
        fn.COALESCE(fn.LOWER(Commit.author_email), Commit.author_name).alias("name"),
    ).where(
        (Commit.organization == organization)
        & period.contains(Commit.authored_at)
        & (Commit.author_is_bot == False)  # noqa: E712
    )
    authors = PullRequest.select(
        PullRequest.repository.alias("repository_id"),
        label_sql(PullRequest.created_at, granularity).alias("label"),
        PullRequest.author.alias("user_id"),
        pw.Value("login").alias("kind"),
        fn.LOWER(PullRequest.author_login).alias("name"),
    ).where(
        (PullRequest.organization == organization)
        & period.contains(PullRequest.created_at)
        & (PullRequest.author_is_bot == False)  # noqa: E712
    )
    reviewed = PullRequest.alias("reviewed")
    reviewers = (
        Review.select(
            reviewed.repository.alias("repository_id"),
            label_sql(Review.submitted_at, granularity).alias("label"),
            Review.reviewer.alias("user_id"),
            pw.Value("login").alias("kind"),
            fn.LOWER(Review.reviewer_login).alias("name"),
        )
        .join(reviewed, on=(Review.pull_request == reviewed.id))
        .where(
            (Review.organization == organization)
            & (Review.kind == ReviewKind.REVIEW)
            & period.contains(Review.submitted_at)
            & by_another_human(Review, reviewed)
        )
    )
    commits = scope.where(commits, Commit.repository)
    authors = scope.where(authors, PullRequest.repository)
    reviewers = scope.where(reviewers, reviewed.repository)
    if commits_only:
        return commits
    return (commits + authors + reviewers) if union_all else (commits | authors | reviewers)


def _people_by_period(scope: Scope, period: Period, granularity: str, *, commits_only=False):
    """{(repository_id, label): {person, ...}} of the humans active in each period (see
    _people_query)."""
    query = _people_query(scope, period, granularity, commits_only)
    people = defaultdict(set)
    for repo_id, label, user_id, kind, name in query.tuples():
        person = ("user", user_id) if user_id else (kind, name)
        people[(repo_id, as_date(label))].add(person)
    return people


def _active_counts(scope: Scope, period: Period, granularity: str) -> dict:
    """{label: distinct active humans over all repositories}, counted by the database (the
    identities _people_by_period makes), without sending every (person, day) row."""
    # UNION ALL: COUNT(DISTINCT) dedupes once (a UNION would sort every row twice).
    people = _people_query(scope, period, granularity, False, union_all=True).alias("people")
    person = pw.Case(
        None,
        [
            (people.c.user_id.is_null(False), pw.Value("user:").concat(people.c.user_id)),
            (people.c.name.is_null(), people.c.kind.concat("!")),  # (kind, None): one person
        ],
        people.c.kind.concat(":").concat(people.c.name),
    )
    query = (
        pw.Select(from_list=[people], columns=[people.c.label, fn.COUNT(person.distinct())])
        .group_by(people.c.label)
        .bind(Commit._meta.database)
    )
    return {as_date(label): count for label, count in query.tuples()}


def _pr_medians(query, moment, granularity, stages, fractions, group=()):
    """{(group..., label): {"<stage>_time_<median|p90>_s": value}} over `query`'s PRs whose
    `moment` falls in each period."""
    label = label_sql(moment, granularity)
    names, columns = [], []
    for stage in stages:
        for suffix, fraction in fractions:
            names.append(f"{stage}_time_{suffix}_s")
            columns.append(percentile(_stage_column(stage), fraction))
    rows = query.select(*group, label.alias("label"), *columns).group_by(*group, label).tuples()
    out = {}
    for row in rows:
        key = (*row[: len(group)], as_date(row[len(group)]))
        out[key] = dict(zip(names, row[len(group) + 1 :], strict=True))
    return out


def _last_values(rows, granularity, columns):
    """{(key, label): {column: value on the period's last day with a row}} from rows of
    (key, date, *values)."""
    latest = {}
    for key, day, *values in rows:
        day = as_date(day)
        slot = (key, period_label(day, granularity))
        if slot not in latest or latest[slot][0] < day:
            latest[slot] = (day, values)
    return {slot: dict(zip(columns, values, strict=True)) for slot, (_d, values) in latest.items()}


# Team ---------------------------------------------------------------------------------


def team_rollup(scope: Scope | Organization, period: Period, granularity: str) -> list[dict]:
    """One row per day/week/month of the range (every period, zeros when nothing happened),
    over the scope's repositories (at most MAX_RANGE_DAYS rows: built whole)."""
    scope = Scope.of(scope)
    if scope.whole_organization and granularity == "day":
        return _stored_team_days(scope.organization, period)
    return computed_team_rollup(scope, period, granularity)


def computed_team_rollup(
    scope: Scope | Organization, period: Period, granularity: str
) -> list[dict]:
    """team_rollup from the daily sums and the underlying rows (medians, DORA, people): the
    organization's daily rows for the whole organization, else the sums of its
    repositories' daily rows (every team counter but incidents is one of theirs, counted
    the same way) and the incidents of those repositories."""
    scope = Scope.of(scope)
    if scope.whole_organization:
        table, counters = TeamMetric, TEAM_COUNTERS
    else:
        table, counters = RepositoryStats, REPOSITORY_TEAM_COUNTERS
    in_range = (
        (table.organization == scope.organization)
        & (table.date >= period.start)
        & (table.date <= period.end)
    )

    def daily(*columns):
        query = table.select(*columns).where(in_range)
        return query if table is TeamMetric else scope.where(query, RepositoryStats.repository)

    label = label_sql(table.date, granularity)
    sums = {
        as_date(row[0]): dict(zip(counters, row[1:], strict=True))
        for row in daily(label, *[fn.SUM(getattr(table, c)) for c in counters])
        .group_by(label)
        .tuples()
    }
    # Open pull requests: the scope's total on each day, then the period's last day.
    open_prs = {
        label: values["open_prs"]
        for (_key, label), values in _last_values(
            (
                (None, day, total)
                for day, total in daily(table.date, fn.SUM(table.open_prs))
                .group_by(table.date)
                .tuples()
            ),
            granularity,
            ["open_prs"],
        ).items()
    }
    if table is not TeamMetric:
        incidents = _incident_counts(scope, period, granularity)
    active = _active_counts(scope, period, granularity)
    merged = _pr_medians(
        _human_prs(scope).where(period.contains(PullRequest.merged_at)),
        PullRequest.merged_at,
        granularity,
        STAGES,
        (("median", 0.5), ("p90", 0.9)),
    )
    dora = _dora_by_period(scope, period, granularity)

    rows = []
    for part in periods_of(period, granularity):
        label = period_label(part.start, granularity)
        row = {"period_start": part.start, "period_end": part.end}
        row.update({c: int(sums.get(label, {}).get(c) or 0) for c in TEAM_COUNTERS})
        if table is not TeamMetric:
            row.update(incidents.get(label, {"incidents_opened": 0, "incidents_resolved": 0}))
        row["open_prs"] = int(open_prs.get(label) or 0)
        row["active_developers"] = active.get(label, 0)
        medians = merged.get((label,), {})
        for stage in STAGES:
            for suffix in ("median", "p90"):
                name = f"{stage}_time_{suffix}_s"
                row[name] = medians.get(name)
        row.update(dora[label])  # a defaultdict: nulls for a period without data
        rows.append(row)
    return rows


# Every figure of a team rollup row, as the daily engine stores it per day.
TEAM_DAY_FIGURES = (
    *TEAM_COUNTERS,
    "open_prs",
    "active_developers",
    *(f"{stage}_time_{suffix}_s" for stage in STAGES for suffix in ("median", "p90")),
    "lead_time_median_s",
    "change_failure_rate",
    "time_to_restore_median_s",
)


def _stored_team_days(organization, period: Period) -> list[dict]:
    """The org-wide rollup by day: a day is its own period, so each row is the engine's
    stored TeamMetric row (same definitions, computed from the same rows), read in one
    query instead of recomputed; days without a row are zeros and nulls."""
    stored = {
        as_date(row[0]): row[1:]
        for row in raw_rows(
            TeamMetric.select(
                TeamMetric.date, *[getattr(TeamMetric, name) for name in TEAM_DAY_FIGURES]
            ).where(
                (TeamMetric.organization == organization)
                & (TeamMetric.date >= period.start)
                & (TeamMetric.date <= period.end)
            )
        )
    }
    empty = tuple(
        0 if name in TEAM_COUNTERS or name in ("open_prs", "active_developers") else None
        for name in TEAM_DAY_FIGURES
    )
    rows = []
    for part in periods_of(period, "day"):
        values = stored.get(part.start, empty)
        row = {"period_start": part.start, "period_end": part.end}
        row.update(zip(TEAM_DAY_FIGURES, values, strict=True))
        rows.append(row)
    return rows


DAILY_WINDOW_DAYS = 92  # the days `daily_rows` recomputes together (a bounded rollup each)


def daily_rows(scope: Scope | Organization, start: dt.date | None, end: dt.date | None) -> LazyRows:
    """The daily figures (`/daily`), one row (`date` and every TEAM_DAY_FIGURES) per day
    that has a stored team_metrics row between `start` and `end` (either open), by day: the
    stored rows themselves for the whole organization, else the same figures recomputed
    over the scope's repositories. Rows are read (or recomputed) a chunk of days at a time."""
    scope = Scope.of(scope)
    organization = scope.organization
    in_range = TeamMetric.organization == organization
    if start:
        in_range &= TeamMetric.date >= start
    if end:
        in_range &= TeamMetric.date <= end
    days = [
        as_date(day)
        for (day,) in raw_rows(
            TeamMetric.select(TeamMetric.date).where(in_range).order_by(TeamMetric.date)
        )
    ]

    def stored(days: list[dt.date]) -> list[dict]:
        rows = (
            TeamMetric.select(TeamMetric.date, *[getattr(TeamMetric, n) for n in TEAM_DAY_FIGURES])
            .where(
                (TeamMetric.organization == organization)
                & (TeamMetric.date >= days[0])
                & (TeamMetric.date <= days[-1])
            )
            .order_by(TeamMetric.date)
        )
        wanted = set(days)
        return [
            {"date": day, **dict(zip(TEAM_DAY_FIGURES, values, strict=True))}
            for day, *values in ((as_date(row[0]), *row[1:]) for row in raw_rows(rows))
            if day in wanted
        ]

    def recomputed(days: list[dt.date]) -> list[dict]:
        wanted, rows, first = set(days), [], 0
        while first < len(days):  # windows of at most DAILY_WINDOW_DAYS days with rows
            last = first
            limit = days[first] + dt.timedelta(days=DAILY_WINDOW_DAYS - 1)
            while last + 1 < len(days) and days[last + 1] <= limit:
                last += 1
            window = Period(days[first], days[last])
            for row in computed_team_rollup(scope, window, "day"):
                if row["period_start"] in wanted:
                    figures = {name: row[name] for name in TEAM_DAY_FIGURES}
                    rows.append({"date": row["period_start"], **figures})
            first = last + 1
        return rows

    return LazyRows(days, stored if scope.whole_organization else recomputed)


def _incident_counts(scope: Scope, period, granularity) -> dict:
    counts = defaultdict(lambda: {"incidents_opened": 0, "incidents_resolved": 0})
    for moment, name in (
        (Incident.opened_at, "incidents_opened"),
        (Incident.resolved_at, "incidents_resolved"),
    ):
        label = label_sql(moment, granularity)
        query = Incident.select(label, fn.COUNT(Incident.id)).where(
            (Incident.organization == scope.organization) & period.contains(moment)
        )
        for value, count in scope.where(query, Incident.repository).group_by(label).tuples():
            counts[as_date(value)][name] = count
    return counts


def _dora_by_period(scope: Scope, period, granularity) -> dict:
    """{label: {lead_time_median_s, change_failure_rate, time_to_restore_median_s}}."""
    out = defaultdict(
        lambda: {
            "lead_time_median_s": None,
            "change_failure_rate": None,
            "time_to_restore_median_s": None,
        }
    )
    lead = _pr_medians(
        _human_prs(scope).where(period.contains(PullRequest.deployed_at)),
        PullRequest.deployed_at,
        granularity,
        ("cycle",),
        (("median", 0.5),),
    )
    for (label,), values in lead.items():
        out[label]["lead_time_median_s"] = values["cycle_time_median_s"]

    label = label_sql(ProductionDeployment.finished_at, granularity)
    for value, failed, total in (
        _deployments(scope, period)
        .select(label, fn.SUM(pw.Case(None, [(ProductionDeployment.failed, 1)], 0)), fn.COUNT(1))
        .group_by(label)
        .tuples()
    ):
        out[as_date(value)]["change_failure_rate"] = int(failed) / total if total else None

    label = label_sql(Incident.resolved_at, granularity)
    for value, median in (
        _resolved_incidents(scope, period)
        .select(label, percentile(_restore_span(), 0.5))
        .group_by(label)
        .tuples()
    ):
        out[as_date(value)]["time_to_restore_median_s"] = median
    return out


# Developers and repositories ----------------------------------------------------------


class LazyRows(Sequence):
    """Rows built only when read: the API pages through thousands of (developer, week)
    keys but shows a hundred, so the figures that are costly to compute and each row dict
    are made for the page alone; iterating (a CSV export) builds them CHUNK keys at a time,
    so the whole list of rows never exists at once. `build(keys)` returns the rows of those
    keys, in order."""

    CHUNK = 500

    def __init__(self, keys: list, build):
        self._keys = keys
        self._build = build

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, index):
        if isinstance(index, slice):
            keys = self._keys[index]
            return self._build(keys) if keys else []
        return self._build([self._keys[index]])[0]

    def __iter__(self):
        for start in range(0, len(self._keys), self.CHUNK):
            yield from self._build(self._keys[start : start + self.CHUNK])


DEVELOPER_STAGES = ("cycle", "coding", "pickup", "review")


@dataclass(frozen=True)
class _Figures:
    """Some of a developer's figures: the rows they come from (`query`), whose they are
    (`user`), when (`moment`, a date or a timestamp) and the figures ({name: aggregate});
    `per_row` names a figure counting the rows of a finer grouping (`extra_group`)."""

    query: pw.ModelSelect
    user: pw.Field
    moment: pw.Field
    figures: dict
    extra_group: tuple = ()
    per_row: str | None = None

    def within(self, period: Period):
        if isinstance(self.moment, pw.DateField):
            return (self.moment >= period.start) & (self.moment <= period.end)
        return period.contains(self.moment)


def _stored_developer_figures(scope: Scope) -> list[_Figures]:
    """The engine's daily rows: the whole organization's figures."""
    return [
        _Figures(
            DeveloperMetric.select().where(DeveloperMetric.organization == scope.organization),
            DeveloperMetric.user,
            DeveloperMetric.date,
            {c: fn.SUM(getattr(DeveloperMetric, c)) for c in DEVELOPER_COUNTERS},
        )
    ]


def _developer_activity_figures(scope: Scope) -> list[_Figures]:
    """The daily engine's developer figures (engine/daily.py) counted straight from the
    scope's activity: the stored daily rows cannot be split by repository. Summed over a
    period they equal the sums of the daily rows (prs_reviewed, distinct pull requests
    reviewed a day, counts distinct (pull request, day) pairs)."""
    organization = scope.organization
    commits = Commit.select().where(
        (Commit.organization == organization)
        & (Commit.author_is_bot == False)  # noqa: E712
        & Commit.author.is_null(False)
    )
    prs = _human_prs(scope).where(PullRequest.author.is_null(False))
    reviewed = PullRequest.alias("reviewed")

    def reviews(kind):
        query = (
            Review.select()
            .join(reviewed, on=(Review.pull_request == reviewed.id))
            .where(
                (Review.organization == organization)
                & (Review.kind == kind)
                & (Review.reviewer_is_bot == False)  # noqa: E712
                & Review.deleted_at.is_null()
                & Review.reviewer.is_null(False)
            )
        )
        return scope.where(query, reviewed.repository)

    of_others = by_another_human(Review, reviewed)
    issues = Issue.select().where(
        (Issue.organization == organization) & human_issue() & Issue.author.is_null(False)
    )
    closures = IssueClosure.select().where(
        (IssueClosure.organization == organization)
        & (IssueClosure.closer_is_bot == False)  # noqa: E712
        & IssueClosure.closer.is_null(False)
    )
    return [
        _Figures(
            scope.where(commits, Commit.repository),
            Commit.author,
            Commit.authored_at,
            {"commits": fn.COUNT(1)},
        ),
        _Figures(prs, PullRequest.author, PullRequest.created_at, {"prs_opened": fn.COUNT(1)}),
        _Figures(
            prs,
            PullRequest.author,
            PullRequest.merged_at,
            {
                "prs_merged": fn.COUNT(1),
                "additions": fn.SUM(PullRequest.additions),
                "deletions": fn.SUM(PullRequest.deletions),
            },
        ),
        _Figures(
            reviews(ReviewKind.REVIEW).where(of_others),
            Review.reviewer,
            Review.submitted_at,
            {"reviews_given": fn.COUNT(1)},
            extra_group=(day_of(Review.submitted_at), Review.pull_request),
            per_row="prs_reviewed",
        ),
        _Figures(
            reviews(ReviewKind.REVIEW_COMMENT),
            Review.reviewer,
            Review.submitted_at,
            {"review_comments": fn.COUNT(1)},
        ),
        _Figures(
            scope.where(issues, Issue.repository),
            Issue.author,
            Issue.created_at,
            {"issues_opened": fn.COUNT(1)},
        ),
        _Figures(
            scope.where(closures, IssueClosure.repository),
            IssueClosure.closer,
            IssueClosure.closed_at,
            {"issues_closed": fn.COUNT(1)},
        ),
    ]


def _unlinked_commits(scope: Scope):
    """The scope's human commits that map to no user: unlinked contributors', each known by
    its e-mail (case-insensitive). Their only figure is commits (pull requests, reviews and
    issues name a login, which is always a user)."""
    query = Commit.select().where(
        (Commit.organization == scope.organization)
        & (Commit.author_is_bot == False)  # noqa: E712
        & Commit.author.is_null()
        & Commit.author_email.is_null(False)
        & (Commit.author_email != "")
    )
    return scope.where(query, Commit.repository)


def name_part(email: str) -> str:
    """What an unlinked contributor is shown as: their e-mail's name part (never the
    address)."""
    return email.rsplit("@", 1)[0] if "@" in email else email


def _unlinked_rows(scope: Scope, period: Period, granularity: str, keys) -> dict:
    """{(e-mail, label): (commits, author name)} of these unlinked contributors' keys."""
    first = min(day for _, day in keys)
    last = _last_day_of_period(max(day for _, day in keys), granularity)
    span = Period(max(first, period.start), min(last, period.end))
    email = fn.LOWER(Commit.author_email)
    label = label_sql(Commit.authored_at, granularity)
    rows = raw_rows(
        _unlinked_commits(scope)
        .select(email, label, fn.COUNT(1), fn.MAX(Commit.author_name))
        .where(span.contains(Commit.authored_at) & email.in_({e for e, _ in keys}))
        .group_by(email, label)
    )
    return {(e, as_date(day)): (n, name) for e, day, n, name in rows}


def developer_rollup(
    scope: Scope | Organization, period: Period, granularity: str, user=None
) -> LazyRows:
    """One row per (developer, period) with any figure, humans only, by period then login:
    sums of the stored daily rows for the whole organization, else the same figures
    counted from the scope's activity (a developer with none there is absent). Unlinked
    contributors (commit e-mails no user owns: services/activity/authors.py) have rows of
    their own, `unlinked` and shown by their e-mail's name part, with their commits."""
    scope = Scope.of(scope)
    if scope.whole_organization:
        sources = _stored_developer_figures(scope)
    else:
        sources = _developer_activity_figures(scope)
    # Medians of the pull requests merged in each period (and a period with a merged pull
    # request and no daily row is a row of its own).
    sources.append(
        _Figures(
            _human_prs(scope).where(PullRequest.author.is_null(False)),
            PullRequest.author,
            PullRequest.merged_at,
            {
                f"{stage}_time_median_s": percentile(_stage_column(stage), 0.5)
                for stage in DEVELOPER_STAGES
            },
        )
    )
    if user is not None:
        sources = [replace(s, query=s.query.where(s.user == user)) for s in sources]
    # The (developer, period) keys in one round trip, from the indexes: the sums and
    # medians are computed for a page (or a CSV chunk) only.
    with_figures = [
        s.query.select(s.user, label_sql(s.moment, granularity))
        .where(s.within(period))
        .group_by(s.user, label_sql(s.moment, granularity))
        for s in sources
    ]
    keys = {(uid, as_date(day)) for uid, day in raw_rows(reduce(operator.or_, with_figures))}
    users = {
        uid: (login, name)
        for uid, login, name in raw_rows(
            User.select(User.id, User.login, User.name).where(
                User.id.in_({uid for uid, _ in keys}) & (User.is_bot == False)  # noqa: E712
            )
        )
    }
    keys = [key for key in keys if key[0] in users]  # bots count nowhere
    if user is None:
        email, label = fn.LOWER(Commit.author_email), label_sql(Commit.authored_at, granularity)
        keys += {
            (address, as_date(day))
            for address, day in raw_rows(
                _unlinked_commits(scope)
                .select(email, label)
                .where(period.contains(Commit.authored_at))
                .group_by(email, label)
            )
        }

    def login_of(person) -> str:
        """A user's login, or an unlinked contributor's (their e-mail: a str) name part."""
        return name_part(person) if isinstance(person, str) else users[person][0]

    def figures_of(keys) -> dict:
        """{key: {figure: value}} of these keys."""
        first = min(day for _, day in keys)
        last = _last_day_of_period(max(day for _, day in keys), granularity)
        span = Period(max(first, period.start), min(last, period.end))
        authors = {uid for uid, _ in keys}
        figures = defaultdict(dict)
        for s in sources:
            label = label_sql(s.moment, granularity)
            rows = raw_rows(
                s.query.select(s.user, label, *s.extra_group, *s.figures.values())
                .where(s.user.in_(authors) & s.within(span))
                .group_by(s.user, label, *s.extra_group)
            )
            for row in rows:
                values = figures[(row[0], as_date(row[1]))]
                aggregates = row[2 + len(s.extra_group) :]
                for name, value in zip(s.figures, aggregates, strict=True):
                    if name in DEVELOPER_COUNTERS:
                        values[name] = values.get(name, 0) + int(value or 0)
                    else:
                        values[name] = value
                if s.per_row:
                    values[s.per_row] = values.get(s.per_row, 0) + 1
        return figures

    def build(keys) -> list[dict]:
        linked = [key for key in keys if not isinstance(key[0], str)]
        unlinked = [key for key in keys if isinstance(key[0], str)]
        figures = figures_of(linked) if linked else {}
        if unlinked:
            for key, (commits, name) in _unlinked_rows(
                scope, period, granularity, unlinked
            ).items():
                figures[key] = {"commits": commits, "name": name}
        rows = []
        for key in keys:
            uid, label = key
            values = figures.get(key, {})
            row = _row_for(period, label, granularity)
            if isinstance(uid, str):
                row["user"] = {"id": None, "login": name_part(uid), "name": values.get("name")}
            else:
                login, name = users[uid]
                row["user"] = {"id": uid, "login": login, "name": name}
            row["unlinked"] = isinstance(uid, str)
            row.update({c: values.get(c, 0) for c in DEVELOPER_COUNTERS})
            row.update(
                {f"{s}_time_median_s": values.get(f"{s}_time_median_s") for s in DEVELOPER_STAGES}
            )
            rows.append(row)
        return rows

    return LazyRows(sorted(keys, key=lambda k: (k[1], login_of(k[0]), str(k[0]))), build)


def repository_rollup(scope: Scope | Organization, period: Period, granularity: str) -> LazyRows:
    """One row per (repository, period) with a daily row, by period then full name, over
    the scope's repositories (RESTRICTED ones only for a scope that shows them)."""
    scope = Scope.of(scope)
    organization = scope.organization
    label = label_sql(RepositoryStats.date, granularity)

    def stats(span: Period, *columns):
        query = RepositoryStats.select(*columns).where(
            (RepositoryStats.organization == organization)
            & (RepositoryStats.date >= span.start)
            & (RepositoryStats.date <= span.end)
        )
        return scope.where(query, RepositoryStats.repository)

    keys = {
        (rid, as_date(day))
        for rid, day in raw_rows(
            stats(period, RepositoryStats.repository, label).group_by(
                RepositoryStats.repository, label
            )
        )
    }
    names = {
        r.id: r.full_name
        for r in Repository.select(Repository.id, Repository.full_name).where(
            Repository.id.in_({rid for rid, _ in keys})
        )
    }

    def build(keys) -> list[dict]:
        first = min(day for _, day in keys)
        last = _last_day_of_period(max(day for _, day in keys), granularity)
        span = Period(max(first, period.start), min(last, period.end))
        repos = {rid for rid, _ in keys}
        mine = RepositoryStats.repository.in_(repos)
        sums = {
            (row[0], as_date(row[1])): row[2:]
            for row in raw_rows(
                stats(
                    span,
                    RepositoryStats.repository,
                    label,
                    *[fn.SUM(getattr(RepositoryStats, c)) for c in REPOSITORY_COUNTERS],
                )
                .where(mine)
                .group_by(RepositoryStats.repository, label)
            )
        }
        levels = _last_values(
            raw_rows(
                stats(
                    span,
                    RepositoryStats.repository,
                    RepositoryStats.date,
                    RepositoryStats.open_prs,
                    RepositoryStats.open_issues,
                ).where(mine)
            ),
            granularity,
            ["open_prs", "open_issues"],
        )
        people = _people_by_period(scope, span, granularity, commits_only=True)
        medians = _pr_medians(
            _human_prs(scope).where(
                span.contains(PullRequest.merged_at) & PullRequest.repository.in_(repos)
            ),
            PullRequest.merged_at,
            granularity,
            ("cycle",),
            (("median", 0.5),),
            group=(PullRequest.repository,),
        )
        rows = []
        for key in keys:
            rid, label_day = key
            row = _row_for(period, label_day, granularity)
            row["repository"] = {"id": rid, "full_name": names[rid]}
            counts = sums.get(key, (0,) * len(REPOSITORY_COUNTERS))
            row.update({c: int(v or 0) for c, v in zip(REPOSITORY_COUNTERS, counts, strict=True)})
            row.update(levels.get(key, {"open_prs": 0, "open_issues": 0}))
            row["contributors"] = len(people.get(key, ()))
            row["cycle_time_median_s"] = medians.get(key, {}).get("cycle_time_median_s")
            rows.append(row)
        return rows

    return LazyRows(sorted(keys, key=lambda k: (k[1], names[k[0]])), build)


def _row_for(period: Period, label: dt.date, granularity: str) -> dict:
    covered = _covered(period, label, granularity)
    return {"period_start": covered.start, "period_end": covered.end}


# DORA ---------------------------------------------------------------------------------


def _deployments(scope: Scope, period: Period):
    query = ProductionDeployment.select().where(
        (ProductionDeployment.organization == scope.organization)
        & period.contains(ProductionDeployment.finished_at)
    )
    return scope.where(query, ProductionDeployment.repository)


def _resolved_incidents(scope: Scope, period: Period):
    query = Incident.select().where(
        (Incident.organization == scope.organization) & period.contains(Incident.resolved_at)
    )
    return scope.where(query, Incident.repository)


def _restore_span():
    return seconds_between(Incident.resolved_at, Incident.opened_at)


def duration_category(seconds: float | None, elite: float, high: float, medium: float):
    if seconds is None:
        return None
    if seconds < elite:
        return "elite"
    if seconds < high:
        return "high"
    if seconds < medium:
        return "medium"
    return "low"


def failure_rate_category(failed: int, deployments: int) -> str | None:
    # Integer comparisons: a rate of exactly 5 %, 10 % or 15 % is inside the better band.
    if not deployments:
        return None
    if failed * 100 <= 5 * deployments:
        return "elite"
    if failed * 100 <= 10 * deployments:
        return "high"
    if failed * 100 <= 15 * deployments:
        return "medium"
    return "low"


def frequency_category(deploy_days: set[dt.date], period: Period) -> str:
    """Elite/high by the median over the (clipped) ISO weeks of the number of distinct days
    with a successful production deployment, medium by that median over calendar months."""
    per_week = [
        sum(1 for d in deploy_days if part.start <= d <= part.end)
        for part in periods_of(period, "week")
    ]
    weekly = percentile_cont(per_week, 0.5)
    if weekly >= 5:
        return "elite"
    if weekly >= 1:
        return "high"
    per_month = [
        sum(1 for d in deploy_days if part.start <= d <= part.end)
        for part in periods_of(period, "month")
    ]
    return "medium" if percentile_cont(per_month, 0.5) >= 1 else "low"


def dora_keys(scope: Scope | Organization, period: Period) -> dict:
    """The four keys over `period`, without the comparison."""
    scope = Scope.of(scope)
    lead_median, lead_count = (
        _human_prs(scope)
        .select(percentile(PullRequest.cycle_s, 0.5), fn.COUNT(PullRequest.cycle_s))
        .where(period.contains(PullRequest.deployed_at))
        .tuples()
        .get()
    )
    deployments = _deployments(scope, period)
    deploy_days = {
        as_date(day)
        for (day,) in deployments.select(day_of(ProductionDeployment.finished_at))
        .where(ProductionDeployment.succeeded == True)  # noqa: E712
        .distinct()
        .tuples()
    }
    succeeded, failed, total = (
        deployments.select(
            fn.SUM(pw.Case(None, [(ProductionDeployment.succeeded, 1)], 0)),
            fn.SUM(pw.Case(None, [(ProductionDeployment.failed, 1)], 0)),
            fn.COUNT(1),
        )
        .tuples()
        .get()
    )
    succeeded, failed = int(succeeded or 0), int(failed or 0)
    restore_median, restored = (
        _resolved_incidents(scope, period)
        .select(percentile(_restore_span(), 0.5), fn.COUNT(_restore_span()))
        .tuples()
        .get()
    )
    return {
        "period": period.as_dict(),
        "lead_time": {
            "median_s": lead_median,
            "pull_requests": lead_count,
            "category": duration_category(lead_median, DAY_S, WEEK_S, MONTH_S),
        },
        "deployment_frequency": {
            "deployments": succeeded,
            "per_day": succeeded / period.days,
            "per_week": succeeded * 7 / period.days,
            "category": frequency_category(deploy_days, period),
        },
        "change_failure_rate": {
            "failed": failed,
            "deployments": total,
            "rate": failed / total if total else None,
            "category": failure_rate_category(failed, total),
        },
        "time_to_restore": {
            "median_s": restore_median,
            "incidents": restored,
            "category": duration_category(restore_median, 3600, DAY_S, WEEK_S),
        },
    }


def dora(scope: Scope | Organization, period: Period) -> dict:
    """The four keys over `period`, and over the same number of days just before it."""
    scope = Scope.of(scope)
    figures = dora_keys(scope, period)
    figures["previous"] = dora_keys(scope, period.previous())
    return figures


# Cycle time ---------------------------------------------------------------------------


def cycle_time_breakdown(scope: Scope | Organization, period: Period) -> dict:
    """Median, p75 and p90 of each stage over the human PRs merged in the period."""
    scope = Scope.of(scope)
    columns = []
    for stage in STAGES:
        column = _stage_column(stage)
        columns += [
            percentile(column, 0.5),
            percentile(column, 0.75),
            percentile(column, 0.9),
            fn.COUNT(column),
        ]
    row = (
        _human_prs(scope)
        # COUNT(1), not COUNT(id): the covering index on merged_at then answers alone.
        .select(fn.COUNT(1), *columns)
        .where(period.contains(PullRequest.merged_at))
        .tuples()
        .get()
    )
    stages = {}
    for i, stage in enumerate(STAGES):
        median, p75, p90, count = row[1 + 4 * i : 5 + 4 * i]
        stages[stage] = {"median_s": median, "p75_s": p75, "p90_s": p90, "count": count}
    return {"period": period.as_dict(), "pull_requests": row[0], "stages": stages}
