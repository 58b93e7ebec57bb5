"""The daily tables of one organization over a range of UTC days: each figure is one
GROUP BY over an activity (or derived) table, and the rows of the range are replaced.

People: bots (Commit/PullRequest/Review/IssueClosure `*_is_bot`, issue authors whose login
ends in `[bot]`) count nowhere. A commit is its author's as the activity service attributed
it (its username, else its e-mail's owner: services/activity/authors.py); one that maps to
no user (an unlinked contributor, known by its e-mail) counts in the team and repository
totals and among the active people, not in the developer rows.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import peewee as pw

from shared.models import (
    Commit,
    DeveloperMetric,
    Incident,
    Issue,
    IssueClosure,
    ProductionDeployment,
    PullRequest,
    Repository,
    RepositoryStats,
    Review,
    ReviewKind,
    TeamMetric,
    by_another_human,
    utcnow,
)
from shared.sql import (
    as_date,
    day_of,
    insert_rows,
    percentile,
    raw_rows,
    seconds_between,
)

# A pull request's stages, each stored in PullRequest.<stage>_s.
STAGES = ("coding", "pickup", "review", "deploy", "cycle")
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


def midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC)


def days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]


class Range:
    """[start, end] as timestamps [lo, hi)."""

    def __init__(self, start: dt.date, end: dt.date):
        self.start, self.end = start, end
        self.lo, self.hi = midnight(start), midnight(end + dt.timedelta(days=1))

    def has(self, field):
        return (field >= self.lo) & (field < self.hi)


def human_pull_request():
    return PullRequest.author_is_bot == False  # noqa: E712


def human_issue():
    return Issue.author_login.is_null() | ~Issue.author_login.endswith("[bot]")


# First activity -------------------------------------------------------------------------


def first_activity(organization_id: int) -> tuple[dt.date | None, dict[int, dt.date]]:
    """The organization's first day of activity, and each repository's."""
    sources = [
        (Commit, Commit.authored_at),
        (PullRequest, PullRequest.created_at),
        (Issue, Issue.created_at),
        (ProductionDeployment, ProductionDeployment.created_at),
    ]
    firsts: dict[int, dt.date] = {}
    for model, moment in sources:
        if model in (Commit, PullRequest):
            # Per repository along the (repository, authored_at / created_at) index: a GROUP
            # BY would read every commit or PR of the organization on each incremental run.
            earliest = model.select(pw.fn.MIN(moment)).where(model.repository == Repository.id)
            query = Repository.select(Repository.id, earliest).where(
                Repository.organization == organization_id
            )
        else:
            query = (
                model.select(model.repository, pw.fn.MIN(day_of(moment)))
                .where(model.organization == organization_id)
                .group_by(model.repository)
            )
        for repo_id, first in query.tuples():
            first = as_date(first)
            if first is not None and (repo_id not in firsts or first < firsts[repo_id]):
                firsts[repo_id] = first
    return (min(firsts.values()) if firsts else None), firsts


# The figures ----------------------------------------------------------------------------


class Figures:
    """Counters keyed by (day), (user, day) and (repository, day)."""

    def __init__(self):
        self.team = defaultdict(lambda: defaultdict(float))
        self.developer = defaultdict(lambda: defaultdict(float))
        self.repository = defaultdict(lambda: defaultdict(float))
        self.active = defaultdict(set)  # day -> identities of active humans
        self.contributors = defaultdict(set)  # (repo, day) -> commit author identities

    def count(self, name, day, repo_id, user_id, value, *, team=True, repo_name=None):
        value = value or 0
        if team:
            self.team[day][name] += value
        if repo_id is not None and repo_name is not False:
            self.repository[(repo_id, day)][repo_name or name] += value
        if user_id is not None:
            self.developer[(user_id, day)][name] += value


def _commits(org_id: int, period: Range, figures: Figures) -> None:
    day = day_of(Commit.authored_at)
    email = pw.fn.LOWER(Commit.author_email)
    for d, repo_id, user_id, author_email, author_name, n in raw_rows(
        Commit.select(
            day, Commit.repository, Commit.author, email, Commit.author_name, pw.fn.COUNT(Commit.id)
        )
        .where(
            (Commit.organization == org_id)
            & (Commit.author_is_bot == False)  # noqa: E712
            & period.has(Commit.authored_at)
        )
        .group_by(day, Commit.repository, Commit.author, email, Commit.author_name)
    ):
        d = as_date(d)
        figures.count("commits", d, repo_id, user_id, n)
        who = ("user", user_id) if user_id else ("email", author_email or author_name)
        figures.active[d].add(who)
        figures.contributors[(repo_id, d)].add(who)


def _pull_requests(org_id: int, period: Range, figures: Figures) -> None:
    opened = day_of(PullRequest.created_at)
    for d, repo_id, user_id, login, n in raw_rows(
        PullRequest.select(
            opened,
            PullRequest.repository,
            PullRequest.author,
            pw.fn.LOWER(PullRequest.author_login),
            pw.fn.COUNT(PullRequest.id),
        )
        .where(
            (PullRequest.organization == org_id)
            & human_pull_request()
            & period.has(PullRequest.created_at)
        )
        .group_by(
            opened,
            PullRequest.repository,
            PullRequest.author,
            pw.fn.LOWER(PullRequest.author_login),
        )
    ):
        d = as_date(d)
        figures.count("prs_opened", d, repo_id, user_id, n)
        figures.active[d].add(("user", user_id) if user_id else ("login", login))

    merged = day_of(PullRequest.merged_at)
    for d, repo_id, user_id, n, additions, deletions in raw_rows(
        PullRequest.select(
            merged,
            PullRequest.repository,
            PullRequest.author,
            pw.fn.COUNT(PullRequest.id),
            pw.fn.SUM(PullRequest.additions),
            pw.fn.SUM(PullRequest.deletions),
        )
        .where(
            (PullRequest.organization == org_id)
            & human_pull_request()
            & period.has(PullRequest.merged_at)
        )
        .group_by(merged, PullRequest.repository, PullRequest.author)
    ):
        d = as_date(d)
        figures.count("prs_merged", d, repo_id, user_id, n)
        # Push payloads carry no line counts: a day's lines are its merged PRs' final size.
        figures.count("additions", d, repo_id, user_id, additions)
        figures.count("deletions", d, repo_id, user_id, deletions)

    closed = day_of(PullRequest.closed_at)
    for d, repo_id, n in raw_rows(
        PullRequest.select(closed, PullRequest.repository, pw.fn.COUNT(PullRequest.id))
        .where(
            (PullRequest.organization == org_id)
            & human_pull_request()
            & PullRequest.merged_at.is_null()
            & period.has(PullRequest.closed_at)
        )
        .group_by(closed, PullRequest.repository)
    ):
        figures.repository[(repo_id, as_date(d))]["prs_closed"] += n


def _reviews(org_id: int, period: Range, figures: Figures) -> None:
    day = day_of(Review.submitted_at)
    reviewer = pw.fn.LOWER(Review.reviewer_login)
    human = (
        (Review.organization == org_id)
        & (Review.reviewer_is_bot == False)  # noqa: E712
        & Review.deleted_at.is_null()
    )
    on_others = by_another_human(Review, PullRequest)
    for d, repo_id, user_id, login, n, prs in raw_rows(
        Review.select(
            day,
            PullRequest.repository,
            Review.reviewer,
            reviewer,
            pw.fn.COUNT(Review.id),
            pw.fn.COUNT(Review.pull_request.distinct()),
        )
        .join(PullRequest, on=(Review.pull_request == PullRequest.id))
        .where(
            human & (Review.kind == ReviewKind.REVIEW) & on_others & period.has(Review.submitted_at)
        )
        .group_by(day, PullRequest.repository, Review.reviewer, reviewer)
    ):
        d = as_date(d)
        figures.count("reviews_given", d, repo_id, user_id, n, repo_name="reviews")
        figures.count("prs_reviewed", d, None, user_id, prs, team=False)
        figures.active[d].add(("user", user_id) if user_id else ("login", login))
    for d, repo_id, user_id, n in raw_rows(
        Review.select(day, PullRequest.repository, Review.reviewer, pw.fn.COUNT(Review.id))
        .join(PullRequest, on=(Review.pull_request == PullRequest.id))
        .where(human & (Review.kind == ReviewKind.REVIEW_COMMENT) & period.has(Review.submitted_at))
        .group_by(day, PullRequest.repository, Review.reviewer)
    ):
        figures.count("review_comments", as_date(d), repo_id, user_id, n)


def _issues(org_id: int, period: Range, figures: Figures) -> None:
    opened = day_of(Issue.created_at)
    for d, repo_id, user_id, n in raw_rows(
        Issue.select(opened, Issue.repository, Issue.author, pw.fn.COUNT(Issue.id))
        .where((Issue.organization == org_id) & human_issue() & period.has(Issue.created_at))
        .group_by(opened, Issue.repository, Issue.author)
    ):
        figures.count("issues_opened", as_date(d), repo_id, user_id, n)
    closed = day_of(IssueClosure.closed_at)
    for d, repo_id, user_id, n in raw_rows(
        IssueClosure.select(
            closed, IssueClosure.repository, IssueClosure.closer, pw.fn.COUNT(IssueClosure.id)
        )
        .where(
            (IssueClosure.organization == org_id)
            & (IssueClosure.closer_is_bot == False)  # noqa: E712
            & period.has(IssueClosure.closed_at)
        )
        .group_by(closed, IssueClosure.repository, IssueClosure.closer)
    ):
        figures.count("issues_closed", as_date(d), repo_id, user_id, n)


def _open_at_end_of_day(model, where, org_id: int, period: Range, days, name, figures, team):
    """Open at the end of each day = opened before the next midnight and not closed by
    then: the count before the range, then each day's openings minus closings."""
    before = dict(
        # COUNT(1): pull requests' covering closed_at index answers without the table.
        model.select(model.repository, pw.fn.COUNT(1))
        .where(
            (model.organization == org_id)
            & where
            & (model.created_at < period.lo)
            & (model.closed_at.is_null() | (model.closed_at >= period.lo))
        )
        .group_by(model.repository)
        .tuples()
    )
    delta = defaultdict(int)
    for moment, sign in ((model.created_at, 1), (model.closed_at, -1)):
        day = day_of(moment)
        for d, repo_id, n in (
            model.select(day, model.repository, pw.fn.COUNT(model.id))
            .where((model.organization == org_id) & where & period.has(moment))
            .group_by(day, model.repository)
            .tuples()
        ):
            delta[(repo_id, as_date(d))] += sign * n
    repos = set(before) | {repo_id for repo_id, _ in delta}
    for repo_id in repos:
        running = before.get(repo_id, 0)
        for d in days:
            running += delta.get((repo_id, d), 0)
            figures.repository[(repo_id, d)][name] = running
            if team:
                figures.team[d][name] += running


