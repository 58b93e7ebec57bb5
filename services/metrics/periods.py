"""Figures over a period of whole UTC days, computed from the rows (no Flask here):
day/week/month rollups of the daily tables, the DORA four keys and the cycle-time breakdown.

Rollups: counters are sums of the daily rows inside each period (weeks are ISO weeks labelled
by their Monday, months by their 1st, both clipped to the requested range); levels (open PRs,
open issues) are the value on the period's last day that has a row; medians and p90s are
recomputed from the underlying pull requests, deployments and incidents of the period, never
averaged from daily values; active developers (and a repository's contributors) are distinct
humans recomputed from the activity itself, identified as the daily engine does.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import peewee as pw
from peewee import fn

from services.metrics.engine.daily import DEVELOPER_COUNTERS, STAGES
from shared.errors import NotFound
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
    Sensitivity,
    TeamMetric,
    User,
    UserOrganization,
)
from shared.sql import (
    as_date,
    day_of,
    is_postgres,
    percentile,
    percentile_cont,
    raw_rows,
    seconds_between,
)

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


# Lookups ------------------------------------------------------------------------------


def visible_repository(organization, repo_id: int, *, can_see_restricted: bool) -> Repository:
    query = Repository.select().where(
        (Repository.organization == organization) & (Repository.id == repo_id)
    )
    if not can_see_restricted:
        query = query.where(Repository.sensitivity != Sensitivity.RESTRICTED)
    repo = query.first()
    if repo is None:
        raise NotFound("repository not found", {"repository": ["no such repository"]})
    return repo


def developer_in(organization, ref: str) -> User:
    """A developer of the organization (a member, or someone with metrics in it) by id or
    GitHub login."""
    in_org = UserOrganization.select(UserOrganization.user).where(
        UserOrganization.organization == organization
    ) | DeveloperMetric.select(DeveloperMetric.user).where(
        DeveloperMetric.organization == organization
    )
    query = User.select().where(User.id.in_(in_org))
    if ref.isascii() and ref.isdigit():
        query = query.where(User.id == int(ref)) if len(ref) < 19 else query.where(False)
    else:
        query = query.where(fn.LOWER(User.login) == ref.lower())
    user = query.order_by(User.id).first()
    if user is None:
        raise NotFound("user not found", {"user": ["no such developer in this organization"]})
    return user


# Shared pieces ------------------------------------------------------------------------


def _human_prs(organization, repository=None):
    query = PullRequest.select().where(
        (PullRequest.organization == organization) & (PullRequest.author_is_bot == False)  # noqa: E712
    )
    if repository is not None:
        query = query.where(PullRequest.repository == repository)
    return query


def _stage_column(stage: str):
    return getattr(PullRequest, f"{stage}_s")


def _people_query(
    organization, period: Period, granularity: str, repository, commits_only, *, union_all=False
):
    """SELECT (repository_id, label, user_id, kind, name): the humans active in each period, as the
    daily engine counts them: commit authors, pull request authors (by creation) and
    reviewers of others' pull requests (`commits_only`: a repository's contributors). A
    person is their user, else their e-mail (or name) for commits, their login otherwise."""
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
            & (Review.reviewer_is_bot == False)  # noqa: E712
            & (
                reviewed.author_login.is_null()
                | Review.reviewer_login.is_null()
                | (fn.LOWER(Review.reviewer_login) != fn.LOWER(reviewed.author_login))
            )
        )
    )
    if repository is not None:
        commits = commits.where(Commit.repository == repository)
        authors = authors.where(PullRequest.repository == repository)
        reviewers = reviewers.where(reviewed.repository == repository)
    if commits_only:
        return commits
    return (commits + authors + reviewers) if union_all else (commits | authors | reviewers)


def _people_by_period(
    organization, period: Period, granularity: str, repository=None, *, commits_only=False
):
    """{(repository_id, label): {person, ...}} of the humans active in each period (see
    _people_query)."""
    query = _people_query(organization, period, granularity, repository, commits_only)
    people = defaultdict(set)
    for repo_id, label, user_id, kind, name in query.tuples():
        person = ("user", user_id) if user_id else (kind, name)
        people[(repo_id, as_date(label))].add(person)
    return people


def _active_counts(organization, period: Period, granularity: str, repository=None) -> dict:
    """{label: distinct active humans over all repositories}, counted by the database (the
    identities _people_by_period makes), without sending every (person, day) row."""
    # UNION ALL: COUNT(DISTINCT) dedupes once (a UNION would sort every row twice).
    people = _people_query(
        organization, period, granularity, repository, False, union_all=True
    ).alias("people")
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


def team_rollup(organization, period: Period, granularity: str, repository=None) -> list[dict]:
    """One row per day/week/month of the range (every period, zeros when nothing happened),
    org-wide or for one repository."""
    if repository is None and granularity == "day":
        return _stored_team_days(organization, period)
    return computed_team_rollup(organization, period, granularity, repository)


def computed_team_rollup(organization, period: Period, granularity: str, repository=None):
    """team_rollup from the daily sums and the underlying rows (medians, DORA, people)."""
    if repository is None:
        table, counters = TeamMetric, TEAM_COUNTERS
        scope = TeamMetric.organization == organization
        key = TeamMetric.organization
    else:
        table, counters = RepositoryStats, REPOSITORY_TEAM_COUNTERS
        scope = RepositoryStats.repository == repository
        key = RepositoryStats.repository
    label = label_sql(table.date, granularity)
    in_range = scope & (table.date >= period.start) & (table.date <= period.end)
    sums = {
        as_date(row[0]): dict(zip(counters, row[1:], strict=True))
        for row in (
            table.select(label, *[fn.SUM(getattr(table, c)) for c in counters])
            .where(in_range)
            .group_by(label)
            .tuples()
        )
    }
    open_prs = {
        label: values["open_prs"]
        for (_key, label), values in _last_values(
            table.select(key, table.date, table.open_prs).where(in_range).tuples(),
            granularity,
            ["open_prs"],
        ).items()
    }
    if repository is not None:
        incidents = _incident_counts(organization, period, granularity, repository)
    active = _active_counts(organization, period, granularity, repository)
    merged = _pr_medians(
        _human_prs(organization, repository).where(period.contains(PullRequest.merged_at)),
        PullRequest.merged_at,
        granularity,
        STAGES,
        (("median", 0.5), ("p90", 0.9)),
    )
    dora = _dora_by_period(organization, period, granularity, repository)

    rows = []
    for part in periods_of(period, granularity):
        label = period_label(part.start, granularity)
        row = {"period_start": part.start, "period_end": part.end}
        row.update({c: int(sums.get(label, {}).get(c) or 0) for c in TEAM_COUNTERS})
        if repository is not None:
            row.update(incidents.get(label, {"incidents_opened": 0, "incidents_resolved": 0}))
        row["open_prs"] = open_prs.get(label, 0)
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


def _incident_counts(organization, period, granularity, repository) -> dict:
    counts = defaultdict(lambda: {"incidents_opened": 0, "incidents_resolved": 0})
    for moment, name in (
        (Incident.opened_at, "incidents_opened"),
        (Incident.resolved_at, "incidents_resolved"),
    ):
        label = label_sql(moment, granularity)
        rows = (
            Incident.select(label, fn.COUNT(Incident.id))
            .where(
                (Incident.organization == organization)
                & (Incident.repository == repository)
                & period.contains(moment)
            )
            .group_by(label)
            .tuples()
        )
        for value, count in rows:
            counts[as_date(value)][name] = count
    return counts


def _dora_by_period(organization, period, granularity, repository) -> dict:
    """{label: {lead_time_median_s, change_failure_rate, time_to_restore_median_s}}."""
    out = defaultdict(
        lambda: {
            "lead_time_median_s": None,
            "change_failure_rate": None,
            "time_to_restore_median_s": None,
        }
    )
    lead = _pr_medians(
        _human_prs(organization, repository).where(period.contains(PullRequest.deployed_at)),
        PullRequest.deployed_at,
        granularity,
        ("cycle",),
        (("median", 0.5),),
    )
    for (label,), values in lead.items():
        out[label]["lead_time_median_s"] = values["cycle_time_median_s"]

    label = label_sql(ProductionDeployment.finished_at, granularity)
    for value, failed, total in (
        _deployments(organization, repository, period)
        .select(label, fn.SUM(pw.Case(None, [(ProductionDeployment.failed, 1)], 0)), fn.COUNT(1))
        .group_by(label)
        .tuples()
    ):
        out[as_date(value)]["change_failure_rate"] = int(failed) / total if total else None

    label = label_sql(Incident.resolved_at, granularity)
    for value, median in (
        _resolved_incidents(organization, repository, period)
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
    are made for the page alone (a CSV export reads them all). `build(keys)` returns the
    rows of those keys, in order."""

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
        return iter(self._build(self._keys) if self._keys else [])


