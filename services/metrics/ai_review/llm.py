"""The `llm` provider: any OpenAI-compatible chat-completions endpoint (`AI_REVIEW_URL`,
`AI_REVIEW_MODEL`, `AI_REVIEW_API_KEY`) asked for a JSON verdict on a diff and its heuristic
features. Its answer is validated with marshmallow; anything else is an `LLMFailure`, and
the caller falls back to the heuristic."""

from __future__ import annotations

import json
import logging
import time

import marshmallow as ma
import requests

from shared.config import Settings

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
MAX_DIFF_CHARS = 60_000  # keeps the prompt within small models' context windows
RETRY_STATUSES = (408, 409, 429, 500, 502, 503, 504)
SYSTEM_PROMPT = (
    "You review GitHub pull requests for the risk that they introduce a defect or a security"
    " problem. Answer with one JSON object and nothing else, with the keys: risk_score (an"
    " integer from 0 to 100), summary (two or three sentences a developer reads), findings (a"
    " list of objects with: message, severity (low, medium or high), optionally file and"
    " line). Levels follow the score: LOW < 30 <= MEDIUM < 60 <= HIGH < 80 <= CRITICAL."
)


class LLMFailure(RuntimeError):
    """The endpoint did not answer usefully (timeout, HTTP error, invalid verdict)."""


class FindingSchema(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE  # models add keys of their own; only ours are kept

    message = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=2000))
    severity = ma.fields.String(
        load_default="medium", validate=ma.validate.OneOf(["low", "medium", "high"])
    )
    file = ma.fields.String(load_default=None, allow_none=True)
    line = ma.fields.Integer(load_default=None, allow_none=True, strict=True)

    @ma.pre_load
    def lowercase_severity(self, data, **kwargs):
        if isinstance(data, dict) and isinstance(data.get("severity"), str):
            data = {**data, "severity": data["severity"].strip().lower()}
        return data


class VerdictSchema(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    risk_score = ma.fields.Integer(
        required=True, strict=True, validate=ma.validate.Range(min=0, max=100)
    )
    summary = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=4000))
    findings = ma.fields.List(
        ma.fields.Nested(FindingSchema), load_default=list, validate=ma.validate.Length(max=50)
    )


def endpoint_of(url: str) -> str:
    """AI_REVIEW_URL may be the API base (`https://api.openai.com/v1`) or the full
    chat-completions URL."""
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else f"{url}/chat/completions"


def diff_of(files: list[dict] | None) -> tuple[str, bool]:
    """The unified diff GitHub gives per file (`patch`), capped; and whether it was cut."""
    parts = []
    for entry in files or []:
        patch = entry.get("patch")
        header = f"--- {entry.get('filename')} ({entry.get('status', 'modified')})"
        parts.append(f"{header}\n{patch}" if patch else f"{header}\n(binary or too large)")
    text = "\n".join(parts)
    if len(text) > MAX_DIFF_CHARS:
        return text[:MAX_DIFF_CHARS], True
    return text, False


def user_prompt(pr: dict, features: dict, diff: str, truncated: bool) -> str:
    heuristic_view = {k: v for k, v in features.items() if k not in ("file_list", "source_note")}
    return (
        f"Pull request #{pr['number']} in {pr['repository']}: {pr['title']}\n\n"
        f"Description:\n{pr['body'] or '(none)'}\n\n"
        f"Change features (Kamei et al. just-in-time defect prediction):\n"
        f"{json.dumps(heuristic_view, sort_keys=True)}\n\n"
        f"Diff{' (truncated)' if truncated else ''}:\n{diff or '(no diff available)'}"
    )


class ChatCompletions:
    """POST {AI_REVIEW_URL}/chat/completions with timeouts and bounded retries."""

    def __init__(self, settings: Settings, *, sleep=time.sleep):
        if not settings.ai_review_url:
            raise LLMFailure("AI_REVIEW_URL is not set")
        self.url = endpoint_of(settings.ai_review_url)
        self.model = settings.ai_review_model or "gpt-4o-mini"
        self.timeout = (CONNECT_TIMEOUT, settings.ai_review_timeout_seconds)
        self.attempts = 1 + settings.ai_review_retries
        self.sleep = sleep
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "DevMetrics"
        if settings.ai_review_api_key:
            self.session.headers["Authorization"] = f"Bearer {settings.ai_review_api_key}"

    def verdict(self, prompt: str) -> dict:
        """The model's validated verdict {risk_score, summary, findings}."""
        body = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": prompt},
            ],
            "temperature": 0,
            "response_format": {"type": "json_object"},
        }
        content = self._complete(body)
        try:
            return VerdictSchema().load(json.loads(content))
        except (ValueError, TypeError, ma.ValidationError) as exc:
            detail = exc.messages if isinstance(exc, ma.ValidationError) else str(exc)
            raise LLMFailure(f"the model's answer is not a valid verdict: {detail}") from None

    def _complete(self, body: dict) -> str:
        problem = ""
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                self.sleep(0.5 * 2 ** (attempt - 2))
            try:
                response = self.session.post(self.url, json=body, timeout=self.timeout)
            except requests.Timeout:
                problem = f"no answer within {self.timeout[1]:g} s"
                continue
            except requests.RequestException as exc:
                problem = f"cannot reach the endpoint ({type(exc).__name__})"
                continue
            if response.status_code in RETRY_STATUSES:
                problem = f"HTTP {response.status_code}"
                continue
            if response.status_code != 200:
                raise LLMFailure(f"the endpoint answered HTTP {response.status_code}")
            try:
                return response.json()["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError):
                raise LLMFailure("the endpoint's answer is not a chat completion") from None
        attempts = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        raise LLMFailure(f"{problem} after {attempts}")