def _deployments_and_incidents(org_id: int, period: Range, figures: Figures) -> None:
    PD = ProductionDeployment
    day = day_of(PD.finished_at)
    for d, repo_id, n, failed in (
        PD.select(
            day, PD.repository, pw.fn.COUNT(PD.id), pw.fn.SUM(pw.Case(None, [(PD.failed, 1)], 0))
        )
        .where((PD.organization == org_id) & period.has(PD.finished_at))
        .group_by(day, PD.repository)
        .tuples()
    ):
        d = as_date(d)
        figures.count("deployments", d, repo_id, None, n)
        figures.count("failed_deployments", d, repo_id, None, failed)
    for moment, name in (
        (Incident.opened_at, "incidents_opened"),
        (Incident.resolved_at, "incidents_resolved"),
    ):
        day = day_of(moment)
        for d, n in (
            Incident.select(day, pw.fn.COUNT(Incident.id))
            .where((Incident.organization == org_id) & period.has(moment))
            .group_by(day)
            .tuples()
        ):
            figures.team[as_date(d)][name] += n
    day = day_of(Incident.resolved_at)
    for d, median in (
        Incident.select(
            day, percentile(seconds_between(Incident.resolved_at, Incident.opened_at), 0.5)
        )
        .where((Incident.organization == org_id) & period.has(Incident.resolved_at))
        .group_by(day)
        .tuples()
    ):
        figures.team[as_date(d)]["time_to_restore_median_s"] = median