DEVELOPER_STAGES = ("cycle", "coding", "pickup", "review")


def developer_rollup(organization, period: Period, granularity: str, user=None) -> LazyRows:
    """One row per (developer, period) with any figure, humans only, by period then login."""
    label = label_sql(DeveloperMetric.date, granularity)
    metrics = (
        DeveloperMetric.select()
        .join(User, on=(DeveloperMetric.user == User.id))
        .where(
            (DeveloperMetric.organization == organization)
            & (DeveloperMetric.date >= period.start)
            & (DeveloperMetric.date <= period.end)
            & (User.is_bot == False)  # noqa: E712
        )
    )
    prs = _human_prs(organization).where(
        period.contains(PullRequest.merged_at) & PullRequest.author.is_null(False)
    )
    if user is not None:
        metrics = metrics.where(DeveloperMetric.user == user)
        prs = prs.where(PullRequest.author == user)
    merged_label = label_sql(PullRequest.merged_at, granularity)
    # The (developer, period) keys, with daily figures or merged pull requests, in one
    # round trip and from the indexes: the sums and medians are computed for a page only.
    with_figures = metrics.select(DeveloperMetric.user, label).group_by(DeveloperMetric.user, label)
    with_merges = prs.select(PullRequest.author, merged_label).group_by(
        PullRequest.author, merged_label
    )
    keys = {(uid, as_date(day)) for uid, day in raw_rows(with_figures | with_merges)}
    users = {
        uid: (login, name)
        for uid, login, name in raw_rows(
            User.select(User.id, User.login, User.name).where(User.id.in_({uid for uid, _ in keys}))
        )
    }
    no_counts = (0,) * len(DEVELOPER_COUNTERS)
    no_medians = (None,) * len(DEVELOPER_STAGES)

    def figures_of(keys) -> tuple[dict, dict]:
        """({key: counter sums}, {key: stage medians}) of these keys."""
        first = min(day for _, day in keys)
        last = _last_day_of_period(max(day for _, day in keys), granularity)
        span = Period(max(first, period.start), min(last, period.end))
        authors = {uid for uid, _ in keys}
        sums = raw_rows(
            metrics.select(
                DeveloperMetric.user,
                label,
                *[fn.SUM(getattr(DeveloperMetric, c)) for c in DEVELOPER_COUNTERS],
            )
            .where(
                DeveloperMetric.user.in_(authors)
                & (DeveloperMetric.date >= span.start)
                & (DeveloperMetric.date <= span.end)
            )
            .group_by(DeveloperMetric.user, label)
        )
        medians = raw_rows(
            prs.select(
                PullRequest.author,
                merged_label,
                *[percentile(_stage_column(stage), 0.5) for stage in DEVELOPER_STAGES],
            )
            .where(PullRequest.author.in_(authors) & span.contains(PullRequest.merged_at))
            .group_by(PullRequest.author, merged_label)
        )
        return (
            {(row[0], as_date(row[1])): row[2:] for row in sums},
            {(row[0], as_date(row[1])): row[2:] for row in medians},
        )

    def build(keys) -> list[dict]:
        sums, medians = figures_of(keys)
        rows = []
        for key in keys:
            uid, label = key
            login, name = users[uid]
            row = _row_for(period, label, granularity)
            row["user"] = {"id": uid, "login": login, "name": name}
            counts = sums.get(key, no_counts)
            row.update({c: int(v or 0) for c, v in zip(DEVELOPER_COUNTERS, counts, strict=True)})
            values = medians.get(key, no_medians)
            row.update(
                {f"{s}_time_median_s": v for s, v in zip(DEVELOPER_STAGES, values, strict=True)}
            )
            rows.append(row)
        return rows

    return LazyRows(sorted(keys, key=lambda k: (k[1], users[k[0]][0])), build)


