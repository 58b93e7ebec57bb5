"""AI review, heuristic provider: deterministic, explained scores from Kamei et al.'s change
features; file lists from the (fake) GitHub API when the org has a token; the inbox handler,
the stored review and its `ai_review.completed` message; `review_all` over the seed."""

import datetime as dt

import pytest

from services.metrics.ai_review import heuristic, logic
from shared import crypto
from shared.config import Settings
from shared.models import (
    AIReview,
    Commit,
    Job,
    Organization,
    PullRequest,
    Repository,
    User,
    UserOrganization,
)
from shared.outbox import MessageRejected
from tests.fake_github import env_for

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def pr_file(filename, additions, deletions, status="modified", patch=None):
    """One entry of GitHub's `GET /repos/{owner}/{repo}/pulls/{n}/files`."""
    sha = f"{abs(hash(filename)) % 16**40:040x}"
    base = "https://github.com/o/r"
    return {
        "sha": sha,
        "filename": filename,
        "status": status,
        "additions": additions,
        "deletions": deletions,
        "changes": additions + deletions,
        "blob_url": f"{base}/blob/{sha}/{filename}",
        "raw_url": f"{base}/raw/{sha}/{filename}",
        "contents_url": f"https://api.github.com/repos/o/r/contents/{filename}?ref={sha}",
        "patch": patch or f"@@ -1,{deletions} +1,{additions} @@\n+changed {filename}",
    }


TOKEN_FILES = [
    pr_file("app/auth/tokens.py", 40, 10),
    pr_file("app/api/export.py", 30, 0, status="added"),
    pr_file(".github/workflows/ci.yml", 5, 5),
    pr_file("migrations/008_add.sql", 10, 0, status="added"),
]


@pytest.fixture
def org(tx):
    return Organization.create(name="Risky", slug="risky", plan="PRO")


@pytest.fixture
def repo(org):
    return Repository.create(organization=org, full_name="risky/app", github_id=990001)


def make_pr(repo, number, author, created, **fields):
    values = {
        "title": f"Change {number}",
        "body": "Why and how.",
        "base_ref": "main",
        "head_ref": f"feature/{number}",
        "head_sha": f"{number:040x}",
        "additions": 10,
        "deletions": 0,
        "changed_files": 1,
        **fields,
    }
    return PullRequest.create(
        repository=repo,
        organization=repo.organization_id,
        number=number,
        author_login=author,
        created_at=created,
        updated_at=created,
        **values,
    )


@pytest.fixture
def with_token(org, repo, fake_github, monkeypatch):
    """The org's owner signed in with GitHub and connected the repository (so its calls use
    their token); GitHub is the fake."""
    for name, value in env_for(fake_github).items():
        monkeypatch.setenv(name, value)
    owner = User.create(login="owner", github_id=990100, oauth_token_encrypted=crypto.encrypt("t"))
    UserOrganization.create(user=owner, organization=org, role="OWNER")
    Repository.update(connected_by=owner).where(Repository.id == repo.id).execute()
    return fake_github


def test_levels_follow_the_issue_thresholds():
    cases = {0: "LOW", 29: "LOW", 30: "MEDIUM", 59: "MEDIUM", 60: "HIGH", 79: "HIGH"}
    cases |= {80: "CRITICAL", 100: "CRITICAL"}
    assert {score: heuristic.level_for(score) for score in cases} == cases


def test_entropy_and_paths_by_hand():
    assert heuristic.entropy([10, 10]) == 1.0
    # p = 3/4, 1/4: -(0.75 log2 0.75 + 0.25 log2 0.25) = 0.8113
    assert round(heuristic.entropy([30, 10]), 4) == 0.8113
    assert heuristic.entropy([0, 0]) == 0.0
    assert heuristic.subsystem_of("app/auth/x.py") == "app"
    assert heuristic.subsystem_of("README.md") == "/"
    assert heuristic.directory_of("app/auth/x.py") == "app/auth"