def _medians(org_id: int, period: Range, figures: Figures) -> None:
    """Medians (and the team's p90s) of the stages of human PRs merged each day; the
    team's lead time of the PRs deployed each day."""
    merged = (
        (PullRequest.organization == org_id)
        & human_pull_request()
        & period.has(PullRequest.merged_at)
    )
    day = day_of(PullRequest.merged_at)
    columns = []
    for stage in STAGES:
        field = getattr(PullRequest, f"{stage}_s")
        columns += [
            (f"{stage}_time_median_s", percentile(field, 0.5)),
            (f"{stage}_time_p90_s", percentile(field, 0.9)),
        ]
    for d, *values in (
        PullRequest.select(day, *[expr for _, expr in columns]).where(merged).group_by(day).tuples()
    ):
        for (name, _), value in zip(columns, values, strict=True):
            figures.team[as_date(d)][name] = value
    developer_stages = ("cycle", "coding", "pickup", "review")
    for d, user_id, *values in (
        PullRequest.select(
            day,
            PullRequest.author,
            *[percentile(getattr(PullRequest, f"{s}_s"), 0.5) for s in developer_stages],
        )
        .where(merged & PullRequest.author.is_null(False))
        .group_by(day, PullRequest.author)
        .tuples()
    ):
        for stage, value in zip(developer_stages, values, strict=True):
            figures.developer[(user_id, as_date(d))][f"{stage}_time_median_s"] = value
    for d, repo_id, value in (
        PullRequest.select(day, PullRequest.repository, percentile(PullRequest.cycle_s, 0.5))
        .where(merged)
        .group_by(day, PullRequest.repository)
        .tuples()
    ):
        figures.repository[(repo_id, as_date(d))]["cycle_time_median_s"] = value
    deployed = day_of(PullRequest.deployed_at)
    for d, value in (
        PullRequest.select(deployed, percentile(PullRequest.cycle_s, 0.5))
        .where(
            (PullRequest.organization == org_id)
            & human_pull_request()
            & period.has(PullRequest.deployed_at)
        )
        .group_by(deployed)
        .tuples()
    ):
        figures.team[as_date(d)]["lead_time_median_s"] = value