def repository_rollup(
    organization, period: Period, granularity: str, repository=None, *, can_see_restricted: bool
) -> list[dict]:
    """One row per (repository, period) with a daily row, by period then full name."""
    label = label_sql(RepositoryStats.date, granularity)
    visible = Repository.select(Repository.id).where(Repository.organization == organization)
    if not can_see_restricted:
        visible = visible.where(Repository.sensitivity != Sensitivity.RESTRICTED)
    in_range = (
        (RepositoryStats.organization == organization)
        & RepositoryStats.repository.in_(visible)
        & (RepositoryStats.date >= period.start)
        & (RepositoryStats.date <= period.end)
    )
    if repository is not None:
        in_range &= RepositoryStats.repository == repository
    sums = {
        (row[0], as_date(row[1])): dict(zip(REPOSITORY_COUNTERS, row[2:], strict=True))
        for row in (
            RepositoryStats.select(
                RepositoryStats.repository,
                label,
                *[fn.SUM(getattr(RepositoryStats, c)) for c in REPOSITORY_COUNTERS],
            )
            .where(in_range)
            .group_by(RepositoryStats.repository, label)
            .tuples()
        )
    }
    levels = _last_values(
        RepositoryStats.select(
            RepositoryStats.repository,
            RepositoryStats.date,
            RepositoryStats.open_prs,
            RepositoryStats.open_issues,
        )
        .where(in_range)
        .tuples(),
        granularity,
        ["open_prs", "open_issues"],
    )
    people = _people_by_period(organization, period, granularity, repository, commits_only=True)
    medians = _pr_medians(
        _human_prs(organization, repository).where(period.contains(PullRequest.merged_at)),
        PullRequest.merged_at,
        granularity,
        ("cycle",),
        (("median", 0.5),),
        group=(PullRequest.repository,),
    )
    names = {
        r.id: r.full_name
        for r in Repository.select(Repository.id, Repository.full_name).where(
            Repository.id.in_({rid for rid, _ in sums})
        )
    }
    rows = []
    for rid, label in sorted(sums, key=lambda k: (k[1], names[k[0]])):
        row = _row_for(period, label, granularity)
        row["repository"] = {"id": rid, "full_name": names[rid]}
        row.update({c: int(sums[(rid, label)].get(c) or 0) for c in REPOSITORY_COUNTERS})
        row.update(levels.get((rid, label), {"open_prs": 0, "open_issues": 0}))
        row["contributors"] = len(people.get((rid, label), ()))
        row["cycle_time_median_s"] = medians.get((rid, label), {}).get("cycle_time_median_s")
        rows.append(row)
    return rows


