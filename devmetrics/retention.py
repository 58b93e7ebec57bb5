"""Data retention: delete raw events, activity and audit entries older than their policy.

Policies (days; env default, an organization's settings override within RETENTION_BOUNDS):
raw events `RETENTION_EVENTS_DAYS` / `retention_events_days` (90); commits, pull requests,
reviews, issues and deployments `RETENTION_ACTIVITY_DAYS` (365, never less); audit logs
`RETENTION_AUDIT_DAYS` / `retention_audit_days` (365). Metric tables are kept forever, so a
pull request with an AI review is kept too (its review would go with it).

Rows go in bounded batches, each its own short transaction that re-checks the condition,
so services keep running. Events not yet processed (pending, processing, failed) are never
deleted. On PostgreSQL, whole expired monthly partitions are dropped when shared.partitions
provides them. A real run records one audit entry `retention.run`.

On PostgreSQL the application role may not delete audit entries nor drop partitions: both go
through the SECURITY DEFINER functions of migration 012, which run as the tables' owner and
never remove an audit entry younger than 365 days (the least audit policy).
"""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import time
from dataclasses import dataclass, field

import peewee as pw

from shared import audit
from shared.config import RETENTION_BOUNDS, Settings
from shared.database import db
from shared.models import (
    AIReview,
    AuditLog,
    Commit,
    Deployment,
    Event,
    EventDelivery,
    EventStatus,
    Issue,
    IssueState,
    Organization,
    PullRequest,
    PullRequestState,
    Review,
    utcnow,
)
from shared.tenant_settings import settings_of

log = logging.getLogger(__name__)

RETENTION_QUEUE = "retention"
# Statuses after which an event is done with; any other status is still to be processed.
FINISHED_EVENT_STATUSES = (EventStatus.PROCESSED, EventStatus.DEAD, EventStatus.SKIPPED)
NO_ORGANIZATION = "-"


def _days(organization: Organization | None, setting: str | None, kind: str, default: int):
    """The organization's setting when it is a whole number, clamped to the bounds."""
    value = settings_of(organization).get(setting) if setting else None
    if not isinstance(value, int) or isinstance(value, bool):
        return default
    low, high = RETENTION_BOUNDS[kind]
    return min(max(value, low), high)


def _expired_events(cutoff):
    return (Event.received_at < cutoff) & Event.status.in_(FINISHED_EVENT_STATUSES)


def _expired_deliveries(cutoff):
    # The redelivery dedupe of events already deleted, once older than every events policy.
    event = Event.select(Event.id).where(Event.id == EventDelivery.event_id)
    return (EventDelivery.received_at < cutoff) & ~pw.fn.EXISTS(event)


def _expired_commits(cutoff):
    return Commit.authored_at < cutoff


def _expired_reviews(cutoff):
    return Review.submitted_at < cutoff


def _expired_pull_requests(cutoff):
    # Closed or merged before the cutoff, with no newer review (deleting the pull request
    # would cascade to it) and no AI review (a metric table, kept forever).
    newer_review = Review.select(Review.id).where(
        (Review.pull_request == PullRequest.id) & (Review.submitted_at >= cutoff)
    )
    ai_review = AIReview.select(AIReview.id).where(AIReview.pull_request == PullRequest.id)
    return (
        (PullRequest.state != PullRequestState.OPEN)
        & (pw.fn.COALESCE(PullRequest.closed_at, PullRequest.merged_at) < cutoff)
        & ~pw.fn.EXISTS(newer_review)
        & ~pw.fn.EXISTS(ai_review)
    )


def _expired_issues(cutoff):
    return (Issue.state == IssueState.CLOSED) & (Issue.closed_at < cutoff)


def _expired_deployments(cutoff):
    return Deployment.created_at < cutoff


def _expired_audit_logs(cutoff):
    return AuditLog.created_at < cutoff