def compute(org_id: int, start: dt.date, end: dt.date) -> Figures:
    period = Range(start, end)
    days = days_between(start, end)
    figures = Figures()
    _commits(org_id, period, figures)
    _pull_requests(org_id, period, figures)
    _reviews(org_id, period, figures)
    _issues(org_id, period, figures)
    _open_at_end_of_day(
        PullRequest, human_pull_request(), org_id, period, days, "open_prs", figures, True
    )
    _open_at_end_of_day(Issue, human_issue(), org_id, period, days, "open_issues", figures, False)
    _deployments_and_incidents(org_id, period, figures)
    _medians(org_id, period, figures)
    return figures


# Writing the rows ------------------------------------------------------------------------


def _row(model, values: dict, **keys) -> dict:
    """Every column (insert_many takes its columns from the first row): counters as ints,
    missing counters 0, missing medians NULL."""
    row = {}
    for name, field in model._meta.fields.items():
        if isinstance(field, pw.AutoField) or name in keys:
            continue
        value = values.get(name)
        if isinstance(field, pw.IntegerField):
            value = int(value or 0)
        row[name] = value
    return {**row, **keys}


def write(org_id: int, start: dt.date, end: dt.date, figures: Figures, firsts=None) -> None:
    """Replace the organization's rows in [start, end]: team and repository rows for every
    day from the first activity on, developer rows where something is non-zero. `firsts`:
    first_activity(org_id) when the caller has it already (a full run, month by month)."""
    first, repo_firsts = firsts or first_activity(org_id)
    now = utcnow()
    for model in (TeamMetric, DeveloperMetric, RepositoryStats):
        model.delete().where(
            (model.organization == org_id) & (model.date >= start) & (model.date <= end)
        ).execute()
    if first is None:
        return
    repos = list(Repository.select(Repository.id).where(Repository.organization == org_id).tuples())
    team_rows, repo_rows, developer_rows = [], [], []
    for day in days_between(max(start, first), end):
        values = dict(figures.team.get(day, {}))
        values["active_developers"] = len(figures.active.get(day, ()))
        deployments = values.get("deployments", 0)
        values["change_failure_rate"] = (
            values.get("failed_deployments", 0) / deployments if deployments else None
        )
        values["reviews"] = values.pop("reviews_given", 0)
        team_rows.append(_row(TeamMetric, values, organization=org_id, date=day, computed_at=now))
        for (repo_id,) in repos:
            if repo_id in repo_firsts and repo_firsts[repo_id] <= day:
                values = dict(figures.repository.get((repo_id, day), {}))
                values["contributors"] = len(figures.contributors.get((repo_id, day), ()))
                repo_rows.append(
                    _row(
                        RepositoryStats,
                        values,
                        repository=repo_id,
                        organization=org_id,
                        date=day,
                        computed_at=now,
                    )
                )
    for (user_id, day), values in figures.developer.items():
        if start <= day <= end and any(values.get(name) for name in DEVELOPER_COUNTERS):
            developer_rows.append(
                _row(
                    DeveloperMetric,
                    values,
                    user=user_id,
                    organization=org_id,
                    date=day,
                    computed_at=now,
                )
            )
    for model, rows in (
        (TeamMetric, team_rows),
        (RepositoryStats, repo_rows),
        (DeveloperMetric, developer_rows),
    ):
        insert_rows(model, rows)
