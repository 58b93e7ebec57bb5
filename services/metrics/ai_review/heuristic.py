"""The `heuristic` provider: an offline, deterministic risk score for a pull request.

Built on the just-in-time defect-prediction change features of Kamei et al. ("A Large-Scale
Empirical Study of Just-in-Time Quality Assurance", IEEE TSE 2013): size (LA, LD, NF),
diffusion (NS, ND, entropy), purpose (FIX), history (NDEV, NUC, AGE) and experience (EXP,
SEXP); plus sensitive paths, tests not touched and an empty description.

`change_features` reads what our database knows (no network, no wall clock: every time
window is anchored on the pull request's own `created_at`); `assess` turns features into a
score, a level, findings and a summary, and is pure.

Approximations, stated in the features themselves:
- a "change" is a pull request (merged before this one opened) or a commit pushed straight
  to the default branch; Kamei counts commits;
- file-level history (NDEV, NUC, AGE, SEXP) only knows the file lists of pull requests
  reviewed before with a GitHub file list (stored in each review's `features.file_list`);
- without a file list (no GitHub token) only the payload's totals are used, and sensitive
  areas are guessed from the title and branch name at half weight.
"""

from __future__ import annotations

import datetime as dt
import math
import posixpath
import re
from dataclasses import dataclass

from shared.models import AIReview, Commit, PullRequest, Repository, RiskLevel

FEATURES_VERSION = 1
MAX_STORED_FILES = 300  # file names kept per review for later history features
HISTORY_DAYS = 365  # how far back file-level history looks, from the PR's creation

# (category, points, path pattern, title/branch hint pattern, why it raises risk)
SENSITIVE_AREAS = (
    (
        "auth",
        12,
        r"(^|/)[^/]*(auth|login|logout|oauth|saml|sso|session|password|permission|rbac|acl)",
        r"\b(auth\w*|login|oauth|sso|sessions?|passwords?|permissions?)\b",
        "a mistake here lets the wrong people in or locks the right ones out",
    ),
    (
        "crypto",
        12,
        r"(^|/)[^/]*(crypt|cipher|secret|signing|signature|hmac|tls|ssl|cert|keys?[/._-])",
        r"\b(crypto\w*|encrypt\w*|decrypt\w*|secrets?|tls|ssl|certificates?)\b",
        "cryptographic and secret-handling code fails silently and dangerously",
    ),
    (
        "migrations",
        10,
        r"(^|/)(migrations?|migrate|alembic|flyway|liquibase)/|\.sql$",
        r"\b(migrations?|schema)\b",
        "schema changes touch live data and are hard to roll back",
    ),
    (
        "ci",
        8,
        r"^\.github/workflows/|^\.gitlab-ci\.yml$|^\.circleci/|(^|/)Jenkinsfile$"
        r"|^azure-pipelines\.ya?ml$|^\.buildkite/",
        r"\b(ci|workflows?|pipelines?)\b",
        "CI workflows run with repository secrets and gate every other change",
    ),
    (
        "dependencies",
        6,
        r"(^|/)(requirements[^/]*\.(txt|lock|in)|pyproject\.toml|setup\.(py|cfg)|Pipfile(\.lock)?"
        r"|poetry\.lock|uv\.lock|package(-lock)?\.json|yarn\.lock|pnpm-lock\.yaml|go\.(mod|sum)"
        r"|Cargo\.(toml|lock)|Gemfile(\.lock)?|pom\.xml|build\.gradle(\.kts)?"
        r"|gradle\.properties|libs\.versions\.toml|composer\.(json|lock))$",
        r"\b(deps|dependenc(y|ies)|bump|upgrade)\b",
        "new dependency versions change code nobody here reviewed",
    ),
    (
        "infrastructure",
        8,
        r"(^|/)(Dockerfile[^/]*|docker-compose[^/]*\.ya?ml|Procfile|[^/]+\.tf|[^/]+\.tfvars)$"
        r"|(^|/)(terraform|k8s|kubernetes|helm|charts|ansible|infra|deploy)/",
        r"\b(infra\w*|docker\w*|terraform|kubernetes|k8s|helm|deploy\w*)\b",
        "infrastructure changes affect every running service at once",
    ),
)
TEST_PATH = re.compile(
    r"(^|/)(tests?|spec|specs|__tests__|androidTest|testing)/|(^|/)test_[^/]*$"
    r"|_test\.[^/.]+$|\.(test|spec)\.[^/.]+$|Tests?\.(kt|java|cs|swift|scala)$",
    re.IGNORECASE,
)
FIX_WORDS = re.compile(
    r"\b(fix\w*|bugs?|bugfix|defects?|hotfix|patch\w*|crash\w*|errors?|faults?|regressions?"
    r"|revert\w*|broken|incorrect)\b",
    re.IGNORECASE,
)


