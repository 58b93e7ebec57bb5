"""Running AI reviews of pull requests, storing them, announcing them, and reading them.

One review per (pull request, head sha, provider). The provider is the organization's
setting `ai_review_provider`, else AI_REVIEW_PROVIDER, else `heuristic`; `llm` needs
AI_REVIEW_URL (without it the heuristic is used and stored as `heuristic`).

An `llm` review is always stored as provider `llm`: when the model cannot be used (timeout,
HTTP errors, an invalid verdict, or a CONFIDENTIAL/RESTRICTED repository whose code is
never sent) the heuristic's result is stored under `llm` with a first finding and the
summary saying so, so a failed LLM review is not retried for the same head commit.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import peewee as pw

from services.metrics.ai_review import heuristic, llm
from shared import jobs
from shared.config import Settings
from shared.database import db
from shared.errors import BadRequest, NotFound, UpstreamError
from shared.github import GitHubRest
from shared.messages import AIReviewRequested, Event, repository_fields
from shared.models import (
    AIReview,
    Job,
    Organization,
    PullRequest,
    Repository,
    RiskLevel,
    Sensitivity,
)
from shared.tenant_settings import settings_of

log = logging.getLogger(__name__)

QUEUE = "ai_review"
HEURISTIC, LLM = "heuristic", "llm"
HEURISTIC_MODEL = f"kamei-jit-v{heuristic.FEATURES_VERSION}"
# Code of these repositories never leaves DevMetrics for an LLM.
NEVER_SENT = (Sensitivity.CONFIDENTIAL, Sensitivity.RESTRICTED)
MAX_FILE_PAGES = 30  # GitHub lists at most 3,000 files of a pull request (100 a page)
JOB_ATTEMPTS = 5


def provider_for(organization: Organization, settings: Settings) -> str:
    chosen = settings_of(organization).get("ai_review_provider") or settings.ai_review_provider
    if chosen == LLM and settings.ai_review_url:
        return LLM
    return HEURISTIC


# Triggering ---------------------------------------------------------------------------


def on_review_requested(payload: dict, message_id: str) -> None:
    """Inbox handler for `ai_review.requested` {organization_id, pull_request_id, head_sha}:
    one `ai_review` job per (pull request, head sha, provider)."""
    request = AIReviewRequested.from_payload(payload)
    org_id, pr_id, head_sha = request.organization_id, request.pull_request_id, request.head_sha
    organization = Organization.get_or_none(Organization.id == org_id)
    if organization is None or not (
        PullRequest.select()
        .where((PullRequest.id == pr_id) & (PullRequest.organization == org_id))
        .exists()
    ):
        return  # deleted meanwhile: nothing to review
    provider = provider_for(organization, Settings.from_env())
    jobs.enqueue(
        QUEUE,
        {
            "organization_id": org_id,
            "pull_request_id": pr_id,
            "head_sha": head_sha,
            "provider": provider,
            "message_id": message_id,
        },
        dedupe_key=f"{pr_id}:{head_sha}:{provider}",
        organization=org_id,
        max_attempts=JOB_ATTEMPTS,
    )


def run_job(job: Job) -> None:
    """`devmetrics worker ai_review`: review one pull request at one head commit."""
    payload = job.payload
    pr = PullRequest.get_or_none(
        (PullRequest.id == payload["pull_request_id"])
        & (PullRequest.organization == payload["organization_id"])
    )
    if pr is None:
        return
    if pr.head_sha != payload["head_sha"]:
        # New commits arrived since: their own request reviews the newer head.
        log.info("ai review superseded", extra={"pull_request_id": pr.id})
        return
    review_pull_request(
        pr,
        payload.get("provider", HEURISTIC),
        settings=Settings.from_env(),
        final_attempt=job.attempts >= job.max_attempts,
    )


# Reviewing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    model: str
    risk_score: int
    risk_level: RiskLevel
    findings: list[dict]
    summary: str
    features: dict


def review_pull_request(
    pr: PullRequest,
    provider: str = HEURISTIC,
    *,
    settings: Settings | None = None,
    notify: bool = True,
    final_attempt: bool = True,
) -> AIReview:
    """Review `pr` at its head commit with `provider`, store it and (with `notify`) send
    `ai_review.completed` to the notifications service in the same transaction. An
    existing review for that key is returned as it is."""
    settings = settings or Settings.from_env()
    key = (
        (AIReview.pull_request == pr.id)
        & (AIReview.head_sha == pr.head_sha)
        & (AIReview.provider == provider)
    )
    existing = AIReview.get_or_none(key)
    if existing is not None:
        return existing
    repo = Repository.get_by_id(pr.repository_id)
    # Network first (GitHub, the LLM), outside any transaction.
    files, note = _github_files(pr, repo, final_attempt=final_attempt)
    features = heuristic.change_features(pr, repo, files, note)
    if provider == LLM:
        outcome = _llm_outcome(pr, repo, features, files, settings)
    else:
        outcome = _heuristic_outcome(features)
    with db.atomic():
        try:
            with db.atomic():
                review = AIReview.create(
                    pull_request=pr.id,
                    organization=pr.organization_id,
                    head_sha=pr.head_sha,
                    provider=provider,
                    model=outcome.model,
                    risk_score=outcome.risk_score,
                    risk_level=outcome.risk_level,
                    findings=outcome.findings,
                    features=outcome.features,
                    summary=outcome.summary,
                )
        except pw.IntegrityError:  # another worker stored it first
            return AIReview.get(key)
        if notify:
            publish_completed(review, pr, repo)
    return review


def publish_completed(review: AIReview, pr: PullRequest, repo: Repository) -> None:
    """`ai_review.completed` in the envelope of the activity service's events, so
    notification rules match on its data (e.g. risk_score >= 70)."""
    Event(
        type="ai_review.completed",
        organization_id=review.organization_id,
        key=f"ai_review.completed:{review.id}",
        data={
            "risk_score": review.risk_score,
            "risk_level": str(review.risk_level),
            "provider": review.provider,
            "pull_request_id": pr.id,
            "number": pr.number,
            "title": pr.title,
            "author": pr.author_login,
            **repository_fields(repo),
        },
    ).publish()


def _github_files(pr: PullRequest, repo: Repository, *, final_attempt: bool):
    """GitHub's file list of the pull request, or None with the reason; a GitHub outage
    fails the job (retried) until its last attempt, which settles for the totals."""
    from services.activity.api import repository_token, status_of

    totals = "Based on the pull request's totals only"
    token = repository_token(repo)
    if not token:
        state = status_of(repo).state
        return (
            None,
            f"{totals}: the repository has no usable GitHub token ({state}), so no file list.",
        )
    client = GitHubRest(token, max_wait_seconds=60)
    files: list[dict] = []
    try:
        page = client.get(f"/repos/{repo.full_name}/pulls/{pr.number}/files", {"per_page": 100})
        files += page.data or []
        for _ in range(MAX_FILE_PAGES - 1):
            if not page.next_url:
                break
            page = client.get(page.next_url)
            files += page.data or []
    except BadRequest as exc:
        return None, f"{totals}: GitHub refused the file list ({exc.message})."
    except UpstreamError as exc:
        if not final_attempt:
            raise
        return None, f"{totals}: GitHub did not give the file list ({exc.message})."
    return files, f"Based on GitHub's list of the {len(files)} changed files."


def _heuristic_outcome(features: dict) -> Outcome:
    result = heuristic.assess(features)
    return Outcome(
        HEURISTIC_MODEL,
        result.risk_score,
        result.risk_level,
        result.findings,
        result.summary,
        features,
    )


def _llm_outcome(pr, repo, features: dict, files, settings: Settings) -> Outcome:
    if repo.sensitivity in NEVER_SENT:
        reason = f"{repo.full_name} is {repo.sensitivity}: its code is never sent to an LLM"
        return _fallback(features, reason)
    diff, truncated = llm.diff_of(files)
    about = {"number": pr.number, "repository": repo.full_name, "title": pr.title, "body": pr.body}
    try:
        client = llm.ChatCompletions(settings)
        verdict = client.verdict(llm.user_prompt(about, features, diff, truncated))
    except llm.LLMFailure as exc:
        log.warning("llm review failed", extra={"pull_request_id": pr.id, "error": str(exc)})
        return _fallback(features, f"the LLM failed: {exc}")
    result = heuristic.assess(features)
    findings = [
        {"feature": "llm", "source": "llm", **{k: v for k, v in f.items() if v is not None}}
        for f in verdict["findings"]
    ]
    return Outcome(
        client.model,
        verdict["risk_score"],
        heuristic.level_for(verdict["risk_score"]),
        findings,
        verdict["summary"],
        {
            **features,
            "llm": {
                "used": True,
                "model": client.model,
                "diff_chars": len(diff),
                "diff_truncated": truncated,
                "heuristic_score": result.risk_score,
                "heuristic_level": str(result.risk_level),
            },
        },
    )


def _fallback(features: dict, reason: str) -> Outcome:
    """The heuristic's result, stored for the `llm` provider, saying why."""
    result = heuristic.assess(features)
    note = {
        "feature": "provider",
        "value": "heuristic fallback",
        "points": 0,
        "severity": "low",
        "fact": "the LLM review was not used",
        "message": f"the LLM review was not used ({reason}); the heuristic scored this change",
    }
    return Outcome(
        HEURISTIC_MODEL,
        result.risk_score,
        result.risk_level,
        [note, *result.findings],
        f"LLM review not used ({reason}); the heuristic's review follows. {result.summary}",
        {**features, "llm": {"used": False, "reason": reason}},
    )


