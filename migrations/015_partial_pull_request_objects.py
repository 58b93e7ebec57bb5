"""Migration 015_partial_pull_request_objects (peewee-migrate; the operations it offers are
listed in peewee_migrate/template.py)."""

from contextlib import suppress

import peewee as pw
from peewee_migrate import Migrator


with suppress(ImportError):
    import playhouse.postgres_ext as pw_pext


# Rows stored before 015: labels and milestone were never kept, so the first payload that
# carries them sets them, however old. A pull request always has a commit, so a row with no
# commit count last took a partial object (a review, a review comment, the REST list) that
# zeroed its sizes: the next full `pull_request` payload (a replay of the stored events, or
# GitHub's next one) sets them again. Every other key stays as fresh as the row's updated_at.
NEVER_TAKEN = """
UPDATE pull_requests SET fields_updated_at = '{"labels": null, "milestone": null}'
WHERE commits_count <> 0
"""
SIZES_NEVER_TAKEN = """
UPDATE pull_requests SET fields_updated_at = '{"additions": null, "deletions": null,
 "changed_files": null, "commits": null, "labels": null, "milestone": null}'
WHERE commits_count = 0
"""

# Issue-shaped events about pull requests (milestoned, demilestoned... on a pull request)
# were stored as issues. GitHub numbers a repository's issues and pull requests in one
# sequence, so an issue with a stored pull request's number is that pull request: it goes,
# with its closings and the incident its labels made (re-derived by the metrics anyway).
ISSUES_THAT_ARE_PULL_REQUESTS = """
SELECT i.id FROM issues i JOIN pull_requests p
  ON p.repository_id = i.repository_id AND p.number = i.number
"""
REMOVE_ISSUES_THAT_ARE_PULL_REQUESTS = (
    f"DELETE FROM issue_closures WHERE issue_id IN ({ISSUES_THAT_ARE_PULL_REQUESTS})",
    f"DELETE FROM incidents WHERE kind = 'LABELED_ISSUE' AND source_id IN "
    f"({ISSUES_THAT_ARE_PULL_REQUESTS})",
    f"DELETE FROM issues WHERE id IN ({ISSUES_THAT_ARE_PULL_REQUESTS})",
)


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """A pull request's labels and milestone, and the GitHub time each field of it was taken
    from where older than its updated_at (partial objects update only what they carry);
    issues that are pull requests removed. Nullable columns only: no table rebuild on
    SQLite (which would cascade-delete the reviews). Then `devmetrics metrics recompute`
    (the removed issues leave the counts) and `devmetrics events replay` (sizes again)."""

    migrator.add_fields(
        'pull_requests',

        labels=pw.JSONField(null=True),
        milestone=pw.TextField(null=True),
        fields_updated_at=pw.JSONField(null=True))

    migrator.sql(NEVER_TAKEN)

    migrator.sql(SIZES_NEVER_TAKEN)

    for statement in REMOVE_ISSUES_THAT_ARE_PULL_REQUESTS:
        migrator.sql(statement)


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop the three columns (SQLite 3.35+ drops a column in place). The issues that were
    pull requests stay removed: they were never issues."""

    migrator.remove_fields('pull_requests', 'labels', 'milestone', 'fields_updated_at')