def test_assess_scores_each_factor_and_explains_it():
    features = {
        "lines_added": 100,
        "lines_deleted": 20,
        "files": 5,
        "subsystems": 2,
        "subsystem_names": ["app", "docs"],
        "directories": 3,
        "entropy": 1.2,
        "entropy_normalized": 0.5,
        "fix": False,
        "fix_keywords": [],
        "developers_on_files": 1,
        "prior_changes_to_files": 1,
        "files_age_days": 3.0,
        "author": "dana",
        "author_is_bot": False,
        "author_prior_changes": 2,
        "author_subsystem_changes": 0,
        "history_prs_with_files": 1,
        "sensitive": {"ci": [".github/workflows/ci.yml"]},
        "sensitive_hints": {},
        "tests_touched": False,
        "description_empty": True,
        "source_note": "Based on GitHub's list of the 5 changed files.",
    }
    result = heuristic.assess(features)
    points = {f["feature"]: f["points"] for f in result.findings}
    # 120 lines: 8; 5 files: 5; 2 subsystems: 4; 3 directories: 3; age 3 days: 3;
    # 2 earlier changes: 5; new to the subsystem: 3; CI: 8; no tests: 8; no description: 5.
    assert points == {
        "lines_changed": 8,
        "files": 5,
        "subsystems": 4,
        "directories": 3,
        "files_age_days": 3,
        "author_prior_changes": 5,
        "author_subsystem_changes": 3,
        "sensitive_ci": 8,
        "tests_touched": 8,
        "description_empty": 5,
    }
    assert result.risk_score == 52 and result.risk_level == "MEDIUM"
    by_feature = {f["feature"]: f for f in result.findings}
    assert by_feature["lines_changed"]["value"] == 120
    assert by_feature["lines_changed"]["message"].startswith("120 lines changed (100 added")
    assert "Kamei: LA, LD" in by_feature["lines_changed"]["message"]
    assert by_feature["sensitive_ci"]["files"] == [".github/workflows/ci.yml"]
    assert "secrets" in by_feature["sensitive_ci"]["message"]
    assert result.summary == (
        "Risk 52/100 (MEDIUM). Main factors: 120 lines changed (100 added, 20 deleted); "
        "ci paths changed (.github/workflows/ci.yml); no test file among the 5 changed files "
        "(and 7 more). Based on GitHub's list of the 5 changed files."
    )
    # Deterministic: the same features always give the same review.
    assert heuristic.assess(dict(features)) == result


def test_score_is_capped_at_100_and_critical():
    features = {
        "lines_added": 3000,
        "lines_deleted": 500,
        "files": 60,
        "subsystems": 6,
        "directories": 20,
        "entropy": 5.0,
        "entropy_normalized": 0.95,
        "fix": True,
        "fix_keywords": ["hotfix"],
        "author": "x",
        "author_prior_changes": 0,
        "sensitive": {"auth": ["a/auth.py"], "crypto": ["a/crypto.py"]},
        "tests_touched": False,
        "description_empty": True,
        "source_note": "",
    }
    result = heuristic.assess(features)
    assert result.risk_score == 100 and result.risk_level == "CRITICAL"
    assert sum(f["points"] for f in result.findings) > 100