def review_all(organization_id: int | None = None) -> int:
    """Give every pull request (of one organization, or all) an explained heuristic review
    at its head commit; returns how many were written. Offline and deterministic: payload
    totals only (no GitHub call), dated at the pull request's last update, and no
    notification (these describe the past). A heuristic review without features (one
    written before the heuristic, e.g. demo data) is replaced by the explained one."""
    existing = AIReview.alias()
    query = (
        PullRequest.select(PullRequest, existing.features)
        .join(
            existing,
            pw.JOIN.LEFT_OUTER,
            on=(
                (existing.pull_request == PullRequest.id)
                & (existing.head_sha == PullRequest.head_sha)
                & (existing.provider == HEURISTIC)
            ),
        )
        .where(PullRequest.head_sha.is_null(False))
        .order_by(PullRequest.created_at, PullRequest.id)
    )
    if organization_id is not None:
        query = query.where(PullRequest.organization == organization_id)
    repos: dict[int, Repository] = {}
    rows = []
    note = "Based on the pull request's totals only (reviewed offline, without GitHub)."
    for pr in query.objects():
        if (pr.features or {}).get("version"):
            continue  # already explained
        repo = repos.get(pr.repository_id) or Repository.get_by_id(pr.repository_id)
        repos[repo.id] = repo
        outcome = _heuristic_outcome(heuristic.change_features(pr, repo, None, note))
        rows.append(
            {
                "pull_request": pr.id,
                "organization": pr.organization_id,
                "head_sha": pr.head_sha,
                "provider": HEURISTIC,
                "model": outcome.model,
                "risk_score": outcome.risk_score,
                "risk_level": outcome.risk_level,
                "findings": outcome.findings,
                "features": outcome.features,
                "summary": outcome.summary,
                "created_at": pr.updated_at or pr.created_at,
            }
        )
    replaced = [
        AIReview.model,
        AIReview.risk_score,
        AIReview.risk_level,
        AIReview.findings,
        AIReview.features,
        AIReview.summary,
        AIReview.created_at,
    ]
    with db.atomic():
        for batch in pw.chunked(rows, 100):
            (
                AIReview.insert_many(batch)
                .on_conflict(
                    conflict_target=[AIReview.pull_request, AIReview.head_sha, AIReview.provider],
                    preserve=replaced,
                )
                .execute()
            )
    return len(rows)