# table -> (model, condition for a cutoff, policy kind, organization setting), in the order
# they run: reviews before their pull requests, so each row is counted where it is deleted.
POLICIES = {
    "events": (Event, _expired_events, "events", "retention_events_days"),
    "event_deliveries": (EventDelivery, _expired_deliveries, "events", None),
    "commits": (Commit, _expired_commits, "activity", None),
    "reviews": (Review, _expired_reviews, "activity", None),
    "pull_requests": (PullRequest, _expired_pull_requests, "activity", None),
    "issues": (Issue, _expired_issues, "activity", None),
    "deployments": (Deployment, _expired_deployments, "activity", None),
    "audit_logs": (AuditLog, _expired_audit_logs, "audit", "retention_audit_days"),
}
# Tables whose organization may be NULL (rows of no organization follow the env default).
NULLABLE_ORGANIZATION = ("events", "audit_logs")
# Tables of no organization, kept as long as the longest policy of their kind.
NO_ORGANIZATION_TABLES = ("event_deliveries",)
PARTITIONED = ("events", "audit_logs")


@dataclass
class RetentionReport:
    dry_run: bool
    # (table, organization slug or "-", rows, partition dropped or None)
    rows: list[tuple[str, str, int, str | None]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(count for _, _, count, _ in self.rows)

    def by_table(self) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = {}
        for table, org, count, _ in self.rows:
            result.setdefault(table, {})
            result[table][org] = result[table].get(org, 0) + count
        return result

    def lines(self) -> list[str]:
        verb = "would delete" if self.dry_run else "deleted"
        lines = [
            f"{table:<14} {org:<20} {count:>8} {verb}"
            + (f" (partition {partition} dropped)" if partition else "")
            for table, org, count, partition in self.rows
            if count
        ]
        return lines + [f"{self.total} row(s) {verb}" + (" (dry run)" if self.dry_run else "")]


def _cutoffs(settings: Settings, now: dt.datetime, organizations) -> dict:
    """(table, organization or None) -> the time before which rows are expired."""
    defaults = {
        "events": settings.retention_events_days,
        "activity": settings.retention_activity_days,
        "audit": settings.retention_audit_days,
    }
    cutoffs = {}
    for table, (_, _, kind, setting) in POLICIES.items():
        if table in NO_ORGANIZATION_TABLES:
            days = max(
                _days(org, "retention_events_days", kind, defaults[kind])
                for org in [*organizations, None]
            )
            cutoffs[table, None] = now - dt.timedelta(days=days)
            continue
        owners = [*organizations, None] if table in NULLABLE_ORGANIZATION else organizations
        for org in owners:
            days = _days(org, setting, kind, defaults[kind])
            cutoffs[table, org] = now - dt.timedelta(days=days)
    return cutoffs


def _partitions():
    try:
        return importlib.import_module("shared.partitions")
    except ImportError:
        return None


def _drop_partitions(report, cutoffs, organizations, dry_run: bool) -> dict[str, list[str]]:
    """Drop whole monthly partitions older than every organization's cutoff (PostgreSQL
    with shared.partitions only), reporting their rows per organization; returns the
    partitions dropped (or, in a dry run, that would be) per table."""
    dropped: dict[str, list[str]] = {}
    partitions = _partitions()
    if partitions is None or not isinstance(db.obj, pw.PostgresqlDatabase):
        return dropped
    slugs = {org.id: org.slug for org in organizations}
    for table in PARTITIONED:
        oldest = min(cutoff for (name, _), cutoff in cutoffs.items() if name == table)
        for name in partitions.expired_partitions(table, oldest.date()):
            with db.atomic():
                partition = pw.Table(name, ("organization_id", "status")).bind(db)
                if table == "events":
                    if not dry_run:
                        # No event may be replayed between the check and the drop.
                        db.execute_sql(f'LOCK TABLE "{name}" IN SHARE ROW EXCLUSIVE MODE')
                    # Every row of the partition must be finished: no unprocessed event goes.
                    finished = [str(status) for status in FINISHED_EVENT_STATUSES]
                    unfinished = (
                        partition.select(pw.fn.COUNT(pw.SQL("*")))
                        .where(~partition.status.in_(finished))
                        .scalar()
                    )
                    if unfinished:
                        continue
                if dry_run:
                    counts = (
                        partition.select(partition.organization_id, pw.fn.COUNT(pw.SQL("*")))
                        .group_by(partition.organization_id)
                        .tuples()
                    )
                else:
                    # Counted by the drop itself, under its lock.
                    counts = partitions.drop_partition(name).items()
                for org_id, count in counts:
                    report.rows.append((table, slugs.get(org_id, NO_ORGANIZATION), count, name))
                dropped.setdefault(table, []).append(name)
    return dropped


def _delete_in_batches(model, condition, batch_size: int) -> int:
    deleted = 0
    while True:
        with db.atomic():
            ids = [
                row_id
                for (row_id,) in model.select(model.id)
                .where(condition)
                .order_by(model.id)
                .limit(batch_size)
                .tuples()
            ]
            if not ids:
                return deleted
            # The condition again: a row may have changed since (an event replayed).
            deleted += model.delete().where(model.id.in_(ids) & condition).execute()


def _delete_audit_logs(org: Organization | None, cutoff: dt.datetime, batch_size: int) -> int:
    """Audit entries of one organization (or of none) older than `cutoff`, on PostgreSQL.

    The application role may not DELETE from audit_logs: `devmetrics_delete_expired_audit_logs`
    (migration 012) does, as the owner, and never an entry younger than 365 days."""
    cutoff = cutoff.astimezone(dt.UTC).replace(tzinfo=None) if cutoff.tzinfo else cutoff
    deleted = 0
    while True:
        with db.atomic():
            count = db.execute_sql(
                "SELECT devmetrics_delete_expired_audit_logs(%s, %s, %s)",
                (org.id if org else None, cutoff, batch_size),
            ).fetchone()[0]
        deleted += count
        if count < batch_size:
            return deleted


def run(
    *,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    settings: Settings | None = None,
) -> RetentionReport:
    """One retention pass; returns what it deleted (or would delete), per table and org."""
    settings = settings or Settings.from_env()
    now = now or utcnow()
    started = time.monotonic()
    organizations = list(Organization.select().order_by(Organization.slug))
    cutoffs = _cutoffs(settings, now, organizations)
    report = RetentionReport(dry_run=dry_run)
    dropped = _drop_partitions(report, cutoffs, organizations, dry_run)
    for table, (model, expired, _, _) in POLICIES.items():
        for (name, org), cutoff in cutoffs.items():
            if name != table:
                continue
            if table in NO_ORGANIZATION_TABLES:
                condition = expired(cutoff)
            elif org is None:
                condition = model.organization.is_null() & expired(cutoff)
            else:
                condition = (model.organization == org.id) & expired(cutoff)
            for partition_name in dropped.get(table, []) if dry_run else []:
                # A dry run still sees the rows of the partitions it would drop.
                partition = pw.Table(partition_name, ("id",))
                condition &= model.id.not_in(partition.select(partition.id))
            if dry_run:
                count = model.select().where(condition).count()
            elif table == "audit_logs" and isinstance(db.obj, pw.PostgresqlDatabase):
                count = _delete_audit_logs(org, cutoff, settings.retention_batch_size)
            else:
                count = _delete_in_batches(model, condition, settings.retention_batch_size)
            report.rows.append((table, org.slug if org else NO_ORGANIZATION, count, None))
    if not dry_run:
        with db.atomic():
            audit.record(
                "retention.run",
                metadata={
                    "deleted": {
                        table: {org: count for org, count in orgs.items() if count}
                        for table, orgs in report.by_table().items()
                        if any(orgs.values())
                    },
                    "total": report.total,
                    "partitions": sorted({p for *_, p in report.rows if p}),
                    "seconds": round(time.monotonic() - started, 3),
                },
            )
    log.info("retention pass", extra={"dry_run": dry_run, "rows": report.total})
    return report


def run_job(job) -> None:
    """A `retention` job: partitions ahead (when partitioned), then one retention pass."""
    partitions = _partitions()
    if partitions is not None and hasattr(partitions, "ensure_partitions"):
        partitions.ensure_partitions()
    run()


SCHEDULE_EVERY_SECONDS = 60.0
_last_schedule = 0.0


def scheduled_batch(worker_id: str, limit: int = 10) -> int:
    """The `retention` worker: queue the day's pass (one job per UTC day, whatever the
    number of workers), then run it if it is due; returns the jobs claimed."""
    from shared import jobs
    from shared.worker import run_batch

    global _last_schedule
    if time.monotonic() - _last_schedule >= SCHEDULE_EVERY_SECONDS:
        today = utcnow().date().isoformat()
        jobs.enqueue(RETENTION_QUEUE, {"date": today}, dedupe_key=f"daily:{today}", rearm=False)
        _last_schedule = time.monotonic()
    return run_batch(RETENTION_QUEUE, run_job, worker_id, limit=1)