def test_experience_counts_only_earlier_changes_in_the_repository(org, repo):
    opened = T0 + dt.timedelta(days=10)
    make_pr(repo, 1, "dana", T0, merged_at=T0 + dt.timedelta(days=1), state="MERGED")
    make_pr(repo, 2, "dana", T0, merged_at=opened + dt.timedelta(hours=1), state="MERGED")
    make_pr(repo, 3, "dana", T0)  # never merged
    make_pr(repo, 4, "erin", T0, merged_at=T0 + dt.timedelta(days=1), state="MERGED")
    commits = [
        ("a1", "dana", "main", T0 + dt.timedelta(days=2)),  # counted
        ("a2", "dana", "main", opened + dt.timedelta(days=1)),  # after the PR opened
        ("a3", "dana", "feature/x", T0),  # not on the default branch
        ("a4", "erin", "main", T0),  # someone else
    ]
    for sha, author, branch, when in commits:
        Commit.create(
            repository=repo,
            organization=org,
            sha=sha,
            author_login=author,
            branch=branch,
            authored_at=when,
            committed_at=when,
        )
    pr = make_pr(repo, 5, "dana", opened)
    features = heuristic.change_features(pr, repo, None, "totals")
    assert features["author_prior_merged_prs"] == 1
    assert features["author_prior_direct_commits"] == 1
    assert features["author_prior_changes"] == 2
    finding = next(
        f for f in heuristic.assess(features).findings if f["feature"] == "author_prior_changes"
    )
    assert (finding["value"], finding["points"]) == (2, 5)
    assert finding["message"].startswith("dana has 2 earlier changes in the repository")


def test_totals_only_without_a_token(org, repo, fake_github, monkeypatch):
    for name, value in env_for(fake_github).items():
        monkeypatch.setenv(name, value)
    pr = make_pr(
        repo,
        7,
        "newbie",
        T0,
        title="Fix login crash",
        body=None,
        head_ref="fix/login",
        additions=30,
        deletions=5,
        changed_files=2,
    )
    review = logic.review_pull_request(pr, notify=False)
    assert fake_github.rest_requests == []  # no token: GitHub is not asked
    # fix 5, first change 10, auth named in the title at half weight 6, no description 5
    points = {f["feature"]: f["points"] for f in review.findings}
    assert points == {
        "fix": 5,
        "author_prior_changes": 10,
        "sensitive_auth": 6,
        "description_empty": 5,
    }
    assert (review.risk_score, review.risk_level, review.provider) == (26, "LOW", "heuristic")
    assert review.features["source"] == "payload_totals"
    assert review.features["fix_keywords"] == ["crash", "fix"]
    assert review.summary.endswith(
        "Based on the pull request's totals only: the repository has no usable GitHub token "
        "(needs_owner_token), so no file list."
    )


def test_file_list_from_github_and_the_completed_message(org, repo, with_token):
    with_token.rest = {"pr_files": {8: TOKEN_FILES}}
    pr = make_pr(
        repo,
        8,
        "dana",
        T0,
        title="Token validation rework",
        additions=85,
        deletions=15,
        changed_files=4,
        head_ref="feature/tokens",
    )
    review = logic.review_pull_request(pr)
    assert [r[0] for r in with_token.rest_requests] == ["pulls/8/files"]
    features = review.features
    assert features["source"] == "github_files"
    assert (features["subsystems"], features["directories"]) == (3, 4)
    # p = 50/100, 30/100, 10/100, 10/100 -> 1.6855 bits, 0.8427 of log2(4)
    assert (features["entropy"], features["entropy_normalized"]) == (1.6855, 0.8427)
    assert features["sensitive"] == {
        "auth": ["app/auth/tokens.py"],
        "migrations": ["migrations/008_add.sql"],
        "ci": [".github/workflows/ci.yml"],
    }
    assert features["tests_touched"] is False
    assert [f["filename"] for f in features["file_list"]] == sorted(
        f["filename"] for f in TOKEN_FILES
    )
    # 100 lines 8, 4 files 5, 3 subsystems 8, 4 directories 3, first change 10,
    # auth 12, migrations 10, CI 8, no tests 8
    assert [(f["feature"], f["points"]) for f in review.findings] == [
        ("sensitive_auth", 12),
        ("author_prior_changes", 10),
        ("sensitive_migrations", 10),
        ("lines_changed", 8),
        ("sensitive_ci", 8),
        ("subsystems", 8),
        ("tests_touched", 8),
        ("files", 5),
        ("directories", 3),
    ]
    assert (review.risk_score, review.risk_level) == (72, "HIGH")
    assert review.summary.startswith(
        "Risk 72/100 (HIGH). Main factors: auth paths changed (app/auth/tokens.py); "
        "first change by dana in the repository; migrations paths changed"
    )
    message = Job.get((Job.queue == "outbox") & (Job.organization == org.id)).payload
    assert (message["destination"], message["topic"]) == ("notifications", "event")
    assert message["payload"] == {
        "type": "ai_review.completed",
        "organization_id": org.id,
        "key": f"ai_review.completed:{review.id}",
        "data": {
            "risk_score": 72,
            "risk_level": "HIGH",
            "provider": "heuristic",
            "pull_request_id": pr.id,
            "number": 8,
            "title": "Token validation rework",
            "author": "dana",
            "repository": "risky/app",
            "repository_id": repo.id,
            "sensitivity": "INTERNAL",
        },
    }
    # Once per (pull request, head sha, provider): asking again changes nothing.
    assert logic.review_pull_request(pr).id == review.id
    assert AIReview.select().where(AIReview.pull_request == pr.id).count() == 1
    assert Job.select().where(Job.queue == "outbox").count() == 1