# Reading ------------------------------------------------------------------------------


def _day_bounds(start: dt.date | None, end: dt.date | None):
    """`from`/`to` are whole UTC days, both included."""
    low = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC) if start else None
    high = (
        dt.datetime.combine(end, dt.time(), tzinfo=dt.UTC) + dt.timedelta(days=1) if end else None
    )
    return low, high


def _visible(query, organization, can_see_restricted: bool):
    query = query.where(AIReview.organization == organization.id)
    if not can_see_restricted:  # RESTRICTED repositories are for ADMIN+ only
        query = query.where(Repository.sensitivity != Sensitivity.RESTRICTED)
    return query


def _joined():
    return (
        AIReview.select(AIReview, PullRequest, Repository)
        .join(PullRequest, on=(AIReview.pull_request == PullRequest.id))
        .join(Repository, on=(PullRequest.repository == Repository.id))
    )


def list_reviews(organization, args: dict, *, can_see_restricted: bool):
    """The organization's reviews, newest first, filtered by `args`."""
    query = _visible(_joined(), organization, can_see_restricted)
    if args.get("pull_request") is not None:
        query = query.where(AIReview.pull_request == args["pull_request"])
    if args.get("repository") is not None:
        query = query.where(PullRequest.repository == args["repository"])
    if args.get("risk_level"):
        query = query.where(AIReview.risk_level == args["risk_level"])
    if args.get("provider"):
        query = query.where(AIReview.provider == args["provider"])
    low, high = _day_bounds(args.get("start"), args.get("end"))
    if low:
        query = query.where(AIReview.created_at >= low)
    if high:
        query = query.where(AIReview.created_at < high)
    return query.order_by(AIReview.created_at.desc(), AIReview.id.desc())


