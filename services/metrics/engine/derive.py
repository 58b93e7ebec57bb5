"""What the daily figures are computed from, derived per repository with set-based SQL:
production deployments whatever the repository's source, each pull request's first commit,
deployment and stage durations, the three kinds of incidents, and the DORA verdict
`failed` of each production deployment.

Each step reads the activity tables and the steps before it, in this order:
production deployments (outcome) -> pull requests (first_commit_at, deployed_at) ->
incidents -> deployment verdicts -> pull request stages. `refresh_repository` returns the
UTC days whose figures the changes touch, so the caller recomputes only those.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
from dataclasses import dataclass, field

import peewee as pw

from shared.models import (
    Commit,
    Deployment,
    DeploymentState,
    Incident,
    IncidentKind,
    Issue,
    Organization,
    ProductionDeployment,
    PullRequest,
    PullRequestCommit,
    Repository,
)
from shared.sql import (
    as_date,
    day_of,
    distinct_from,
    is_postgres,
    json_array_contains,
    least,
    seconds_between,
    without_bitmap_scans,
)
from shared.tenant_settings import deployment_source, incident_label, production_environments

# Open bounds of a time range, as stored (naive UTC).
BEGINNING = dt.datetime(1970, 1, 1)
END_OF_TIME = dt.datetime(9999, 12, 31)
TERMINAL = (DeploymentState.SUCCESS, DeploymentState.FAILURE, DeploymentState.ERROR)


@dataclass
class Derived:
    """What a refresh changed: the days to recompute, and incidents that are new."""

    days: set[dt.date] = field(default_factory=set)
    new_incidents: list[Incident] = field(default_factory=list)

    def add(self, *moments):
        """Note the UTC days of timestamps (as stored or as queries return them)."""
        for moment in moments:
            if type(moment) is dt.datetime and moment.tzinfo is None:
                self.days.add(moment.date())  # naive UTC, as PostgreSQL returns it
            elif moment is not None:
                self.days.add(PullRequest.created_at.python_value(moment).date())


# Production deployments ---------------------------------------------------------------


def _source_query(repo: Repository, org: Organization) -> tuple[str, pw.Select]:
    """(source, SELECT id, created_at, finished_at, succeeded) of the repository's
    production deployments by its deployment source."""
    kind, _workflow = deployment_source(repo)
    if kind == "merges":
        return "merge", (
            PullRequest.select(
                PullRequest.id,
                PullRequest.merged_at,
                PullRequest.merged_at,
                pw.Value(True),
            ).where(
                (PullRequest.repository == repo.id)
                & PullRequest.merged_at.is_null(False)
                & (PullRequest.base_ref == repo.default_branch)
            )
        )
    if kind == "workflow":
        # The activity service keeps only completed runs of the named workflow.
        where = (
            (Deployment.kind == "WORKFLOW_RUN")
            & (Deployment.ref == repo.default_branch)
            & Deployment.state.in_([DeploymentState.SUCCESS, DeploymentState.FAILURE])
        )
        source = "workflow"
    else:
        where = (
            (Deployment.kind == "DEPLOYMENT")
            & pw.fn.LOWER(Deployment.environment).in_(production_environments(org))
            & Deployment.state.in_(list(TERMINAL))
        )
        source = "deployment"
    return source, (
        Deployment.select(
            Deployment.id,
            Deployment.created_at,
            Deployment.finished_at,
            Deployment.state == DeploymentState.SUCCESS,
        ).where((Deployment.repository == repo.id) & where & Deployment.finished_at.is_null(False))
    )


def _deployment_signature(repo: Repository) -> dict:
    """Per finish day: (deployments, successful, failed); what the daily figures read."""
    return {
        as_date(day): (count, int(ok or 0), int(failed or 0))
        for day, count, ok, failed in (
            ProductionDeployment.select(
                day_of(ProductionDeployment.finished_at),
                pw.fn.COUNT(ProductionDeployment.id),
                pw.fn.SUM(pw.Case(None, [(ProductionDeployment.succeeded, 1)], 0)),
                pw.fn.SUM(pw.Case(None, [(ProductionDeployment.failed, 1)], 0)),
            )
            .where(ProductionDeployment.repository == repo.id)
            .group_by(day_of(ProductionDeployment.finished_at))
            .tuples()
        )
    }


def sync_production_deployments(repo: Repository, org: Organization) -> bool:
    """Bring the repository's production deployments in line with its deployment source;
    true when a row was added, changed or removed."""
    source, query = _source_query(repo, org)
    deleted = (
        ProductionDeployment.delete()
        .where(
            (ProductionDeployment.repository == repo.id)
            & (
                (ProductionDeployment.source != source)
                | ProductionDeployment.source_id.not_in(query.select(query.selected_columns[0]))
            )
        )
        .execute()
    )
    id_, created, finished, succeeded = query.selected_columns
    written = query.select(
        pw.Value(repo.organization_id),
        pw.Value(repo.id),
        pw.Value(source),
        id_,
        created,
        finished,
        succeeded,
        ~succeeded,  # a failed outcome is failed; a success's verdict comes later
    )
    written = (
        ProductionDeployment.insert_from(
            written,
            [
                ProductionDeployment.organization,
                ProductionDeployment.repository,
                ProductionDeployment.source,
                ProductionDeployment.source_id,
                ProductionDeployment.created_at,
                ProductionDeployment.finished_at,
                ProductionDeployment.succeeded,
                ProductionDeployment.failed,
            ],
        )
        .on_conflict(
            conflict_target=[ProductionDeployment.source, ProductionDeployment.source_id],
            preserve=[
                ProductionDeployment.created_at,
                ProductionDeployment.finished_at,
                ProductionDeployment.succeeded,
            ],
            # Rows that did not change are not rewritten (each refresh meets them all).
            where=functools.reduce(
                operator.or_,
                [
                    distinct_from(getattr(ProductionDeployment, name), getattr(pw.EXCLUDED, name))
                    for name in ("created_at", "finished_at", "succeeded")
                ],
            ),
        )
        .as_rowcount()
        .execute()
    )
    return bool(deleted or written)


# Pull requests ------------------------------------------------------------------------


def _first_commit_at():
    """Earliest author date of the pull request's commits: pushed to its head branch
    before it was merged or closed (and after an earlier pull request from that branch
    was closed), or listed for it by the GitHub API."""
    Earlier = PullRequest.alias("earlier")
    earlier_closed = Earlier.select(pw.fn.MAX(Earlier.closed_at)).where(
        (Earlier.repository == PullRequest.repository)
        & (Earlier.head_ref == PullRequest.head_ref)
        & (Earlier.id != PullRequest.id)
        & (Earlier.created_at < PullRequest.created_at)
    )
    ended = pw.fn.COALESCE(PullRequest.merged_at, PullRequest.closed_at)
    by_branch = Commit.select(pw.fn.MIN(Commit.authored_at)).where(
        (Commit.repository == PullRequest.repository)
        & (Commit.branch == PullRequest.head_ref)
        & (ended.is_null() | (Commit.pushed_at < ended))
        & (Commit.pushed_at > pw.fn.COALESCE(earlier_closed, BEGINNING))
    )
    # Two lookups, each along an index ((repository, branch, pushed_at); the listed shas by
    # (repository, sha)): one query with `branch = ... OR sha IN (...)` reads every commit of
    # the repository for each pull request.
    Listed = Commit.alias("listed_commit")
    listed = (
        Listed.select(pw.fn.MIN(Listed.authored_at))
        .join(
            PullRequestCommit,
            on=(PullRequestCommit.sha == Listed.sha)
            & (PullRequestCommit.pull_request == PullRequest.id),
        )
        .where(Listed.repository == PullRequest.repository)
    )
    return least(by_branch, listed)


def _deployed_at():
    """Finish of the first successful production deployment created at or after the
    merge."""
    return (
        ProductionDeployment.select(ProductionDeployment.finished_at)
        .where(
            (ProductionDeployment.repository == PullRequest.repository)
            & ProductionDeployment.succeeded
            & (ProductionDeployment.created_at >= PullRequest.merged_at)
            # Implied (a deployment finishes after it is created), and it lets the
            # (repository, finished_at) index start at the merge instead of at the
            # repository's first one.
            & (ProductionDeployment.finished_at >= PullRequest.merged_at)
        )
        # The first row along that index, not MIN(): PostgreSQL estimates one matching row
        # per merge, keeps the aggregate, and then reads every later deployment of the
        # repository for each pull request (about 200 each in the benchmark's history).
        .order_by(ProductionDeployment.finished_at)
        .limit(1)
    )


def stage_values(row) -> dict:
    """Each stage in seconds from a pull request's times; `row` is the table (PullRequest)
    or the columns of a subquery that carries the same names."""
    return {
        "coding_s": seconds_between(row.ready_at, row.first_commit_at),
        "pickup_s": seconds_between(row.first_review_at, row.ready_at),
        "review_s": seconds_between(row.merged_at, row.first_review_at),
        "deploy_s": seconds_between(row.deployed_at, row.merged_at),
        "cycle_s": seconds_between(
            pw.fn.COALESCE(row.deployed_at, row.merged_at),
            pw.fn.COALESCE(row.first_commit_at, row.ready_at, row.created_at),
        ),
    }


def _as_stored(field, expr):
    """`expr` as the column stores it: the stages are `real` on PostgreSQL (FloatField), so a
    double-precision value compared unrounded would differ on every run and re-date every
    pull request's days."""
    if is_postgres() and type(field) is pw.FloatField:
        return pw.Cast(expr, "real")
    return expr


