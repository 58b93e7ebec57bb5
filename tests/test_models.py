"""Field behaviour shared by all models: UTC timestamps, enums, JSON, CHECKs."""

import datetime as dt

import peewee as pw
import pytest

from shared.database import backend_name
from shared.models import AIReview, Organization, PullRequest, Repository, User
from tests.conftest import BACKEND


def test_timestamps_are_stored_in_utc_and_returned_aware(tx):
    cest = dt.timezone(dt.timedelta(hours=2))
    user = User.create(
        github_id=1, login="tz", last_login_at=dt.datetime(2026, 6, 1, 12, tzinfo=cest)
    )
    again = User.get_by_id(user.id)
    assert again.last_login_at == dt.datetime(2026, 6, 1, 10, tzinfo=dt.UTC)
    assert again.last_login_at.tzinfo is dt.UTC
    raw = tx.execute_sql("SELECT last_login_at FROM users WHERE id = " + tx.param, (user.id,))
    assert str(raw.fetchone()[0]).startswith("2026-06-01 10:00:00")
    # Filtering with an aware value in another zone finds the same instant.
    hit = User.select().where(User.last_login_at == dt.datetime(2026, 6, 1, 12, tzinfo=cest))
    assert hit.count() == 1


def test_enum_fields_refuse_unknown_values_naming_the_field(tx):
    with pytest.raises(ValueError, match=r"Organization.plan: 'GOLD' is not one of FREE, PRO"):
        Organization.create(name="X", slug="x", plan="GOLD")
    org = Organization.create(name="Y", slug="y", plan="PRO")
    assert Organization.get_by_id(org.id).plan == "PRO"


def test_json_is_jsonb_on_postgres_and_round_trips(tx):
    org = Organization.create(
        name="J", slug="j", settings={"timezone": "Europe/Paris", "n": [1, 2]}
    )
    assert Organization.get_by_id(org.id).settings == {"timezone": "Europe/Paris", "n": [1, 2]}
    assert Organization.create(name="K", slug="k").settings == {}
    if BACKEND == "postgresql":
        data_type = tx.execute_sql(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'organizations' AND column_name = 'settings'"
        ).fetchone()[0]
        assert data_type == "jsonb"
    assert backend_name(tx) == BACKEND


def test_risk_score_is_checked_by_the_database(seeded):
    pr = PullRequest.select().first()
    for score, accepted in ((100, True), (101, False), (-1, False)):
        try:
            with seeded.atomic():
                AIReview.insert(
                    pull_request=pr,
                    organization=pr.organization_id,
                    head_sha=f"s{score}",
                    provider="p",
                    risk_score=score,
                    risk_level="LOW",
                ).execute()
            ok = True
        except pw.IntegrityError:
            ok = False
        assert ok is accepted, score


def test_every_org_scoped_row_names_its_organization():
    from shared.models import MODELS

    # People, their sessions, sign-in links and e-mails belong to no single org; events, jobs and
    # audit entries may exist before (or after) their organization does (and so may the
    # events' delivery dedupe); a pull request's commit list is part of that (org-scoped)
    # pull request.
    unscoped = {
        "users",
        "user_emails",
        "sessions",
        "login_links",
        "pull_request_commits",
        "organizations",
        "audit_logs",
        "events",
        "event_deliveries",
        "jobs",
        "inbox_messages",
    }
    for model in MODELS:
        if model._meta.table_name in unscoped:
            continue
        field = model._meta.fields.get("organization")
        assert field is not None and not field.null, model.__name__
    assert Repository.organization.rel_model is Organization