class ExportRows:
    """The reviews of `query` (list_reviews) for a CSV export: counted first (the export's
    size, checked before anything is sent), then read a chunk at a time, with only the
    exported columns (no findings or features), never more rows than were counted."""

    CHUNK = 500

    def __init__(self, query):
        self._query = query
        self._count = None

    def __len__(self) -> int:
        if self._count is None:
            self._count = self._query.count()
        return self._count

    def __iter__(self):
        ids = [i for (i,) in self._query.select(AIReview.id).limit(len(self)).tuples()]
        columns = (
            AIReview.select(
                AIReview.id,
                AIReview.created_at,
                AIReview.head_sha,
                AIReview.provider,
                AIReview.model,
                AIReview.risk_score,
                AIReview.risk_level,
                AIReview.summary,
                PullRequest.id,
                PullRequest.number,
                PullRequest.title,
                PullRequest.author_login,
                PullRequest.repository,
                Repository.id,
                Repository.full_name,
            )
            .join(PullRequest, on=(AIReview.pull_request == PullRequest.id))
            .join(Repository, on=(PullRequest.repository == Repository.id))
        )
        for chunk in pw.chunked(ids, self.CHUNK):
            rows = {review.id: review for review in columns.where(AIReview.id.in_(chunk))}
            yield from (rows[i] for i in chunk if i in rows)


def reviews_of_pull_request(
    organization, pr_id: int, args: dict | None = None, *, can_see_restricted: bool
):
    """One pull request's reviews (NotFound unless the caller may see it)."""
    visible = (
        PullRequest.select(PullRequest.id)
        .join(Repository, on=(PullRequest.repository == Repository.id))
        .where((PullRequest.id == pr_id) & (PullRequest.organization == organization.id))
    )
    if not can_see_restricted:
        visible = visible.where(Repository.sensitivity != Sensitivity.RESTRICTED)
    if not visible.exists():
        raise NotFound(f"pull request {pr_id} not found", {"pr_id": ["not in this organization"]})
    args = {**(args or {}), "pull_request": pr_id}
    return list_reviews(organization, args, can_see_restricted=True)


def risk_summary(organization, start, end, *, can_see_restricted: bool) -> dict:
    """By level, count and average score of the newest review of each pull request made
    in [from, to], and the five riskiest of them."""
    rank = (
        pw.fn.ROW_NUMBER()
        .over(
            partition_by=[AIReview.pull_request],
            order_by=[AIReview.created_at.desc(), AIReview.id.desc()],
        )
        .alias("rank")
    )
    ranked = _visible(
        AIReview.select(
            AIReview.id,
            AIReview.risk_score,
            AIReview.risk_level,
            AIReview.created_at,
            AIReview.pull_request,
            rank,
        )
        .join(PullRequest, on=(AIReview.pull_request == PullRequest.id))
        .join(Repository, on=(PullRequest.repository == Repository.id)),
        organization,
        can_see_restricted,
    )
    low, high = _day_bounds(start, end)
    if low:
        ranked = ranked.where(AIReview.created_at >= low)
    if high:
        ranked = ranked.where(AIReview.created_at < high)
    newest = ranked.alias("newest")
    by_level = (
        pw.Select(
            [newest],
            [newest.c.risk_level, pw.fn.COUNT(pw.SQL("*")), pw.fn.SUM(newest.c.risk_score)],
        )
        .where(newest.c.rank == 1)
        .group_by(newest.c.risk_level)
        .bind(db)
        .tuples()
    )
    counts = {level.value: 0 for level in RiskLevel}
    total, score_sum = 0, 0.0
    for level, n, scores in by_level:
        counts[str(level)] = n
        total += n
        score_sum += float(scores)
    riskiest = (
        _joined()
        .join_from(AIReview, newest, on=(AIReview.id == newest.c.id))
        .where(newest.c.rank == 1)
        .order_by(AIReview.risk_score.desc(), AIReview.created_at.desc(), AIReview.id.desc())
        .limit(5)
    )
    return {
        "by_level": counts,
        "reviews": total,
        "average_score": round(score_sum / total, 1) if total else None,
        "riskiest": [
            {
                "pull_request_id": review.pull_request.id,
                "number": review.pull_request.number,
                "title": review.pull_request.title,
                "repository": review.pull_request.repository.full_name,
                "risk_score": review.risk_score,
                "risk_level": str(review.risk_level),
            }
            for review in riskiest
        ],
    }