def level_for(score: int) -> RiskLevel:
    """LOW < 30 <= MEDIUM < 60 <= HIGH < 80 <= CRITICAL."""
    if score >= 80:
        return RiskLevel.CRITICAL
    if score >= 60:
        return RiskLevel.HIGH
    if score >= 30:
        return RiskLevel.MEDIUM
    return RiskLevel.LOW


def subsystem_of(path: str) -> str:
    """Kamei's subsystem: the top-level directory ("/" for files at the root)."""
    head, sep, _ = path.partition("/")
    return head if sep else "/"


def directory_of(path: str) -> str:
    return posixpath.dirname(path) or "/"


def entropy(changed_lines: list[int]) -> float:
    """Shannon entropy (bits) of how the changed lines spread over the files."""
    total = sum(changed_lines)
    if total <= 0:
        return 0.0
    return -sum((n / total) * math.log2(n / total) for n in changed_lines if n > 0)


def tier(value: float, steps: tuple[tuple[float, int], ...]) -> int:
    """The points of the last step whose threshold `value` exceeds (0 below the first)."""
    points = 0
    for threshold, step_points in steps:
        if value > threshold:
            points = step_points
    return points


def stored_file(entry: dict) -> dict:
    """One file of GitHub's `/pulls/{n}/files`, reduced to what the features need."""
    return {
        "filename": str(entry.get("filename") or ""),
        "status": str(entry.get("status") or "modified"),
        "additions": int(entry.get("additions") or 0),
        "deletions": int(entry.get("deletions") or 0),
    }


# Features ----------------------------------------------------------------------------


def change_features(
    pr: PullRequest, repo: Repository, files: list[dict] | None, source_note: str
) -> dict:
    """The change's features. `files` is GitHub's file list (None: payload totals only);
    `source_note` says in a sentence where the file information came from."""
    text = f"{pr.title or ''}\n{pr.body or ''}\n{pr.head_ref or ''}"
    fix_words = sorted({m.group(0).lower() for m in FIX_WORDS.finditer(text)})
    features: dict = {
        "version": FEATURES_VERSION,
        "source": "github_files" if files is not None else "payload_totals",
        "source_note": source_note,
        "lines_added": int(pr.additions or 0),
        "lines_deleted": int(pr.deletions or 0),
        "files": int(pr.changed_files or 0),
        "commits": int(pr.commits_count or 0),
        "fix": bool(fix_words),
        "fix_keywords": fix_words,
        "description_empty": not (pr.body or "").strip(),
        "author": pr.author_login,
        "author_is_bot": bool(pr.author_is_bot),
        **_experience(pr, repo),
    }
    if files is None:
        features.update(
            subsystems=None,
            directories=None,
            entropy=None,
            entropy_normalized=None,
            developers_on_files=None,
            prior_changes_to_files=None,
            files_age_days=None,
            author_subsystem_changes=None,
            tests_touched=None,
            sensitive={},
            sensitive_hints=_sensitive_hints(f"{pr.title or ''} {pr.head_ref or ''}"),
            file_list=[],
            file_list_truncated=False,
        )
        return features
    files = [stored_file(f) for f in files if f.get("filename")]
    names = sorted({f["filename"] for f in files})
    changed = [f["additions"] + f["deletions"] for f in files]
    bits = entropy(changed)
    subsystems = sorted({subsystem_of(n) for n in names})
    features.update(
        # GitHub's totals and the list agree; the list wins when the payload had none.
        lines_added=max(features["lines_added"], sum(f["additions"] for f in files)),
        lines_deleted=max(features["lines_deleted"], sum(f["deletions"] for f in files)),
        files=max(features["files"], len(names)),
        subsystems=len(subsystems),
        subsystem_names=subsystems,
        directories=len({directory_of(n) for n in names}),
        entropy=round(bits, 4),
        entropy_normalized=round(bits / math.log2(len(names)), 4) if len(names) > 1 else 0.0,
        tests_touched=any(TEST_PATH.search(n) for n in names),
        sensitive={
            category: hits
            for category, _, pattern, _, _ in SENSITIVE_AREAS
            if (hits := [n for n in names if re.search(pattern, n, re.IGNORECASE)])
        },
        sensitive_hints={},
        file_list=sorted(files, key=lambda f: f["filename"])[:MAX_STORED_FILES],
        file_list_truncated=len(files) > MAX_STORED_FILES,
        **_file_history(pr, repo, set(names), set(subsystems)),
    )
    return features