def _update_changed_at_once(
    repo: Repository, values: dict, derived: Derived, only_ids, source=None
) -> None:
    """PostgreSQL: one UPDATE ... FROM (the new values, each computed once) ... RETURNING,
    instead of a SELECT of the changed rows and an UPDATE that computes them again.
    `source`: a common table expression of the repository's pull requests (with `id` and
    `old_deployed_at`) that `values` are computed from, instead of the table itself."""
    row = PullRequest if source is None else source.c
    columns = [
        row.id,
        row.old_deployed_at if source is not None else row.deployed_at.alias("old_deployed_at"),
        *[expr.alias(f"new_{name}") for name, expr in values.items()],
    ]
    if source is None:
        rows = PullRequest.select(*columns).where(PullRequest.repository == repo.id)
    else:
        rows = pw.Select(from_list=[source], columns=columns)
    if only_ids is not None:
        rows = rows.where(row.id.in_(only_ids))
    rows = rows.alias("computed_values")
    changed = functools.reduce(
        operator.or_,
        [
            distinct_from(
                getattr(PullRequest, name),
                _as_stored(getattr(PullRequest, name), rows.c[f"new_{name}"]),
            )
            for name in values
        ],
    )
    query = PullRequest.update(
        {getattr(PullRequest, name): rows.c[f"new_{name}"] for name in values}
    )
    if source is not None:
        query = query.with_cte(source)
    query = (
        query.from_(rows)
        # The repository again on the updated side: joined on id alone, the planner reads
        # every pull request of every repository to find this one's.
        .where((PullRequest.id == rows.c.id) & (PullRequest.repository == repo.id) & changed)
        .returning(PullRequest.merged_at, rows.c.old_deployed_at, PullRequest.deployed_at)
    )
    for merged_at, old_deployed_at, deployed_at in query.tuples():
        # The old and the new deployment days count (lead time is by deployment day).
        derived.add(merged_at, old_deployed_at, deployed_at)


