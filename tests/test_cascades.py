"""ON DELETE rules: an organization's data goes with it; people and history survive."""

from shared.models import (
    MODELS,
    AIReview,
    ApiKey,
    AuditLog,
    Commit,
    DeveloperMetric,
    Event,
    Issue,
    NotificationLog,
    NotificationRule,
    Organization,
    PullRequest,
    Repository,
    RepositoryStats,
    User,
    UserOrganization,
)

# Every table that carries an organization (new ones are covered automatically).
ORG_SCOPED = [m for m in MODELS if "organization" in m._meta.fields]


def counts(org):
    return {m.__name__: m.select().where(m.organization == org).count() for m in ORG_SCOPED}


def test_deleting_an_organization_removes_all_its_data(seeded):
    techcorp = Organization.get(Organization.slug == "techcorp")
    startup = Organization.get(Organization.slug == "startup-inc")
    before_startup = counts(startup)
    assert all(counts(techcorp)[m] > 0 for m in ("Repository", "Commit", "ApiKey", "AuditLog"))

    Organization.delete().where(Organization.id == techcorp.id).execute()

    assert set(counts(techcorp).values()) == {0}
    assert counts(startup) == before_startup  # nothing of another org touched
    assert User.select().count() == 3  # people are not org data


def test_deleting_a_repository_removes_its_activity(seeded):
    repo = Repository.get(Repository.full_name == "techcorp/api-server")
    Event.create(
        delivery_id="d-1", event_type="push", repository=repo, organization=repo.organization_id
    )
    pr_ids = [p.id for p in repo.pull_requests]
    assert AIReview.select().where(AIReview.pull_request.in_(pr_ids)).count() > 0
    others = Commit.select().where(Commit.repository != repo).count()

    repo.delete_instance()

    for model in (Commit, PullRequest, Issue, RepositoryStats, Event):
        assert model.select().where(model.repository == repo.id).count() == 0, model
    assert AIReview.select().where(AIReview.pull_request.in_(pr_ids)).count() == 0
    assert Commit.select().count() == others


def test_deleting_a_user_keeps_their_history_but_not_their_memberships(seeded):
    bob = User.get(User.login == "bob")
    commits = Commit.select().where(Commit.author == bob).count()
    assert commits > 0

    bob.delete_instance()

    # Activity stays, attributed by login; the link to the account is cleared.
    orphaned = Commit.select().where(Commit.author_login == "bob")
    assert orphaned.count() == commits and all(c.author_id is None for c in orphaned)
    assert PullRequest.select().where(PullRequest.author_login == "bob").count() > 0
    assert UserOrganization.select().where(UserOrganization.user == bob.id).count() == 0
    assert DeveloperMetric.select().where(DeveloperMetric.user == bob.id).count() == 0
    assert ApiKey.select().where(ApiKey.created_by.is_null()).count() == 1
    assert AuditLog.select().where(AuditLog.actor_user.is_null()).count() > 0


def test_deleting_a_rule_removes_its_log_and_a_key_keeps_its_audit_trail(seeded):
    rule = NotificationRule.get(NotificationRule.name == "High-risk pull requests")
    assert rule.logs.count() == 1
    rule.delete_instance()
    assert NotificationLog.select().where(NotificationLog.rule == rule.id).count() == 0

    key = ApiKey.select().first()
    entry = AuditLog.create(
        organization=key.organization_id, actor_api_key=key, action="metrics.read"
    )
    key.delete_instance()
    assert AuditLog.get_by_id(entry.id).actor_api_key_id is None