def _experience(pr: PullRequest, repo: Repository) -> dict:
    """EXP: the author's earlier changes in this repository before the PR opened."""
    if not pr.author_login:
        return {
            "author_prior_merged_prs": 0,
            "author_prior_direct_commits": 0,
            "author_prior_changes": 0,
        }
    merged = (
        PullRequest.select()
        .where(
            (PullRequest.repository == repo.id)
            & (PullRequest.author_login == pr.author_login)
            & (PullRequest.id != pr.id)
            & (PullRequest.merged_at < pr.created_at)
        )
        .count()
    )
    direct = (
        Commit.select()
        .where(
            (Commit.repository == repo.id)
            & (Commit.author_login == pr.author_login)
            & (Commit.branch == repo.default_branch)
            & (Commit.authored_at < pr.created_at)
        )
        .count()
    )
    return {
        "author_prior_merged_prs": merged,
        "author_prior_direct_commits": direct,
        "author_prior_changes": merged + direct,
    }


def _file_history(pr: PullRequest, repo: Repository, names: set[str], subsystems: set[str]):
    """NDEV, NUC, AGE and SEXP from the file lists of earlier reviewed pull requests."""
    since = pr.created_at - dt.timedelta(days=HISTORY_DAYS)
    rows = (
        AIReview.select(
            PullRequest.id, PullRequest.author_login, PullRequest.created_at, AIReview.features
        )
        .join(PullRequest)
        .where(
            (PullRequest.repository == repo.id)
            & (PullRequest.id != pr.id)
            & (PullRequest.created_at < pr.created_at)
            & (PullRequest.created_at >= since)
        )
        .order_by(PullRequest.created_at, PullRequest.id, AIReview.created_at, AIReview.id)
        .tuples()
    )
    earlier: dict[int, tuple[str | None, dt.datetime, set[str]]] = {}
    for pr_id, author, created_at, features in rows:
        listed = {f.get("filename") for f in (features or {}).get("file_list") or []}
        if listed:  # the newest review with a file list wins
            created = PullRequest.created_at.python_value(created_at)
            earlier[pr_id] = (author, created, listed)
    touching = [(a, c, listed & names) for a, c, listed in earlier.values() if listed & names]
    last_change: dict[str, dt.datetime] = {}
    for _, created, shared in touching:
        for name in shared:
            last_change[name] = max(created, last_change.get(name, created))
    ages = [(pr.created_at - when).total_seconds() / 86400 for when in last_change.values()]
    same_subsystem = [
        1
        for author, _, listed in earlier.values()
        if author == pr.author_login and {subsystem_of(n) for n in listed} & subsystems
    ]
    return {
        "history_prs_with_files": len(earlier),
        "developers_on_files": len({a for a, _, _ in touching if a}),
        "prior_changes_to_files": len(touching),
        "files_age_days": round(sum(ages) / len(ages), 2) if ages else None,
        "author_subsystem_changes": len(same_subsystem),
    }


def _sensitive_hints(text: str) -> dict:
    return {
        category: sorted({m.group(0).lower() for m in re.finditer(hint, text, re.IGNORECASE)})
        for category, _, _, hint, _ in SENSITIVE_AREAS
        if re.search(hint, text, re.IGNORECASE)
    }


# Assessment --------------------------------------------------------------------------

# Why each feature raises risk (the second half of every finding's message).
WHY = {
    "lines_changed": "larger changes (Kamei: LA, LD) carry more defects, get shallower reviews",
    "files": "every extra file (Kamei: NF) is another place for a defect to hide",
    "subsystems": "changes spanning subsystems (Kamei: NS) couple code owned by different people",
    "directories": "scattered changes (Kamei: ND) are harder to review as one unit",
    "entropy": "no single focus (Kamei: entropy) means every file needs equal attention",
    "fix": "fixes (Kamei: FIX) are more defect-prone than other changes, often rushed",
    "developers_on_files": "files many people change (Kamei: NDEV) lack a single owner",
    "prior_changes_to_files": "frequently changed files (Kamei: NUC) keep attracting defects",
    "files_age_days": "code still settling (Kamei: AGE) is likely to change again for a defect",
    "author_prior_changes": "developers new to a code base (Kamei: EXP) introduce more defects",
    "author_subsystem_changes": "experience elsewhere (Kamei: SEXP) transfers only partly",
    "tests_touched": "untested changes ship their defects unnoticed",
    "description_empty": "reviewers without the intent miss what the change gets wrong",
}


@dataclass(frozen=True)
class Assessment:
    risk_score: int
    risk_level: RiskLevel
    findings: list[dict]
    summary: str