def _update_times_and_stages_at_once(repo: Repository, derived: Derived, only_ids=None) -> None:
    """PostgreSQL: first_commit_at, deployed_at and the stages computed from them, in one
    UPDATE, so a pull request whose times change is written once, not twice."""
    scope = PullRequest.repository == repo.id
    if only_ids is not None:
        scope &= PullRequest.id.in_(only_ids)
    times = (
        PullRequest.select(
            PullRequest.id,
            PullRequest.created_at,
            PullRequest.ready_at,
            PullRequest.first_review_at,
            PullRequest.merged_at,
            PullRequest.deployed_at.alias("old_deployed_at"),
            _first_commit_at().alias("first_commit_at"),
            _deployed_at().alias("deployed_at"),
        )
        .where(scope)
        # Materialized once: inlined, each pull request's commit and deployment lookups
        # would run once per stage that uses them; as a plain subquery behind a fence, a
        # planner without statistics may run all of it again for every row it updates.
        .cte("times", materialized=True)
    )
    values = {
        "first_commit_at": times.c.first_commit_at,
        "deployed_at": times.c.deployed_at,
        **stage_values(times.c),
    }
    with without_bitmap_scans():  # the first deployment after each merge, along its index
        _update_changed_at_once(repo, values, derived, None, source=times)