def test_file_history_comes_from_earlier_reviews(org, repo, with_token):
    with_token.rest = {
        "pr_files": {
            8: TOKEN_FILES,
            9: [
                pr_file("app/auth/tokens.py", 3, 1),
                pr_file("app/auth/test_tokens.py", 20, 0),
            ],
        }
    }
    first = make_pr(repo, 8, "dana", T0, additions=85, deletions=15, changed_files=4)
    logic.review_pull_request(first, notify=False)
    later = make_pr(
        repo, 9, "erin", T0 + dt.timedelta(days=2), additions=23, deletions=1, changed_files=2
    )
    features = logic.review_pull_request(later, notify=False).features
    assert features["history_prs_with_files"] == 1
    assert features["developers_on_files"] == 1  # dana
    assert features["prior_changes_to_files"] == 1
    assert features["files_age_days"] == 2.0
    assert features["tests_touched"] is True
    age = next(f for f in heuristic.assess(features).findings if f["feature"] == "files_age_days")
    assert (age["value"], age["points"]) == (2.0, 3)


def test_inbox_handler_enqueues_one_job_per_key(org, repo, monkeypatch):
    monkeypatch.delenv("AI_REVIEW_PROVIDER", raising=False)
    pr = make_pr(repo, 20, "dana", T0)
    payload = {"organization_id": org.id, "pull_request_id": pr.id, "head_sha": pr.head_sha}
    logic.on_review_requested(payload, "m1")
    logic.on_review_requested(payload, "m2")
    queued = list(Job.select().where(Job.queue == "ai_review"))
    assert len(queued) == 1
    assert queued[0].dedupe_key == f"{pr.id}:{pr.head_sha}:heuristic"
    assert queued[0].payload["provider"] == "heuristic"
    for bad in (
        {},
        {**payload, "pull_request_id": "x"},
        {**payload, "head_sha": ""},
        {**payload, "head_sha": 5},
    ):
        with pytest.raises(MessageRejected, match="ai_review.requested needs"):
            logic.on_review_requested(bad, "m3")
    other = Organization.create(name="Other", slug="other-org", plan="FREE")
    logic.on_review_requested({**payload, "organization_id": other.id}, "m4")
    assert Job.select().where(Job.queue == "ai_review").count() == 1  # not that org's PR


def test_provider_choice(org):
    plain = Settings.from_env({})
    with_url = Settings.from_env({"AI_REVIEW_URL": "http://llm.example/v1"})
    assert logic.provider_for(org, plain) == "heuristic"
    org.settings = {"ai_review_provider": "llm"}
    assert logic.provider_for(org, plain) == "heuristic"  # no endpoint configured
    assert logic.provider_for(org, with_url) == "llm"
    env_llm = Settings.from_env({"AI_REVIEW_PROVIDER": "llm", "AI_REVIEW_URL": "http://x/v1"})
    org.settings = {}
    assert logic.provider_for(org, env_llm) == "llm"
    org.settings = {"ai_review_provider": "heuristic"}
    assert logic.provider_for(org, env_llm) == "heuristic"


