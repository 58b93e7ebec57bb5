"""Commit authors are attributed by what GitHub itself shows (issue 18 item 4).

Built from the real push payload push/with-no-username-committer (its commit's `author`
carries `username`, its `committer` the same person without one): commits with and without
a username, delivered through the real `POST /webhooks/github`, processed by the events
worker, their `activity.changed` messages delivered through the real outbox into the metrics
inbox, recomputed by the recompute worker, and read back through the real
`/metrics/developers` and `/metrics/repositories`. People's e-mails go through the real
sign-in (the fake GitHub's `/user/emails`) and `GET/PUT /api/v1/me`, whose messages reach
the activity service's inbox. All in-process, on the test's transaction.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field

import pytest

from services.accounts import logic as accounts_logic
from services.activity import backfill
from services.metrics import engine
from services.metrics.logic import RECOMPUTE_QUEUE, run_recompute_job
from shared import crypto
from shared.models import (
    AuditLog,
    AuthorEmail,
    DeveloperMetric,
    Event,
    EventStatus,
    Job,
    Organization,
    Repository,
    RepositoryStats,
    Role,
    TeamMetric,
    User,
    UserEmail,
    UserOrganization,
    utcnow,
)
from shared.web.auth import IntrospectionClient
from shared.worker import run_batch
from tests.fake_github import push_commit_as_api
from tests.helpers import INTERNAL_TOKEN
from tests.services.test_signin import sign_in
from tests.services.test_webhooks import SAMPLES, SECRET, deliver, drain

PUSH = json.loads((SAMPLES / "push/with-no-username-committer.payload.json").read_text())
D = dt.date
D1, D2, D3 = D(2026, 3, 2), D(2026, 3, 3), D(2026, 3, 4)
# GitHub's own e-mail for Dependabot's commits, and its login.
BOT_EMAIL, BOT = "49699333+dependabot[bot]@users.noreply.github.com", "dependabot[bot]"


def commit(seed: str, when: str, email: str, name: str, username: str | None = None) -> dict:
    """The sample's commit, by another author: with `username` as GitHub sends a commit it
    matched to an account (the sample's `author`), without it as one it did not (the
    sample's `committer`)."""
    sha = hashlib.sha1(seed.encode()).hexdigest()
    row = copy.deepcopy(PUSH["commits"][0])
    person = {"name": name, "email": email} | ({"username": username} if username else {})
    row.update(
        id=sha,
        timestamp=when,
        message=f"Commit {seed}",
        url=row["url"].replace(row["id"], sha),
        author=person,
        committer=dict(person),
    )
    return row


def push(*commits: dict) -> bytes:
    payload = copy.deepcopy(PUSH)
    payload["commits"] = list(commits)
    payload["head_commit"] = commits[-1]
    payload["after"] = commits[-1]["id"]
    latest = max(dt.datetime.fromisoformat(c["timestamp"]) for c in commits)
    payload["repository"]["pushed_at"] = int(latest.timestamp()) + 60
    return json.dumps(payload).encode()


@dataclass
class World:
    org: Organization
    repo: Repository
    accounts: object
    activity: object
    metrics: object
    messages: list = field(default_factory=list)  # (topic, payload) delivered by the outbox

    def deliver_outbox_and_recompute(self) -> None:
        """What the outbox worker and the recompute worker do, in-process: each message to
        its destination's real inbox endpoint (notifications are not part of this test),
        until nothing is left to deliver or recompute."""

        def to_inbox(job):
            message = job.payload
            client = {"metrics": self.metrics, "activity": self.activity}.get(
                message["destination"]
            )
            if client is None:
                return
            self.messages.append((message["topic"], message["payload"]))
            response = client.post(
                "/internal/v1/messages",
                json={
                    "id": message["id"],
                    "topic": message["topic"],
                    "payload": message["payload"],
                },
                headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"},
            )
            assert response.status_code == 200, response.json

        while run_batch("outbox", to_inbox, "authors-outbox", limit=50) + run_batch(
            RECOMPUTE_QUEUE, run_recompute_job, "authors-recompute", limit=10
        ):
            pass
        unfinished = Job.select().where(
            Job.queue.in_(["outbox", RECOMPUTE_QUEUE]) & (Job.status != "DONE")
        )
        assert not unfinished.exists(), [(j.queue, j.last_error) for j in unfinished]

    def round(self, *bodies: bytes) -> None:
        """Deliver pushes, process them (the events worker), then deliver and recompute."""
        for body in bodies:
            response = deliver(self.activity, "push", body)
            assert response.status_code == 202, response.json
        drain()
        failed = Event.select().where(Event.status != EventStatus.PROCESSED)
        assert not failed.exists(), [(e.event_type, e.last_error) for e in failed]
        self.deliver_outbox_and_recompute()

    def changed_days(self) -> set[D]:
        """The days activity.changed messages named so far."""
        return {
            D.fromisoformat(day)
            for topic, payload in self.messages
            if topic == "activity.changed"
            for day in payload["dates"]
        }

    def get(self, token: str, path: str, **params):
        response = self.metrics.get(
            f"/api/v1/orgs/{self.org.slug}/metrics/{path}",
            query_string=params,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.json
        return response.json


@pytest.fixture
def world(tx, accounts_client, monkeypatch):
    from services.activity import create_app as activity_app
    from services.metrics import create_app as metrics_app

    monkeypatch.delenv("GITHUB_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("INTERNAL_API_TOKEN", INTERNAL_TOKEN)
    org = Organization.create(name="Authors", slug="authors", plan="PRO")
    repo = Repository.create(
        organization=org,
        github_id=PUSH["repository"]["id"],
        full_name=PUSH["repository"]["full_name"],
        default_branch="master",
        webhook_secret_encrypted=crypto.encrypt(SECRET),
        verified_at=utcnow(),  # GitHub's API confirmed it
    )
    config = {"TESTING": True, "DATABASE": tx}
    metrics = metrics_app(config)
    # Tokens are resolved by the accounts service's own logic (in-process, no HTTP hop).
    metrics.extensions["devmetrics"]["resolve_token"] = IntrospectionClient(
        0, introspect=accounts_logic.introspect
    )
    return World(
        org, repo, accounts_client, activity_app(config).test_client(), metrics.test_client()
    )


@pytest.fixture
def viewer(world, fake_github) -> str:
    """A session of a VIEWER of the organization (who reads its metrics)."""
    signed = sign_in(world.accounts, fake_github, "viewer-code", "viewer-gh", 7100, "Viewer")
    assert signed.status_code == 200, signed.json
    user = User.get(User.github_id == 7100)
    UserOrganization.create(user=user, organization=world.org, role=Role.VIEWER)
    return signed.json["token"]


def commits_of(login: str) -> dict[D, int]:
    return {
        row.date: row.commits
        for row in DeveloperMetric.select()
        .join(User)
        .where(User.login == login)
        .order_by(DeveloperMetric.date)
    }


def team(day: D) -> TeamMetric:
    return TeamMetric.get(TeamMetric.date == day)


def contributors(day: D) -> int:
    return RepositoryStats.get(RepositoryStats.date == day).contributors


def developer_table(world: World, token: str) -> list[tuple]:
    """(day, login, user id, unlinked, commits) of `/metrics/developers` by day."""
    rows = world.get(token, "developers", **{"from": D1, "to": D3, "granularity": "day"})
    return [
        (r["period_start"], r["user"]["login"], r["user"]["id"], r["unlinked"], r["commits"])
        for r in rows
    ]


def dump() -> dict:
    def rows(query):
        return [{k: v for k, v in r.items() if k not in ("id", "computed_at")} for r in query]

    return {
        "team": rows(TeamMetric.select().order_by(TeamMetric.date).dicts()),
        "developers": rows(
            DeveloperMetric.select().order_by(DeveloperMetric.user, DeveloperMetric.date).dicts()
        ),
        "repositories": rows(RepositoryStats.select().order_by(RepositoryStats.date).dicts()),
    }


def full_recompute_equals_incremental(org: Organization) -> bool:
    incremental = dump()
    for model in (TeamMetric, DeveloperMetric, RepositoryStats):
        model.delete().execute()
    engine.recompute_full(org.id)
    return dump() == incremental


# An e-mail first seen unlinked, then paired by a later push ----------------------------


@pytest.mark.parametrize("batches", ["two batches", "one batch"])
def test_a_pairing_attributes_the_emails_earlier_commits_and_recomputes_their_days(
    world, viewer, batches
):
    first = push(
        # No username: GitHub matched the e-mails to no account (yet).
        commit("c1", f"{D1}T10:00:00-05:00", "dana@example.com", "Dana Example"),
        commit("c2", f"{D1}T11:00:00Z", "ext@example.org", "Ext Contributor"),
        commit("c3", f"{D1}T12:00:00Z", BOT_EMAIL, BOT),
    )
    second = push(
        # Now GitHub shows Dana's e-mail (in another case) with her username, and the bot's.
        commit("c4", f"{D3}T09:00:00Z", "Dana@Example.com", "Dana Example", "dana-gh"),
        commit("c5", f"{D3}T10:00:00Z", BOT_EMAIL, BOT, BOT),
    )
    if batches == "two batches":
        world.round(first)
        # Nobody GitHub named: three unlinked contributors, distinct people, flagged in the
        # developer table under their e-mail's name part.
        assert (team(D1).commits, team(D1).active_developers, contributors(D1)) == (3, 3, 3)
        assert DeveloperMetric.select().count() == 0
        assert developer_table(world, viewer) == [
            (str(D1), "49699333+dependabot[bot]", None, True, 1),
            (str(D1), "dana", None, True, 1),
            (str(D1), "ext", None, True, 1),
        ]
        world.messages.clear()
        world.round(second)
        # The pairing recomputed the earlier day (c4 and c5 alone are on D3).
        assert D1 in world.changed_days()
    else:
        world.round(first, second)  # one events batch: the pairing follows the earlier push

    dana = User.get(User.login == "dana-gh")
    assert commits_of("dana-gh") == {D1: 1, D3: 1}
    # D1: Dana and the still unlinked ext@; the bot's e-mail is a bot's now (bots count
    # nowhere, their commits neither).
    assert (team(D1).commits, team(D1).active_developers, contributors(D1)) == (2, 2, 2)
    assert (team(D3).commits, team(D3).active_developers, contributors(D3)) == (1, 1, 1)
    assert developer_table(world, viewer) == [
        (str(D1), "dana-gh", dana.id, False, 1),
        (str(D1), "ext", None, True, 1),
        (str(D3), "dana-gh", dana.id, False, 1),
    ]
    repositories = world.get(
        viewer, "repositories", **{"from": D1, "to": D3, "granularity": "week"}
    )
    assert [(r["commits"], r["contributors"]) for r in repositories] == [(3, 2)]  # Dana, ext@
    pairing = AuthorEmail.get(AuthorEmail.email == "dana@example.com")
    assert (pairing.github_login, pairing.paired_user_id, pairing.user_id) == (
        "dana-gh",
        dana.id,
        dana.id,
    )
    assert full_recompute_equals_incremental(world.org)


def test_backfilled_api_commits_pair_emails_the_same_way(world, fake_github):
    world.round(push(commit("c1", f"{D1}T10:00:00Z", "dana@example.com", "Dana Example")))
    assert commits_of("dana-gh") == {}
    # The REST API's commit (the backfill's default-branch list): GitHub's top-level
    # `author.login` with `commit.author.email`.
    api = push_commit_as_api(
        commit("c9", f"{D3}T09:00:00Z", "dana@example.com", "Dana Example", "dana-gh")
    )
    assert api["author"]["login"] == "dana-gh"
    assert api["commit"]["author"]["email"] == "dana@example.com"
    fake_github.rest = {
        "pulls": [],
        "issues": [],
        "commits": [api],
        "deployments": [],
        "reviews": {},
        "pr_commits": {},
        "statuses": {},
    }
    state = backfill.backfill(
        Repository.get_by_id(world.repo.id), token="gho_test", sleep=lambda seconds: None
    )
    assert state["state"] == "done", state
    world.deliver_outbox_and_recompute()
    assert commits_of("dana-gh") == {D1: 1, D3: 1}
    assert team(D1).active_developers == 1


# People's own e-mails: GET/PUT /api/v1/me -------------------------------------------------


def me(world: World, token: str):
    return world.accounts.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})


def put_emails(world: World, token: str, emails: list[str]):
    return world.accounts.put(
        "/api/v1/me", json={"emails": emails}, headers={"Authorization": f"Bearer {token}"}
    )


def test_people_see_and_correct_their_commit_emails(world, fake_github):
    world.round(
        push(
            commit("c1", f"{D1}T09:00:00Z", "dana@home.example", "Dana"),
            commit("c2", f"{D1}T10:00:00Z", "erin@example.com", "Erin", "erin-gh"),
            commit("c3", f"{D1}T11:00:00Z", "dana@work.example", "Dana", "dana-gh"),
            commit("c4", f"{D1}T12:00:00Z", "dana@work.example", "Dana"),
            commit("c5", f"{D1}T13:00:00Z", "shared@example.com", "Erin", "erin-gh"),
        )
    )
    # c1 unlinked; c3 and (by its e-mail's pairing) c4 Dana's; c2 and c5 Erin's.
    assert (commits_of("dana-gh"), commits_of("erin-gh")) == ({D1: 2}, {D1: 2})

    # Dana signs in: GitHub lists her addresses (her public one, two more verified, one not).
    signed = sign_in(
        world.accounts,
        fake_github,
        "dana-code",
        "dana-gh",
        7001,
        "Dana",
        email="dana@example.com",
        other_emails={
            "dana@home.example": True,
            "shared@example.com": True,  # GitHub paired it with Erin's username in commits
            "old@dana.example": False,
        },
    )
    assert signed.status_code == 200, signed.json
    token = signed.json["token"]
    world.deliver_outbox_and_recompute()
    assert commits_of("dana-gh") == {D1: 3}  # c1 too: an address GitHub verified for her

    def emails():
        response = me(world, token)
        assert response.status_code == 200, response.json
        return {
            e["email"]: (e["verified"], e["paired_by_github"], e["linked"])
            for e in response.json["emails"]
        }

    assert emails() == {
        "dana@example.com": (True, False, True),
        "dana@home.example": (True, False, True),
        "dana@work.example": (False, True, True),
        "shared@example.com": (True, False, False),  # Erin's by GitHub's pairing
    }
    assert {
        e["email"] for e in me(world, token).json["emails"] if e["paired_with_another_account"]
    } == {"shared@example.com"}
    audited = AuditLog.select().where(AuditLog.action == "user.emails_changed")

    # Erin's address is not Dana's to claim: GitHub never verified it for her.
    refused = put_emails(world, token, ["dana@example.com", "erin@example.com"])
    assert refused.status_code == 422, refused.json
    assert list(refused.json["errors"]["json"]["emails"]) == ["1"]
    # Nor one GitHub verified for her but paired with Erin's username in commits.
    taken = put_emails(world, token, ["dana@example.com", "shared@example.com"])
    assert taken.status_code == 409, taken.json
    assert list(taken.json["errors"]["json"]["emails"]) == ["1"]
    assert "shared@example.com" in taken.json["errors"]["json"]["emails"]["1"][0]
    assert not audited.exists() and commits_of("erin-gh") == {D1: 2}

    # She releases her home address and the work one GitHub paired with her: their commits
    # without a username of their own (c1, c4) become unlinked; c3 names her, so stays hers.
    released = put_emails(world, token, ["dana@example.com"])
    assert released.status_code == 200, released.json
    assert emails()["dana@home.example"] == (True, False, False)
    assert emails()["dana@work.example"] == (False, True, False)
    dana = User.get(User.login == "dana-gh")
    entries = [
        (e.organization_id, e.actor_user_id, e.metadata) for e in audited.order_by(AuditLog.id)
    ]
    change = {"linked": [], "released": ["dana@home.example", "dana@work.example"]}
    assert entries == [(None, dana.id, change), (world.org.id, dana.id, change)]
    world.deliver_outbox_and_recompute()
    assert commits_of("dana-gh") == {D1: 1}
    assert (team(D1).active_developers, contributors(D1)) == (4, 4)  # + two unlinked e-mails

    # And takes them back; an address she claims is hers in pushes still to come.
    restored = put_emails(
        world, token, ["dana@example.com", "dana@home.example", "dana@work.example"]
    )
    assert restored.status_code == 200, restored.json
    world.deliver_outbox_and_recompute()
    assert commits_of("dana-gh") == {D1: 3}
    world.round(push(commit("c6", f"{D2}T09:00:00Z", "dana@example.com", "Dana")))
    assert commits_of("dana-gh") == {D1: 3, D2: 1}
    assert commits_of("erin-gh") == {D1: 2}
    assert full_recompute_equals_incremental(world.org)


def test_me_emails_refuse_bad_input(world, fake_github):
    signed = sign_in(world.accounts, fake_github, "d-code", "dana-gh", 7001, "Dana")
    token = signed.json["token"]
    for body, field_name in (({}, "emails"), ({"emails": ["not-an-address"]}, "emails")):
        response = world.accounts.put(
            "/api/v1/me", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 422, response.json
        assert field_name in response.json["errors"]["json"]
    # Errors name the positions in the body (an address listed twice, in two cases).
    unverified = put_emails(world, token, ["dana@x.example", "Dana@X.example"])
    assert unverified.status_code == 422, unverified.json
    assert sorted(unverified.json["errors"]["json"]["emails"]) == ["0", "1"]
    assert UserEmail.select().count() == 0  # no public address, no other listed