def _update_changed(repo: Repository, values: dict, derived: Derived, only_ids=None) -> None:
    """Set `values` (column -> SQL expression) on the repository's pull requests whose
    stored value differs, and note the days those pull requests count on."""
    if is_postgres():
        _update_changed_at_once(repo, values, derived, only_ids)
        return
    changed = functools.reduce(
        operator.or_,
        [
            distinct_from(getattr(PullRequest, name), _as_stored(getattr(PullRequest, name), expr))
            for name, expr in values.items()
        ],
    )
    where = (PullRequest.repository == repo.id) & changed
    if only_ids is not None:
        where &= PullRequest.id.in_(only_ids)
    rows = list(
        PullRequest.select(PullRequest.id, PullRequest.merged_at, PullRequest.deployed_at)
        .where(where)
        .tuples()
    )
    if not rows:
        return
    ids = [row[0] for row in rows]
    for _, merged_at, deployed_at in rows:
        derived.add(merged_at, deployed_at)
    for chunk in pw.chunked(ids, 500):
        (
            PullRequest.update({getattr(PullRequest, k): v for k, v in values.items()})
            .where(PullRequest.id.in_(chunk))
            .execute()
        )
    # The new deployment days count too (lead time is by deployment day).
    for (deployed_at,) in (
        PullRequest.select(PullRequest.deployed_at)
        .where(PullRequest.id.in_(ids) & PullRequest.deployed_at.is_null(False))
        .tuples()
    ):
        derived.add(deployed_at)


# Incidents ----------------------------------------------------------------------------


def _revert_pairs(repo: Repository) -> list[tuple]:
    """(revert PR id, title, reverted PR id) for the repository's merged reverts: head
    branch `revert-<n>-...` names the reverted PR's number; else a title `Revert "<title>"`
    of a merged pull request of the repository (the latest merged before the revert)."""
    Reverted = PullRequest.alias("reverted")
    by_number = (
        Reverted.select(Reverted.id)
        .where(
            (Reverted.repository == PullRequest.repository)
            & (Reverted.number == PullRequest.reverts_number)
            & Reverted.merged_at.is_null(False)
            & (Reverted.id != PullRequest.id)
        )
        .limit(1)
    )
    by_title = (
        Reverted.select(Reverted.id)
        .where(
            (Reverted.repository == PullRequest.repository)
            & (PullRequest.title == pw.Value('Revert "').concat(Reverted.title).concat('"'))
            & Reverted.merged_at.is_null(False)
            & (Reverted.merged_at <= PullRequest.merged_at)
            & (Reverted.id != PullRequest.id)
        )
        .order_by(Reverted.merged_at.desc(), Reverted.id.desc())
        .limit(1)
    )
    reverted = pw.fn.COALESCE(by_number, by_title)
    return [
        row
        for row in (
            PullRequest.select(PullRequest.id, PullRequest.title, reverted)
            .where(
                (PullRequest.repository == repo.id)
                & PullRequest.merged_at.is_null(False)
                & (
                    PullRequest.reverts_number.is_null(False)
                    | PullRequest.title.startswith('Revert "')
                )
            )
            .tuples()
        )
        if row[2] is not None
    ]


