"""Issue 17, item 3: last-owner and plan-limit races. Two OWNERs demoting or removing each
other at once left 10 of 16 organizations with no OWNER, and 8 concurrent adds gave a FREE
organization 5 repositories and 6 members: each request checked the count, then changed it,
and concurrent ones all passed the same stale check.

Now the check and the change happen under the organization's row lock in one transaction (an
IMMEDIATE transaction on SQLite), and the actor's own role is read under it too. These tests
run the races against real gunicorn services (several processes and threads each) on
PostgreSQL with many concurrent requests."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from shared import crypto
from shared.models import (
    Organization,
    Repository,
    Role,
    Session,
    User,
    UserOrganization,
    utcnow,
)
from tests.fake_github import env_for
from tests.reliability.report import record

pytestmark = pytest.mark.postgres_only
ORGS = 16
CONCURRENCY = {"WEB_CONCURRENCY": 2, "GUNICORN_THREADS": 8}


def _session(user: User) -> str:
    token = crypto.new_session_token()
    Session.create(
        user=user,
        token_digest=crypto.token_digest(token),
        expires_at=utcnow() + dt.timedelta(days=1),
    )
    return token


def _person(login: str, github_id: int, **fields) -> User:
    return User.create(login=login, github_id=github_id, last_login_at=utcnow(), **fields)


def _all_at_once(calls) -> list[int]:
    """Send every (method, url, token, json) at once; the status codes, in order."""

    def one(call):
        method, url, token, body = call
        response = requests.request(
            method, url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(one, calls))


@pytest.fixture(scope="module")
def services(rstack, fake_github_server):
    rstack.start("accounts", **CONCURRENCY)
    rstack.start("activity", **CONCURRENCY, **env_for(fake_github_server))
    yield rstack
    for name in ("activity", "accounts"):
        rstack.stop(name)


def test_two_owners_demoting_or_removing_each_other_leave_an_owner(services):
    stack = services
    accounts = stack.url("accounts")
    calls, orgs = [], []
    with stack.db():
        for i in range(ORGS):
            org = Organization.create(name=f"Race {i}", slug=f"race-owners-{i}", plan="PRO")
            a, b = _person(f"race-a{i}", 9_170_000 + i), _person(f"race-b{i}", 9_171_000 + i)
            for person in (a, b):
                UserOrganization.create(user=person, organization=org, role=Role.OWNER)
            orgs.append(org.id)
            base = f"{accounts}/api/v1/orgs/{org.slug}/members"
            # Half the pairs demote each other, half remove each other.
            if i % 2:
                calls += [
                    ("patch", f"{base}/{b.id}", _session(a), {"role": "MEMBER"}),
                    ("patch", f"{base}/{a.id}", _session(b), {"role": "MEMBER"}),
                ]
            else:
                calls += [
                    ("delete", f"{base}/{b.id}", _session(a), None),
                    ("delete", f"{base}/{a.id}", _session(b), None),
                ]
    statuses = Counter(_all_at_once(calls))
    with stack.db():
        owners = Counter(
            org_id
            for (org_id,) in UserOrganization.select(UserOrganization.organization)
            .where(UserOrganization.organization.in_(orgs) & (UserOrganization.role == "OWNER"))
            .tuples()
        )
    orphaned = [org_id for org_id in orgs if owners[org_id] == 0]
    record(
        "17.3 last-owner and plan-limit races",
        f"{ORGS} organizations, their two OWNERs demoting or removing each other at once "
        f"({len(calls)} concurrent requests): every organization keeps an OWNER — "
        f"{dict(sorted(statuses.items()))}",
        passed=not orphaned,
        load=len(calls),
    )
    assert orphaned == [], f"{len(orphaned)} of {ORGS} organizations lost every OWNER"
    # Exactly one request of each pair won; the other found the last OWNER (409), or that
    # its sender was no longer allowed (403) or no longer a member at all (404).
    assert statuses[200] + statuses[204] == ORGS
    assert statuses[409] + statuses[403] + statuses[404] == ORGS


def test_concurrent_invitations_and_connects_stay_within_a_free_plan(services, fake_github_server):
    stack = services
    accounts, activity = stack.url("accounts"), stack.url("activity")
    github_token = "gho_race_owner_token"
    with stack.db():
        org = Organization.create(name="Race seats", slug="race-seats", plan="FREE")
        owner = _person("race-owner", 9_172_000, oauth_token_encrypted=crypto.encrypt(github_token))
        UserOrganization.create(user=owner, organization=org, role=Role.OWNER)
        invitees = [_person(f"race-invitee{i}", 9_173_000 + i) for i in range(8)]
        owner_session = _session(owner)
        invitee_sessions = {p.login: _session(p) for p in invitees}
    names = [f"race-seats/repo-{i}" for i in range(8)]
    for i, name in enumerate(names):
        fake_github_server.add_repository(name, 9_174_000 + i, readers=[github_token])

    # 8 invitations at once to a FREE organization of 1 member: 4 seats are left.
    invited = _all_at_once(
        [
            (
                "post",
                f"{accounts}/api/v1/orgs/race-seats/invitations",
                owner_session,
                {"login": p.login},
            )
            for p in invitees
        ]
    )
    # 8 repositories at once: the FREE plan allows 3.
    connected = _all_at_once(
        [
            (
                "post",
                f"{activity}/api/v1/orgs/race-seats/repositories",
                owner_session,
                {"full_name": n},
            )
            for n in names
        ]
    )
    pending = requests.get(
        f"{accounts}/api/v1/orgs/race-seats/invitations",
        params={"status": "PENDING"},
        headers={"Authorization": f"Bearer {owner_session}"},
        timeout=10,
    ).json()
    # Every invitee tries to accept at once (those without an invitation find none).
    accepts = []
    for invitation in pending:
        token = invitee_sessions[invitation["login"]]
        accepts.append(
            ("post", f"{accounts}/api/v1/me/invitations/{invitation['id']}/accept", token, None)
        )
    accepted = _all_at_once(accepts)
    with stack.db():
        members = UserOrganization.select().where(UserOrganization.organization == org).count()
        repositories = (
            Repository.select()
            .where((Repository.organization == org) & Repository.is_active)
            .count()
        )
    held = members <= 5 and repositories <= 3
    record(
        "17.3 last-owner and plan-limit races",
        f"a FREE organization: 8 concurrent invitations, 8 concurrent repository connects, "
        f"then the invitees accept at once: {members} members (limit 5), {repositories} "
        f"repositories (limit 3) — invitations {dict(Counter(invited))}, connects "
        f"{dict(Counter(connected))}",
        passed=held,
        load=len(invited) + len(connected) + len(accepted),
    )
    assert Counter(invited) == {201: 4, 402: 4}
    assert Counter(connected) == {201: 3, 402: 5}
    assert Counter(accepted) == {200: 4}
    assert (members, repositories) == (5, 3)
