"""Every unique constraint the models declare rejects a duplicate (and only a duplicate)."""

import datetime as dt

import peewee as pw
import pytest

from shared.database import db
from shared.models import (
    MODELS,
    Deployment,
    Event,
    EventDelivery,
    InboxMessage,
    Incident,
    Issue,
    IssueClosure,
    Job,
    LoginLink,
    ProductionDeployment,
    PullRequest,
    PullRequestCommit,
    Repository,
    Review,
    Session,
    User,
    UserOrganization,
)
from shared.models.base import EnumField

UNIQUE_INDEXES = sorted(
    (
        (model, tuple(f.name for f in idx._expressions))
        for model in MODELS
        for idx in model._meta.fields_to_index()
        if idx._unique
    ),
    key=lambda pair: (pair[0]._meta.table_name, pair[1]),
)


def _other_value(field: pw.Field, value):
    """A value for `field` that differs from `value` and is new to the table."""
    if isinstance(field, pw.ForeignKeyField):
        raise LookupError
    if isinstance(field, EnumField):
        return next(member for member in field.enum if member != value)
    if isinstance(field, (pw.IntegerField, pw.BigIntegerField)):
        return value + 1_000_003
    if isinstance(field, pw.DateField):
        return value + dt.timedelta(days=4000)
    if isinstance(field, pw.CharField):
        return ("o-" + str(value))[: field.max_length]
    raise LookupError


def _clone(row, changes: dict) -> dict:
    data = {
        f.name: getattr(row, f.object_id_name if isinstance(f, pw.ForeignKeyField) else f.name)
        for f in row._meta.sorted_fields
        if f.name != "id"
    }
    data.update(changes)
    return data


def _try_insert(model, data) -> bool:
    try:
        with db.atomic():
            model.insert(**data).execute()
        return True
    except pw.IntegrityError:
        return False


@pytest.fixture
def one_row_per_table(seeded):
    repo = Repository.select().first()
    Event.create(
        delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958",
        event_type="push",
        repository=repo,
        organization=repo.organization_id,
        payload={"ref": "refs/heads/main"},
    )
    EventDelivery.create(
        delivery_id="72d3162e-cc78-11e3-81ab-4c9367dc0958", event_id=1, repository_id=repo.id
    )
    Job.create(queue="outbox", dedupe_key="m-1", payload={"topic": "t"})
    InboxMessage.create(consumer="metrics", message_id="m-1", topic="t")
    pr = PullRequest.select().first()
    Review.create(
        pull_request=pr,
        organization=pr.organization_id,
        kind="REVIEW",
        github_id=1,
        submitted_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    Deployment.create(
        repository=repo,
        organization=repo.organization_id,
        github_id=1,
        environment="production",
        sha="a" * 40,
        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    Incident.create(
        repository=repo,
        organization=repo.organization_id,
        kind="REVERT",
        source_id=1,
        opened_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    Session.create(
        user=User.select().first(),
        token_digest="0" * 64,
        expires_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
    )
    LoginLink.create(
        user=User.select().first(),
        token_digest="1" * 64,
        expires_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
    )
    PullRequestCommit.create(pull_request=pr, sha="c" * 40)
    issue = Issue.create(
        repository=repo,
        organization=repo.organization_id,
        number=99_001,
        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    IssueClosure.create(
        issue=issue,
        organization=repo.organization_id,
        repository=repo,
        closed_at=dt.datetime(2026, 1, 2, tzinfo=dt.UTC),
    )
    ProductionDeployment.create(
        organization=repo.organization_id,
        repository=repo,
        source="deployment",
        source_id=999_999_001,  # the seed's own production deployments use real ids
        created_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        finished_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        succeeded=True,
    )
    return seeded


@pytest.mark.parametrize(
    "model,columns",
    UNIQUE_INDEXES,
    ids=[f"{m._meta.table_name}({','.join(c)})" for m, c in UNIQUE_INDEXES],
)
def test_unique_constraint_rejects_duplicate(one_row_per_table, model, columns):
    existing = model.select().order_by(model.id).first()
    assert existing is not None, f"no {model.__name__} row to duplicate"
    fields = model._meta.fields
    # Move every *other* unique column out of the way, so only this constraint can object.
    others = {
        name: _other_value(fields[name], getattr(existing, name))
        for m, cols in UNIQUE_INDEXES
        if m is model and cols != columns
        for name in cols
        if name not in columns and not isinstance(fields[name], pw.ForeignKeyField)
    }
    assert not _try_insert(model, _clone(existing, others)), f"{columns} accepted a duplicate"

    # Control: the same row with this constraint's key changed is accepted.
    try:
        changed = {
            name: _other_value(fields[name], getattr(existing, name))
            for name in columns
            if not isinstance(fields[name], pw.ForeignKeyField)
        }
    except LookupError:
        changed = {}
    if changed:
        assert _try_insert(model, _clone(existing, {**others, **changed}))


def test_membership_pair_is_unique_but_a_new_pair_is_fine(seeded):
    from shared.models import Organization, User

    charlie = User.get(User.login == "charlie")
    personal = Organization.get(Organization.slug == "alice-personal")
    assert _try_insert(UserOrganization, {"user": charlie.id, "organization": personal.id})
    assert not _try_insert(UserOrganization, {"user": charlie.id, "organization": personal.id})


def test_every_unique_constraint_is_covered():
    # The parametrized test above is generated from the models; make sure it saw them all.
    names = {f"{m._meta.table_name}({','.join(c)})" for m, c in UNIQUE_INDEXES}
    assert len(names) == len(UNIQUE_INDEXES) >= 24
    assert "event_deliveries(source,hook_id,delivery_id,repository_id)" in names
    assert "repositories(organization,github_id)" in names
    assert "notification_logs(rule,event_key)" in names
    assert "ai_reviews(pull_request,head_sha,provider)" in names