def _desired_incidents(repo: Repository, org: Organization, reverts: list[tuple]) -> dict:
    """(kind, source id) -> (title, opened_at, resolved_at)."""
    desired = {}
    labelled = Issue.select(Issue.id, Issue.title, Issue.created_at, Issue.closed_at).where(
        (Issue.repository == repo.id) & json_array_contains(Issue.labels, incident_label(org))
    )
    for issue_id, title, opened, resolved in labelled.tuples():
        desired[(IncidentKind.LABELED_ISSUE, issue_id)] = (title, opened, resolved)

    Next = ProductionDeployment.alias("next_success")
    restored = Next.select(pw.fn.MIN(Next.finished_at)).where(
        (Next.repository == ProductionDeployment.repository)
        & Next.succeeded
        & (Next.finished_at > ProductionDeployment.finished_at)
    )
    failed = ProductionDeployment.select(
        ProductionDeployment.id, ProductionDeployment.finished_at, restored
    ).where((ProductionDeployment.repository == repo.id) & ~ProductionDeployment.succeeded)
    for deployment_id, opened, resolved in failed.tuples():
        desired[(IncidentKind.FAILED_DEPLOYMENT, deployment_id)] = (
            "Production deployment failed",
            opened,
            resolved,
        )

    if reverts:
        shipped = pw.fn.COALESCE(PullRequest.deployed_at, PullRequest.merged_at)
        moments = dict(
            PullRequest.select(PullRequest.id, shipped)
            .where(
                PullRequest.id.in_({pr_id for pr_id, _, _ in reverts} | {r for *_, r in reverts})
            )
            .tuples()
        )
        for revert_id, title, reverted_id in reverts:
            desired[(IncidentKind.REVERT, revert_id)] = (
                title,
                moments[reverted_id],
                moments[revert_id],
            )
    return desired


def sync_incidents(repo: Repository, org: Organization, reverts, derived: Derived) -> None:
    stored = {
        (row.kind, row.source_id): row
        for row in Incident.select().where(Incident.repository == repo.id)
    }
    desired = _desired_incidents(repo, org, reverts)
    as_utc = Incident.opened_at.python_value
    for key, row in stored.items():
        if key not in desired:
            derived.add(row.opened_at, row.resolved_at)
            Incident.delete_by_id(row.id)
    new_rows = []
    for (kind, source_id), (title, opened, resolved) in desired.items():
        opened, resolved = as_utc(opened), as_utc(resolved)
        row = stored.get((kind, source_id))
        if row is None:
            new_rows.append(
                {
                    "repository": repo.id,
                    "organization": repo.organization_id,
                    "kind": kind,
                    "source_id": source_id,
                    "title": title or "",
                    "opened_at": opened,
                    "resolved_at": resolved,
                }
            )
            derived.add(opened, resolved)
        elif (row.title, row.opened_at, row.resolved_at) != (title or "", opened, resolved):
            derived.add(row.opened_at, row.resolved_at, opened, resolved)
            Incident.update(title=title or "", opened_at=opened, resolved_at=resolved).where(
                Incident.id == row.id
            ).execute()
    if new_rows:
        # In bulk (a first recompute of a long history opens thousands), then read back:
        # the new ones are announced.
        for chunk in pw.chunked(new_rows, 500):
            Incident.insert_many(chunk).on_conflict_ignore().execute()
        keys = {(row["kind"], row["source_id"]) for row in new_rows}
        known = {row.id for row in stored.values()}
        derived.new_incidents += [
            incident
            for incident in Incident.select().where(Incident.repository == repo.id)
            if (incident.kind, incident.source_id) in keys and incident.id not in known
        ]


# Deployment verdicts ------------------------------------------------------------------