class Findings(list):
    def add(self, feature: str, value, points: int, fact: str, why: str | None = None, **extra):
        """A risk factor worth `points` (nothing when 0): the feature, its value, why."""
        if points <= 0:
            return
        self.append(
            {
                "feature": feature,
                "value": value,
                "points": points,
                "severity": "high" if points >= 10 else "medium" if points >= 5 else "low",
                "fact": fact,
                "message": f"{fact}: {why or WHY[feature]}",
                **extra,
            }
        )


def assess(features: dict) -> Assessment:
    """Score the features: each risk factor adds points (capped at 100) and is a finding
    naming the feature, its value and why it raises risk."""
    found = Findings()
    la, ld, nf = features["lines_added"], features["lines_deleted"], features["files"]
    churn = la + ld
    found.add(
        "lines_changed",
        churn,
        tier(churn, ((50, 8), (200, 15), (500, 22), (1000, 30))),
        f"{churn} lines changed ({la} added, {ld} deleted)",
    )
    found.add("files", nf, tier(nf, ((3, 5), (10, 10), (30, 15))), f"{nf} files changed")
    if (ns := features.get("subsystems")) is not None:
        names = ", ".join(features.get("subsystem_names") or [])
        found.add("subsystems", ns, tier(ns, ((1, 4), (2, 8))), f"{ns} subsystems ({names})")
    if (nd := features.get("directories")) is not None:
        found.add("directories", nd, tier(nd, ((2, 3), (5, 6))), f"{nd} directories touched")
    spread = features.get("entropy_normalized")
    if spread is not None and nf >= 4 and spread >= 0.9:
        bits = features["entropy"]
        found.add("entropy", bits, 5, f"changes spread evenly over {nf} files ({bits:.2f} bits)")
    if features.get("fix"):
        words = ", ".join(features.get("fix_keywords") or [])
        found.add("fix", True, 5, f"a defect fix (mentions: {words})")
    if (ndev := features.get("developers_on_files")) is not None and ndev >= 3:
        found.add("developers_on_files", ndev, 5, f"{ndev} developers changed these files before")
    if (nuc := features.get("prior_changes_to_files")) is not None and nuc >= 5:
        found.add("prior_changes_to_files", nuc, 5, f"{nuc} earlier changes to these files")
    if (age := features.get("files_age_days")) is not None and age < 7:
        found.add("files_age_days", age, 3, f"these files last changed {age:.1f} days before")
    exp = features.get("author_prior_changes", 0)
    author = features.get("author") or "the author"
    if not features.get("author_is_bot"):  # a bot's experience says nothing about risk
        if exp == 0:
            found.add("author_prior_changes", 0, 10, f"first change by {author} in the repository")
        else:
            plural = "s" if exp != 1 else ""
            fact = f"{author} has {exp} earlier change{plural} in the repository"
            found.add("author_prior_changes", exp, 5 if exp < 5 else 0, fact)
        sexp = features.get("author_subsystem_changes")
        if sexp == 0 and exp > 0 and features.get("history_prs_with_files"):
            found.add("author_subsystem_changes", 0, 3, f"{author} never changed these subsystems")
    for category, points, _, _, why in SENSITIVE_AREAS:
        paths = (features.get("sensitive") or {}).get(category)
        hints = (features.get("sensitive_hints") or {}).get(category)
        if paths:
            shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
            fact = f"{category} paths changed ({shown})"
            found.add(f"sensitive_{category}", len(paths), points, fact, why, files=paths)
        elif hints:
            fact = f"title or branch mentions {category} ({', '.join(hints)}; no file list)"
            found.add(f"sensitive_{category}", hints, points // 2, fact, why)
    if features.get("tests_touched") is False and churn > 20:
        found.add("tests_touched", False, 8, f"no test file among the {nf} changed files")
    if features.get("description_empty"):
        found.add("description_empty", True, 5, "the pull request has no description")
    findings = sorted(found, key=lambda f: (-f["points"], f["feature"]))
    score = min(100, sum(f["points"] for f in findings))
    level = level_for(score)
    return Assessment(score, level, findings, summary_of(score, level, findings, features))


def summary_of(score: int, level: RiskLevel, findings: list[dict], features: dict) -> str:
    """One paragraph a person reads: score, level, the three biggest factors, the source."""
    if findings:
        main = "; ".join(f["fact"] for f in findings[:3])
        more = len(findings) - 3
        text = f"Risk {score}/100 ({level}). Main factors: {main}"
        text += f" (and {more} more)." if more > 0 else "."
    else:
        text = (
            f"Risk {score}/100 ({level}). No risk factor found: a small, described change"
            " by an author experienced in this repository."
        )
    return f"{text} {features['source_note']}"
