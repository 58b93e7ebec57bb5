"""Item 17.9: figures from a RESTRICTED repository's activity are for ADMIN+ only, on every
metrics route the API and the dashboard read, org-wide figures included.

techcorp gets a RESTRICTED repository where a developer works who works nowhere else, and
where bob (who also works in the seeded repositories) commits and reviews; the engine then
recomputes techcorp's daily rows, as it does in production. A caller below ADMIN (an API
key, and a MEMBER's session cookie as the dashboard sends it) sees neither that developer
nor any figure of the vault, and `repository=<vault>` is a 404 for them; an ADMIN sees all.
"""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
import requests

from shared.models import (
    Commit,
    Organization,
    PullRequest,
    Repository,
    Review,
    ReviewKind,
    Sensitivity,
    User,
)
from shared.web.auth import SESSION_COOKIE
from tests.helpers import bound_to
from tests.reliability.report import record

GHOST = "vault-only-dev"
RANGE = {"from": "2026-11-01", "to": "2026-11-08"}  # the seed's days and the vault's
VAULT_COMMITS = {GHOST: 3, "bob": 2}


def at(day: str, hour: int) -> dt.datetime:
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(hour), tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def vault(secure_stack) -> int:
    with bound_to(secure_stack.database_url):
        org = Organization.get(Organization.slug == "techcorp")
        repo = Repository.create(
            organization=org,
            full_name="techcorp/vault",
            github_id=70_990,
            private=True,
            sensitivity=Sensitivity.RESTRICTED,
        )
        ghost = User.create(login=GHOST, name="Vault Only")
        bob = User.get(User.login == "bob")
        authors = [ghost] * VAULT_COMMITS[GHOST] + [bob] * VAULT_COMMITS["bob"]
        for n, author in enumerate(authors):
            Commit.create(
                repository=repo,
                organization=org,
                sha=f"{n + 1:040x}",
                author=author,
                author_login=author.login,
                authored_at=at("2026-11-02", 9 + n),
                committed_at=at("2026-11-02", 9 + n),
                pushed_at=at("2026-11-02", 9 + n),
                branch="rotate-keys",
            )
        pull = PullRequest.create(
            repository=repo,
            organization=org,
            number=1,
            github_id=70_990_001,
            author=ghost,
            author_login=GHOST,
            title="Rotate the master keys",
            state="MERGED",
            base_ref="main",
            head_ref="rotate-keys",
            created_at=at("2026-11-02", 15),
            merged_at=at("2026-11-03", 10),
            closed_at=at("2026-11-03", 10),
        )
        Review.create(
            pull_request=pull,
            organization=org,
            kind=ReviewKind.REVIEW,
            github_id=70_990_002,
            reviewer=bob,
            reviewer_login="bob",
            state="APPROVED",
            submitted_at=at("2026-11-03", 9),
        )
        vault_id = repo.id
    recomputed = secure_stack.cli("metrics", "recompute", "--org", "techcorp")
    assert recomputed.returncode == 0, recomputed.stderr
    return vault_id


def _get(stack, auth, path, **params):
    kind, token = auth
    return requests.get(
        f"{stack.url('metrics')}/api/v1/orgs/techcorp/metrics{path}",
        params=params,
        headers={"Authorization": f"Bearer {token}"} if kind == "bearer" else {},
        cookies={SESSION_COOKIE: token} if kind == "cookie" else {},
        timeout=30,
    )


def _json(response):
    assert response.status_code == 200, response.text
    return response.json()


def _per_login(rows, figure) -> dict[str, int]:
    totals = {}
    for row in rows:
        totals[row["user"]["login"]] = totals.get(row["user"]["login"], 0) + row[figure]
    return totals


def test_restricted_activity_is_for_admins_only_on_every_metrics_route(
    secure_stack, sessions, vault
):
    admin = ("cookie", sessions["bob"])  # ADMIN of techcorp
    below_admin = {
        "metrics:read key": ("bearer", secure_stack.keys["CI pipeline"]),
        "MEMBER session (the dashboard's cookie)": ("cookie", sessions["charlie"]),
    }
    week = {**RANGE, "granularity": "week"}
    everyone = _json(_get(secure_stack, admin, "/developers", **week))
    assert GHOST in _per_login(everyone, "commits")  # the admin sees the vault's developer
    only_vault = _json(_get(secure_stack, admin, "/developers", repository=vault, **week))
    assert _per_login(only_vault, "commits") == VAULT_COMMITS
    assert _json(_get(secure_stack, admin, "/developers", user=GHOST, **RANGE))
    admin_team = _json(_get(secure_stack, admin, "/team", **week))
    admin_daily = _json(_get(secure_stack, admin, "/daily", **RANGE))
    admin_cycle = _json(_get(secure_stack, admin, "/cycle-time", **RANGE))
    vault_commits = sum(VAULT_COMMITS.values())

    checked = 0
    for who, auth in below_admin.items():
        people = _json(_get(secure_stack, auth, "/developers", **week))
        commits = _per_login(people, "commits")
        assert GHOST not in commits, who  # works only in the vault: absent
        # bob works in both: only what he did outside the vault.
        assert commits["bob"] == _per_login(everyone, "commits")["bob"] - VAULT_COMMITS["bob"]
        reviews = _per_login(people, "reviews_given")
        assert reviews["bob"] == _per_login(everyone, "reviews_given")["bob"] - 1, who
        assert commits["alice"] == _per_login(everyone, "commits")["alice"], who

        exported = _get(secure_stack, auth, "/developers", format="csv", **week)
        assert exported.status_code == 200, exported.text
        logins = {r["user.login"] for r in csv.DictReader(io.StringIO(exported.text))}
        assert GHOST not in logins and "bob" in logins, who

        # Org-wide figures leave the vault out too (else the visible repositories' rows,
        # subtracted from them, would give it away).
        team = _json(_get(secure_stack, auth, "/team", **week))
        assert sum(w["commits"] for w in team) == sum(w["commits"] for w in admin_team) - (
            vault_commits
        ), who
        assert sum(w["prs_merged"] for w in team) == sum(w["prs_merged"] for w in admin_team) - 1
        daily = _json(_get(secure_stack, auth, "/daily", **RANGE))
        assert [d["date"] for d in daily] == [d["date"] for d in admin_daily], who
        assert sum(d["commits"] for d in daily) == sum(d["commits"] for d in admin_daily) - (
            vault_commits
        ), who
        cycle = _json(_get(secure_stack, auth, "/cycle-time", **RANGE))
        assert cycle["pull_requests"] == admin_cycle["pull_requests"] - 1, who
        repos = _json(_get(secure_stack, auth, "/repositories", **week))
        assert vault not in {r["repository"]["id"] for r in repos}, who

        # Naming the vault, or its developer, is "not found" on every route.
        for path, params in [
            ("/developers", {"repository": vault}),
            ("/developers", {"user": GHOST}),
            ("/team", {"repository": vault}),
            ("/daily", {"repository": vault}),
            ("/repositories", {"repository": vault}),
            ("/dora", {"repository": vault}),
            ("/cycle-time", {"repository": vault}),
        ]:
            response = _get(secure_stack, auth, path, **RANGE, **params)
            assert response.status_code == 404, (who, path, params, response.text)
            checked += 1
        checked += 7
    record(
        "17.9 RESTRICTED visibility",
        "developers, team, daily, cycle time, repositories and CSV below ADMIN (key and "
        "dashboard session): no figure of a RESTRICTED repository, its developer absent, "
        "repository=<it> a 404; an ADMIN sees all",
        passed=True,
        load=checked,
        bad_inputs=2 * 7,
    )