def _row_for(period: Period, label: dt.date, granularity: str) -> dict:
    covered = _covered(period, label, granularity)
    return {"period_start": covered.start, "period_end": covered.end}


# DORA ---------------------------------------------------------------------------------


def _deployments(organization, repository, period: Period):
    query = ProductionDeployment.select().where(
        (ProductionDeployment.organization == organization)
        & period.contains(ProductionDeployment.finished_at)
    )
    if repository is not None:
        query = query.where(ProductionDeployment.repository == repository)
    return query


def _resolved_incidents(organization, repository, period: Period):
    query = Incident.select().where(
        (Incident.organization == organization) & period.contains(Incident.resolved_at)
    )
    if repository is not None:
        query = query.where(Incident.repository == repository)
    return query


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


def dora_keys(organization, period: Period, repository=None) -> dict:
    """The four keys over `period`, without the comparison."""
    lead_median, lead_count = (
        _human_prs(organization, repository)
        .select(percentile(PullRequest.cycle_s, 0.5), fn.COUNT(PullRequest.cycle_s))
        .where(period.contains(PullRequest.deployed_at))
        .tuples()
        .get()
    )
    deployments = _deployments(organization, repository, period)
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
        _resolved_incidents(organization, repository, period)
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


def dora(organization, period: Period, repository=None) -> dict:
    """The four keys over `period`, and over the same number of days just before it."""
    figures = dora_keys(organization, period, repository)
    figures["previous"] = dora_keys(organization, period.previous(), repository)
    return figures


# Cycle time ---------------------------------------------------------------------------


def cycle_time_breakdown(organization, period: Period, repository=None) -> dict:
    """Median, p75 and p90 of each stage over the human PRs merged in the period."""
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
        _human_prs(organization, repository)
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
