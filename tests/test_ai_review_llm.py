"""AI review, `llm` provider, against a local fake OpenAI-compatible server: a good verdict
is stored; garbage, an invalid verdict and timeouts fall back to the heuristic with a note;
a CONFIDENTIAL repository's code never reaches the model."""

import pytest

from services.metrics.ai_review import logic
from shared.models import AIReview, Job
from tests.fake_openai import API_KEY, FakeOpenAIServer
from tests.test_ai_review import T0, TOKEN_FILES, make_pr, org, repo, with_token  # noqa: F401

SECRET_CODE = "SUPER_SECRET_ALGORITHM = 42"


@pytest.fixture(scope="session")
def fake_openai_server():
    with FakeOpenAIServer() as state:
        yield state


@pytest.fixture
def fake_openai(fake_openai_server, with_token, monkeypatch):  # noqa: F811
    fake_openai_server.reset()
    monkeypatch.setenv("AI_REVIEW_URL", fake_openai_server.url)
    monkeypatch.setenv("AI_REVIEW_MODEL", "gpt-4o-mini")
    monkeypatch.setenv("AI_REVIEW_API_KEY", API_KEY)
    monkeypatch.setenv("AI_REVIEW_TIMEOUT_SECONDS", "0.4")
    monkeypatch.setenv("AI_REVIEW_RETRIES", "1")
    files = [dict(f) for f in TOKEN_FILES]
    files[0]["patch"] = f"@@ -1 +1 @@\n+{SECRET_CODE}"
    with_token.rest = {"pr_files": {8: files}}
    return fake_openai_server


@pytest.fixture
def pr(repo):  # noqa: F811
    return make_pr(
        repo,
        8,
        "dana",
        T0,
        title="Token validation rework",
        additions=85,
        deletions=15,
        changed_files=4,
    )


def heuristic_score(pr):  # noqa: F811
    return logic.review_pull_request(pr, "heuristic", notify=False).risk_score


def test_a_good_verdict_is_stored_as_the_llm_review(fake_openai, pr):
    review = logic.review_pull_request(pr, "llm")
    assert (review.provider, review.model) == ("llm", "gpt-4o-mini")
    assert (review.risk_score, review.risk_level) == (64, "HIGH")
    assert review.summary == "The change rewrites token validation without tests."
    assert review.findings == [
        {
            "feature": "llm",
            "source": "llm",
            "message": "Token expiry is no longer checked",
            "severity": "high",
            "file": "app/auth.py",
            "line": 12,
        },
        {
            "feature": "llm",
            "source": "llm",
            "severity": "low",
            "message": "Consider a test for the expired-token path",
        },
    ]
    assert review.features["llm"]["used"] is True
    assert review.features["llm"]["heuristic_score"] == 72
    [(headers, body)] = fake_openai.requests
    assert headers["Authorization"] == f"Bearer {API_KEY}"
    assert body["model"] == "gpt-4o-mini"
    assert body["response_format"] == {"type": "json_object"}
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    prompt = body["messages"][1]["content"]
    assert SECRET_CODE in prompt  # an INTERNAL repository's diff is sent
    assert '"lines_added": 85' in prompt  # with the heuristic features
    completed = Job.get(Job.queue == "outbox").payload["payload"]
    assert completed["data"]["risk_score"] == 64 and completed["data"]["provider"] == "llm"


@pytest.mark.parametrize(
    "mode, reason",
    [
        ("garbage", "the model's answer is not a valid verdict"),
        ("invalid", "the model's answer is not a valid verdict"),
        ("slow", "no answer within 0.4 s after 2 attempts"),
        ("error500", "HTTP 500 after 2 attempts"),
    ],
)
def test_failures_fall_back_to_the_heuristic_with_a_note(fake_openai, pr, mode, reason):
    fake_openai.mode = mode
    review = logic.review_pull_request(pr, "llm", notify=False)
    expected_requests = 1 if mode in ("garbage", "invalid") else 2  # bounded retries
    assert len(fake_openai.requests) == expected_requests
    assert review.provider == "llm"
    assert review.features["llm"]["used"] is False
    assert reason in review.features["llm"]["reason"]
    assert review.findings[0]["feature"] == "provider"
    assert reason in review.findings[0]["message"]
    assert review.summary.startswith("LLM review not used (the LLM failed: ")
    assert "the heuristic's review follows. Risk 72/100 (HIGH)." in review.summary
    assert review.risk_score == 72 == heuristic_score(pr)


def test_a_retry_after_a_server_error_succeeds(fake_openai, pr):
    fake_openai.script = ["error500"]
    review = logic.review_pull_request(pr, "llm", notify=False)
    assert len(fake_openai.requests) == 2
    assert review.risk_score == 64 and review.features["llm"]["used"] is True


@pytest.mark.parametrize("sensitivity", ["CONFIDENTIAL", "RESTRICTED"])
def test_confidential_code_never_reaches_the_model(fake_openai, pr, repo, sensitivity):  # noqa: F811
    repo.sensitivity = sensitivity
    repo.save()
    review = logic.review_pull_request(pr, "llm", notify=False)
    assert fake_openai.requests == []
    assert SECRET_CODE not in fake_openai.sent_text()
    assert review.provider == "llm" and review.features["llm"]["used"] is False
    assert f"risky/app is {sensitivity}: its code is never sent to an LLM" in review.summary
    assert review.risk_score == 72
    assert AIReview.select().where(AIReview.pull_request == pr.id).count() == 1
