"""`audit.changed` (shared/audit.py): change a row, save what changed, record one audit
entry; nothing saved or recorded when nothing changed unless the action is always audited."""

from __future__ import annotations

import datetime as dt

from shared import audit
from shared.models import AuditLog, Organization, Repository, User
from shared.models.enums import Sensitivity


def _repository(tx) -> Repository:
    org = Organization.create(name="Audited", slug="audited-changes")
    return Repository.create(organization=org, full_name="audited/changes", language="Go")


def _entries(repo):
    return list(
        AuditLog.select()
        .where(AuditLog.target_type == "repository", AuditLog.target_id == str(repo.id))
        .order_by(AuditLog.id)
    )


def test_changes_are_applied_saved_and_audited_by_name(tx):
    repo = _repository(tx)
    stamp = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    Repository.update(updated_at=stamp).where(Repository.id == repo.id).execute()
    change = audit.changed(
        repo,
        {"language": "Rust", "private": False, "sensitivity": Sensitivity.RESTRICTED},
        "repository.changed",
        organization=repo.organization_id,
        target_type="repository",
    )
    assert change.fields == ["language", "sensitivity"]  # `private` was already False
    assert change.before["language"] == "Go" and change.after["language"] == "Rust"
    assert (repo.language, repo.sensitivity) == ("Rust", Sensitivity.RESTRICTED)
    stored = Repository.get_by_id(repo.id)
    assert (stored.language, stored.sensitivity) == ("Rust", Sensitivity.RESTRICTED)
    assert stored.updated_at > stamp  # kept current, as by save()
    [entry] = _entries(repo)
    assert entry.action == "repository.changed"
    assert entry.organization_id == repo.organization_id
    assert entry.metadata == {"changed": ["language", "sensitivity"]}


def test_only_the_changed_fields_are_written(tx):
    repo = _repository(tx)
    # Another writer changes a column this copy of the row holds stale.
    Repository.update(language="Python").where(Repository.id == repo.id).execute()
    audit.changed(repo, {"private": True}, "repository.changed", target_type="repository")
    stored = Repository.get_by_id(repo.id)
    assert (stored.private, stored.language) == (True, "Python")


def test_nothing_changed_nothing_saved_or_recorded_unless_always(tx):
    repo = _repository(tx)
    stamp = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    Repository.update(updated_at=stamp).where(Repository.id == repo.id).execute()
    change = audit.changed(repo, {"language": "Go"}, "repository.changed", target_type="repository")
    assert change.fields == [] and _entries(repo) == []
    assert Repository.get_by_id(repo.id).updated_at == stamp

    audit.changed(
        repo,
        {"language": "Go"},
        "repository.changed",
        target_type="repository",
        metadata=lambda c: {"from": c.before["language"], "to": c.after["language"]},
        always=True,
    )
    [entry] = _entries(repo)
    assert entry.metadata == {"from": "Go", "to": "Go"}
    assert Repository.get_by_id(repo.id).updated_at > stamp  # touched, as a save would


def test_metadata_target_and_actor_as_given(tx):
    repo = _repository(tx)
    user = User.create(login="auditor-of-changes")
    audit.changed(
        repo,
        {"connected_by": user},  # a foreign key compares by id
        "repository.changed",
        target_type="user",
        target_id=user.id,
        metadata={},
        actor_user=user.id,
    )
    assert Repository.get_by_id(repo.id).connected_by_id == user.id
    entry = AuditLog.get(AuditLog.action == "repository.changed")
    assert (entry.target_type, entry.target_id, entry.actor_user_id) == (
        "user",
        str(user.id),
        user.id,
    )
    assert entry.metadata == {}
    again = audit.changed(repo, {"connected_by": user.id}, "x", target_type="repository")
    assert again.fields == []