def test_every_seeded_pull_request_gets_an_explained_review(seeded):
    # The seed reviews every pull request (review_all); doing it again writes nothing.
    assert logic.review_all() == 0
    AIReview.delete().execute()
    written = logic.review_all()
    prs = list(PullRequest.select())
    assert written == len(prs) > 0
    for pr in prs:
        review = AIReview.get(
            (AIReview.pull_request == pr.id)
            & (AIReview.head_sha == pr.head_sha)
            & (AIReview.provider == "heuristic")
        )
        assert review.features["version"] == heuristic.FEATURES_VERSION
        assert review.findings, pr.title
        assert all(
            f["feature"] and f["points"] > 0 and ": " in f["message"] for f in review.findings
        )
        assert review.summary.startswith(f"Risk {review.risk_score}/100 ({review.risk_level})")
        assert review.created_at == pr.updated_at  # dated by the PR, not the clock
        assert review.risk_score == heuristic.assess(review.features).risk_score
    # The seed's mobile-app#1: 320 lines 15, 9 files 5, charlie's first change there 10.
    mobile = PullRequest.get(PullRequest.title == "New onboarding flow")
    review = AIReview.get((AIReview.pull_request == mobile.id) & (AIReview.provider == "heuristic"))
    assert (review.risk_score, review.risk_level) == (30, "MEDIUM")
    assert not Job.select().where(Job.queue == "outbox").exists()  # history: no alerts
    assert logic.review_all() == 0  # idempotent


def test_risk_summary_uses_the_newest_review_of_each_pull_request(org, repo):
    secret = Repository.create(
        organization=org, full_name="risky/vault", github_id=990002, sensitivity="RESTRICTED"
    )
    a, b, c = (make_pr(repo, n, "dana", T0) for n in (31, 32, 33))
    d = make_pr(secret, 34, "dana", T0)

    def review(pr, score, level, day, sha=None):
        AIReview.create(
            pull_request=pr,
            organization=org,
            head_sha=sha or pr.head_sha,
            provider="heuristic",
            risk_score=score,
            risk_level=level,
            created_at=T0 + dt.timedelta(days=day),
        )

    review(a, 90, "CRITICAL", 0, sha="old")
    review(a, 20, "LOW", 1)  # a's newest: LOW
    review(b, 65, "HIGH", 1)
    review(c, 40, "MEDIUM", 5)  # outside the range
    review(d, 85, "CRITICAL", 1)  # RESTRICTED: ADMIN+ only
    start, end = T0.date(), (T0 + dt.timedelta(days=2)).date()
    summary = logic.risk_summary(org, start, end, can_see_restricted=False)
    assert summary["by_level"] == {"LOW": 1, "MEDIUM": 0, "HIGH": 1, "CRITICAL": 0}
    assert summary["reviews"] == 2
    assert summary["average_score"] == 42.5  # (20 + 65) / 2
    assert [(r["number"], r["risk_score"], r["risk_level"]) for r in summary["riskiest"]] == [
        (32, 65, "HIGH"),
        (31, 20, "LOW"),
    ]
    admin = logic.risk_summary(org, start, end, can_see_restricted=True)
    assert admin["by_level"] == {"LOW": 1, "MEDIUM": 0, "HIGH": 1, "CRITICAL": 1}
    assert admin["riskiest"][0]["repository"] == "risky/vault"
    assert logic.risk_summary(org, end, end, can_see_restricted=True) == {
        "by_level": {"LOW": 0, "MEDIUM": 0, "HIGH": 0, "CRITICAL": 0},
        "reviews": 0,
        "average_score": None,
        "riskiest": [],
    }
    # Without a range: a's, b's and c's newest (the RESTRICTED one left out).
    assert logic.risk_summary(org, None, None, can_see_restricted=False)["reviews"] == 3
    listed = logic.list_reviews(org, {"risk_level": "CRITICAL"}, can_see_restricted=False)
    assert [r.head_sha for r in listed] == ["old"]