def update_failed_verdicts(repo: Repository, reverts: list[tuple]) -> None:
    """A production deployment is failed when its outcome is; a successful one also when a
    labelled incident opened after it finished and before the next success finished, or
    when it first shipped a pull request that was later reverted."""
    PD = ProductionDeployment
    Next = PD.alias("next_success")
    next_finish = Next.select(pw.fn.MIN(Next.finished_at)).where(
        (Next.repository == PD.repository) & Next.succeeded & (Next.finished_at > PD.finished_at)
    )
    incident_after = pw.fn.EXISTS(
        Incident.select(Incident.id).where(
            (Incident.repository == PD.repository)
            & (Incident.kind == IncidentKind.LABELED_ISSUE)
            & (Incident.opened_at > PD.finished_at)
            & (Incident.opened_at < pw.fn.COALESCE(next_finish, END_OF_TIME))
        )
    )
    verdict = ~PD.succeeded | incident_after
    reverted_ids = sorted({reverted for *_, reverted in reverts})
    if reverted_ids:
        Reverted = PullRequest.alias("reverted")
        verdict |= pw.fn.EXISTS(
            Reverted.select(Reverted.id).where(
                Reverted.id.in_(reverted_ids)
                & (Reverted.repository == PD.repository)
                & (Reverted.deployed_at == PD.finished_at)
                & (PD.created_at >= Reverted.merged_at)
            )
        )
    verdict = pw.Case(None, [(verdict, True)], False)
    (
        PD.update(failed=verdict)
        .where((PD.repository == repo.id) & distinct_from(PD.failed, verdict))
        .execute()
    )


# All of it ----------------------------------------------------------------------------


def _same_branch(repo: Repository, pull_request_ids) -> list[int]:
    """The pull requests and those from the same head branches: a pull request's first
    commit depends on when an earlier one from its branch was closed."""
    heads = PullRequest.select(PullRequest.head_ref).where(
        (PullRequest.repository == repo.id) & PullRequest.id.in_(list(pull_request_ids))
    )
    return [
        pr_id
        for (pr_id,) in PullRequest.select(PullRequest.id)
        .where((PullRequest.repository == repo.id) & PullRequest.head_ref.in_(heads))
        .tuples()
    ]


def refresh_repository(repo: Repository, pull_request_ids=(), *, local=False) -> Derived:
    """Bring the repository's derived data up to date; returns the days it touched
    (plus those of `pull_request_ids`, whose activity changed).

    `local`: the change was to these pull requests' own rows, reviews and comments, or to
    issues (no commit pushed, no deployment): unless it changed the production deployments
    (through a merge, say), no other pull request's times can move, so only these and
    those from their branches are re-derived, not the whole repository."""
    org = Organization.get_by_id(repo.organization_id)
    derived = Derived()
    before = _deployment_signature(repo)
    deployments_changed = sync_production_deployments(repo, org)
    # None: every pull request of the repository; a list: just these (maybe none).
    only_ids = None
    if local and not deployments_changed:
        only_ids = _same_branch(repo, pull_request_ids) if pull_request_ids else []
    rederive = only_ids != []
    # The stages depend on these two times and the pull request's own, not on what follows
    # (incidents, verdicts): PostgreSQL sets all of them at once.
    if rederive and is_postgres():
        _update_times_and_stages_at_once(repo, derived, only_ids)
    elif rederive:
        times = {"first_commit_at": _first_commit_at(), "deployed_at": _deployed_at()}
        _update_changed(repo, times, derived, only_ids)
    reverts = _revert_pairs(repo)
    sync_incidents(repo, org, reverts, derived)
    update_failed_verdicts(repo, reverts)
    after = _deployment_signature(repo)
    derived.days |= {
        day for day in before.keys() | after.keys() if before.get(day) != after.get(day)
    }
    if rederive and not is_postgres():
        _update_changed(repo, stage_values(PullRequest), derived, only_ids)
    if pull_request_ids:
        for created, merged, closed, deployed in (
            PullRequest.select(
                PullRequest.created_at,
                PullRequest.merged_at,
                PullRequest.closed_at,
                PullRequest.deployed_at,
            )
            .where(PullRequest.id.in_(list(pull_request_ids)))
            .tuples()
        ):
            derived.add(created, merged, closed, deployed)
    return derived
