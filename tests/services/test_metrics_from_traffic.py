"""Three weeks of one team's GitHub traffic, delivered as GitHub sends it, through the real
`POST /webhooks/github`, processed by the events worker, carried by the real outbox to the
metrics inbox, recomputed incrementally by the recompute worker, and read back: the daily
rows and the developer table (`/metrics/developers`) against values worked out by hand
below (issue 18's "done when").

Every delivery is a real payload of tests/fixtures/github/webhooks (Codertocat/Hello-World)
with the fields GitHub would change edited: numbers, people, times, sizes. It holds what
the held-out histories found wrong:

- reviews and review comments after a merge, whose pull-request object is partial (no
  additions, deletions, changed_files) and newer than the last full one;
- `issues` and `issue_comment` deliveries about pull requests (milestoned, labeled, a
  comment on the conversation): the pull request's, never an issue;
- an e-mail first seen without a username (an unlinked contributor) and paired with one two
  weeks later, and an e-mail never paired;
- pings of an organization hook and of the GitHub App between the deliveries.

The story (all times UTC, 2026; repository Codertocat/Hello-World, default branch master):

    Mon 03-02  ana pushes a1 09:00, a2 10:00 to feat-a; opens PR #10 at 11:00
               (feat-a -> master, +120 -30, 4 files)
    Tue 03-03  bo approves #10 09:00; ana merges it 10:00; AFTER the merge bo reviews
               again ("commented") 12:00 and comments on a line 12:05; #10 is milestoned
               (an `issues` delivery) 13:00 and bo comments on its conversation 14:00
    Wed 03-04  production deployment created 10:00, success 10:10 (deploys #10);
               bo opens issue #20 at 15:00
    Thu 03-05  ana closes issue #20 09:00; pushed to master: c1 by cy@example.org 16:00,
               d1 by dee@example.com 17:00, neither with a username
    Mon 03-09  bo pushes b1 09:00 to feat-b; opens PR #11 10:00 (+40 -5, 2 files); it is
               labeled "enhancement" (an `issues` delivery with `pull_request`) 11:00
    Tue 03-10  ana requests changes on #11 09:00, approves it 15:00
    Wed 03-11  bo merges #11 09:00; AFTER the merge ana comments on a line 10:00
    Thu 03-12  production deployment created 09:00, success 09:30 (deploys #11);
               pushed to master: c2 by cy@example.org 11:00
    Mon 03-16  pushed to feat-c: d2 by dee@example.com WITH the username dee-gh 09:00
               (GitHub now pairs the e-mail: d1 of 03-05 is dee-gh's too); dee-gh opens
               PR #12 10:00 (+10 -2)
    Tue 03-17  bo reviews #12 ("commented") 09:00
    Wed 03-18  ana opens issue #21 09:00 (still open); ana comments on #12's conversation
               10:00

Pull request stages (seconds), from first commit, ready (= opened), first review by
someone else, merge and production deployment:

    #10: coding 09:00->11:00 7,200; pickup 03-02 11:00 -> 03-03 09:00 79,200; review
         09:00->10:00 3,600; deploy 03-03 10:00 -> 03-04 10:10 87,000; cycle 03-02 09:00
         -> 03-04 10:10 177,000
    #11: coding 3,600; pickup 03-09 10:00 -> 03-10 09:00 82,800; review -> 03-11 09:00
         86,400; deploy -> 03-12 09:30 88,200; cycle 03-09 09:00 -> 03-12 09:30 261,000
    #12: coding 3,600, pickup 82,800, not merged (no review, deploy or cycle time)
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
from dataclasses import dataclass

import pytest

from services.metrics import engine
from shared.models import (
    DeveloperMetric,
    Event,
    EventStatus,
    Issue,
    Organization,
    PullRequest,
    RepositoryStats,
    TeamMetric,
    User,
)
from tests.services.test_commit_authors import (  # the services, and their fixtures
    World,
    full_recompute_equals_incremental,
    viewer,  # noqa: F401
    world,  # noqa: F401
)
from tests.services.test_metrics_from_samples import (
    DEVELOPER_COUNTERS,
    TEAM_COUNTERS,
)
from tests.services.test_metrics_from_samples import (
    REPOSITORY_COUNTERS as SAMPLES_REPOSITORY_COUNTERS,
)
from tests.services.test_webhook_fast_path import APP_SECRET, ping_of
from tests.services.test_webhooks import SAMPLES, deliver, drain, sign

D = dt.date
REPOSITORY_ID = 186853002  # Codertocat/Hello-World in every sample used here
PEOPLE = {"ana-gh": 7001, "bo-gh": 7002, "dee-gh": 7004}


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


def utc(text: str) -> str:
    """'03-02 09:00' as GitHub writes a 2026 time."""
    return f"2026-{text[:5]}T{text[6:]}:00Z"


def account(login: str) -> dict:
    """The samples' user object (Codertocat), as another person's."""
    user = copy.deepcopy(sample("pull_request/opened.payload.json")["pull_request"]["user"])
    user.update(login=login, id=PEOPLE[login], node_id=f"U_{login}", type="User")
    return user


# Deliveries ----------------------------------------------------------------------------


def commit(seed: str, when: str, email: str, name: str, username: str | None = None) -> dict:
    """A push's commit (push/with-no-username-committer's), by another author: with
    `username` as GitHub sends a commit it matched to an account, without it otherwise."""
    sha = hashlib.sha1(seed.encode()).hexdigest()
    row = copy.deepcopy(sample("push/with-no-username-committer.payload.json")["commits"][0])
    person = {"name": name, "email": email} | ({"username": username} if username else {})
    row.update(
        id=sha,
        tree_id=hashlib.sha1(sha.encode()).hexdigest(),
        timestamp=utc(when),
        message=f"Commit {seed}",
        url=row["url"].replace(row["id"], sha),
        author=person,
        committer=dict(person),
    )
    return row


def push(branch: str, *commits: dict) -> tuple[str, dict]:
    payload = sample("push/with-no-username-committer.payload.json")
    payload.update(
        ref=f"refs/heads/{branch}",
        before="0" * 40,
        after=commits[-1]["id"],
        created=True,
        commits=list(commits),
        head_commit=commits[-1],
    )
    latest = max(dt.datetime.fromisoformat(c["timestamp"]) for c in commits)
    payload["repository"]["pushed_at"] = int(latest.timestamp()) + 60
    return "push", payload


PULL_REQUESTS = {  # number: (author, head branch, opened, additions, deletions, files)
    10: ("ana-gh", "feat-a", "03-02 11:00", 120, 30, 4),
    11: ("bo-gh", "feat-b", "03-09 10:00", 40, 5, 2),
    12: ("dee-gh", "feat-c", "03-16 10:00", 10, 2, 1),
}
MERGED = {10: "03-03 10:00", 11: "03-11 09:00"}
LABELED = {11: ("enhancement", "03-09 11:00")}  # number: (label, since)
MILESTONED = {10: ("v1.0", "03-03 13:00")}  # number: (milestone, since)


def labels_at(number: int, when: str) -> list[dict]:
    """The pull request's labels as of `when`, as GitHub's objects list them."""
    label = sample("issues/labeled.payload.json")["label"]
    name, since = LABELED.get(number, (None, "99"))
    return [{**label, "name": name}] if when >= since else []


def milestone_at(number: int, when: str) -> dict | None:
    milestone = sample("issues/milestoned.payload.json")["milestone"]
    title, since = MILESTONED.get(number, (None, "99"))
    return {**milestone, "title": title} if when >= since else None


def full_pull_request(number: int, updated: str, *, merged: str | None = None) -> dict:
    """The pull request as `pull_request` events carry it: every field, sizes included."""
    author, head, opened, additions, deletions, files = PULL_REQUESTS[number]
    pr = sample("pull_request/opened.payload.json")["pull_request"]
    pr.update(
        number=number,
        id=279147437 + number,
        node_id=f"PR_{number}",
        title=f"Change {number}",
        user=account(author),
        created_at=utc(opened),
        updated_at=utc(updated),
        draft=False,
        additions=additions,
        deletions=deletions,
        changed_files=files,
        commits=1,
        labels=labels_at(number, updated),
        milestone=milestone_at(number, updated),
    )
    pr["head"] = {**pr["head"], "ref": head, "label": f"Codertocat:{head}"}
    pr["base"] = {**pr["base"], "ref": "master"}
    if merged:
        pr.update(
            state="closed",
            merged=True,
            merged_at=utc(merged),
            closed_at=utc(merged),
            merged_by=account(author),
        )
    return pr


def partial_pull_request(number: int, updated: str) -> dict:
    """The pull request as review and review-comment deliveries carry it: GitHub's own
    object of those events (pull_request_review/submitted's), with this pull request's
    values for the fields it has, and none of those it lacks (sizes, merged, comments)."""
    shape = sample("pull_request_review/submitted.payload.json")["pull_request"]
    full = full_pull_request(number, updated, merged=MERGED.get(number))
    assert "additions" not in shape and "merged" not in shape
    return {key: full[key] for key in shape}


def opened(number: int) -> tuple[str, dict]:
    payload = sample("pull_request/opened.payload.json")
    payload.update(number=number, pull_request=full_pull_request(number, PULL_REQUESTS[number][2]))
    return "pull_request", payload


def merged(number: int) -> tuple[str, dict]:
    payload = sample("pull_request/closed.payload.json")
    pr = full_pull_request(number, MERGED[number], merged=MERGED[number])
    payload.update(number=number, pull_request=pr, sender=account(PULL_REQUESTS[number][0]))
    return "pull_request", payload


def review(number: int, review_id: int, login: str, state: str, when: str) -> tuple[str, dict]:
    payload = sample("pull_request_review/submitted.payload.json")
    payload["pull_request"] = partial_pull_request(number, when)
    payload["review"].update(id=review_id, user=account(login), state=state, submitted_at=utc(when))
    payload["sender"] = account(login)
    return "pull_request_review", payload


def line_comment(number: int, comment_id: int, login: str, when: str) -> tuple[str, dict]:
    payload = sample("pull_request_review_comment/created.payload.json")
    payload["pull_request"] = partial_pull_request(number, when)
    payload["comment"].update(
        id=comment_id, user=account(login), created_at=utc(when), updated_at=utc(when)
    )
    payload["sender"] = account(login)
    return "pull_request_review_comment", payload


def issue_of_pull_request(number: int, when: str, base: dict) -> dict:
    """The pull request as `issues` and `issue_comment` deliveries show it: an issue with
    a `pull_request` key (issues/milestoned's)."""
    author, _head, opened_at, *_ = PULL_REQUESTS[number]
    issue = copy.deepcopy(base)
    link = sample("issues/milestoned.payload.json")["issue"]["pull_request"]
    issue.update(
        number=number,
        id=444500000 + number,
        title=f"Change {number}",
        user=account(author),
        created_at=utc(opened_at),
        updated_at=utc(when),
        state="closed" if number in MERGED else "open",
        closed_at=utc(MERGED[number]) if number in MERGED else None,
        pull_request={k: v.replace("/2", f"/{number}") for k, v in link.items()},
        labels=labels_at(number, when),
        milestone=milestone_at(number, when),
    )
    return issue


def milestoned(number: int, when: str) -> tuple[str, dict]:
    payload = sample("issues/milestoned.payload.json")
    payload["issue"] = issue_of_pull_request(number, when, payload["issue"])
    return "issues", payload


def labeled(number: int, label: str, when: str) -> tuple[str, dict]:
    payload = sample("issues/labeled.payload.json")
    payload["label"] = {**payload["label"], "name": label}
    payload["issue"] = issue_of_pull_request(number, when, payload["issue"])
    assert payload["issue"]["labels"][0]["name"] == label
    return "issues", payload


def conversation_comment(number: int, comment_id: int, login: str, when: str):
    payload = sample("issue_comment/created.payload.json")
    payload["issue"] = issue_of_pull_request(number, when, payload["issue"])
    payload["comment"].update(
        id=comment_id, user=account(login), created_at=utc(when), updated_at=utc(when)
    )
    payload["sender"] = account(login)
    return "issue_comment", payload


def issue(number: int, login: str, created: str, *, closed: str | None = None, closer=None):
    payload = sample("issues/opened.payload.json")
    payload["issue"].update(
        number=number,
        id=444600000 + number,
        title=f"Problem {number}",
        user=account(login),
        created_at=utc(created),
        updated_at=utc(closed or created),
        state="closed" if closed else "open",
        closed_at=utc(closed) if closed else None,
    )
    payload["action"] = "closed" if closed else "opened"
    payload["sender"] = account(closer or login)
    return "issues", payload


def deployment(deployment_id: int, created: str, finished: str) -> list[tuple[str, dict]]:
    created_payload = sample("deployment/payload.json")
    created_payload["deployment"].update(
        id=deployment_id, environment="production", created_at=utc(created), updated_at=utc(created)
    )
    status = sample("deployment_status/payload.json")
    status["deployment"].update(
        id=deployment_id, environment="production", created_at=utc(created), updated_at=utc(created)
    )
    status["deployment_status"].update(
        id=deployment_id * 10,
        state="success",
        environment="production",
        created_at=utc(finished),
        updated_at=utc(finished),
    )
    return [("deployment", created_payload), ("deployment_status", status)]


ANA = ("ana@example.com", "Ana Example", "ana-gh")
BO = ("bo@example.com", "Bo Example", "bo-gh")
CY = ("cy@example.org", "Cy Outside")  # never shown with a username: unlinked for good
DEE = ("dee@example.com", "Dee Example")  # paired with dee-gh on 03-16

# Deliveries in the order GitHub sent them, a round (the workers catching up) per list.
WEEK_1 = [
    [
        push("feat-a", commit("a1", "03-02 09:00", *ANA), commit("a2", "03-02 10:00", *ANA)),
        opened(10),
    ],
    [
        review(10, 9001, "bo-gh", "approved", "03-03 09:00"),
        merged(10),
        # After the merge: partial pull-request objects with a newer updated_at.
        review(10, 9002, "bo-gh", "commented", "03-03 12:00"),
        line_comment(10, 9101, "bo-gh", "03-03 12:05"),
        milestoned(10, "03-03 13:00"),
        conversation_comment(10, 9201, "bo-gh", "03-03 14:00"),
    ],
    [
        *deployment(7701, "03-04 10:00", "03-04 10:10"),
        issue(20, "bo-gh", "03-04 15:00"),
        issue(20, "bo-gh", "03-04 15:00", closed="03-05 09:00", closer="ana-gh"),
        push("master", commit("c1", "03-05 16:00", *CY), commit("d1", "03-05 17:00", *DEE)),
    ],
]
WEEK_2 = [
    [
        push("feat-b", commit("b1", "03-09 09:00", *BO)),
        opened(11),
        labeled(11, "enhancement", "03-09 11:00"),
        review(11, 9003, "ana-gh", "changes_requested", "03-10 09:00"),
    ],
    [
        review(11, 9004, "ana-gh", "approved", "03-10 15:00"),
        merged(11),
        line_comment(11, 9102, "ana-gh", "03-11 10:00"),
        *deployment(7702, "03-12 09:00", "03-12 09:30"),
        push("master", commit("c2", "03-12 11:00", *CY)),
    ],
]
WEEK_3 = [
    [
        push("feat-c", commit("d2", "03-16 09:00", *DEE, "dee-gh")),
        opened(12),
        review(12, 9005, "bo-gh", "commented", "03-17 09:00"),
    ],
    [
        issue(21, "ana-gh", "03-18 09:00"),
        conversation_comment(12, 9202, "ana-gh", "03-18 10:00"),
    ],
]


# Hand-computed expectations ------------------------------------------------------------

STAGES_10 = dict(coding=7_200, pickup=79_200, review=3_600, deploy=87_000, cycle=177_000)
STAGES_11 = dict(coding=3_600, pickup=82_800, review=86_400, deploy=88_200, cycle=261_000)


def team_figures(stages: dict) -> dict:
    """A merge day's team figures: one merged pull request, so median = p90 = its value."""
    return {
        f"{stage}_time_{stat}_s": value
        for stage, value in stages.items()
        for stat in ("median", "p90")
    }


TEAM = {  # day -> non-zero counters and figures; every other counter is 0, figure None
    # a1, a2 (ana); PR #10 opened and still open at midnight
    D(2026, 3, 2): dict(commits=2, prs_opened=1, active_developers=1, open_prs=1),
    # #10 merged with its full size (the later partial objects carry none); bo's two reviews
    # (one after the merge) and one line comment; bo is active (a reviewer); ana's merge
    # is no activity of its own. Not counted: the milestone and the conversation comment.
    D(2026, 3, 3): dict(
        prs_merged=1,
        additions=120,
        deletions=30,
        reviews=2,
        review_comments=1,
        active_developers=1,
        **team_figures(STAGES_10),
    ),
    # the production deployment finishing 10:10 deploys #10: lead time = its cycle time;
    # issue #20 opened (opening an issue is not "active")
    D(2026, 3, 4): dict(
        deployments=1, issues_opened=1, lead_time_median_s=177_000, change_failure_rate=0.0
    ),
    # issue #20 closed; c1 (cy, unlinked) and d1 (dee: unlinked until 03-16, dee-gh's since)
    D(2026, 3, 5): dict(issues_closed=1, commits=2, active_developers=2),
    # b1 (bo); #11 opened (its label is no issue)
    D(2026, 3, 9): dict(commits=1, prs_opened=1, active_developers=1, open_prs=1),
    # ana's two reviews of #11
    D(2026, 3, 10): dict(reviews=2, active_developers=1, open_prs=1),
    # #11 merged; ana's line comment after it
    D(2026, 3, 11): dict(
        prs_merged=1, additions=40, deletions=5, review_comments=1, **team_figures(STAGES_11)
    ),
    # the deployment finishing 09:30 deploys #11; c2 (cy)
    D(2026, 3, 12): dict(
        deployments=1,
        lead_time_median_s=261_000,
        change_failure_rate=0.0,
        commits=1,
        active_developers=1,
    ),
    # d2 (dee-gh); #12 opened, open from now on
    D(2026, 3, 16): dict(commits=1, prs_opened=1, active_developers=1, open_prs=1),
    D(2026, 3, 17): dict(reviews=1, active_developers=1, open_prs=1),  # bo reviews #12
    D(2026, 3, 18): dict(issues_opened=1, open_prs=1),  # issue #21
}
FIRST_DAY, LAST_STORY_DAY = D(2026, 3, 2), D(2026, 3, 18)
TEAM_FIGURES = (
    *(
        f"{stage}_time_{stat}_s"
        for stage in ("cycle", "coding", "pickup", "review", "deploy")
        for stat in ("median", "p90")
    ),
    "lead_time_median_s",
    "time_to_restore_median_s",
    "change_failure_rate",
)


def developer_figures(stages: dict) -> dict:
    return {f"{s}_time_median_s": stages[s] for s in ("cycle", "coding", "pickup", "review")}


DEVELOPERS = {  # (login, day) -> non-zero counters and figures; nobody else has a row
    ("ana-gh", D(2026, 3, 2)): dict(commits=2, prs_opened=1),
    ("ana-gh", D(2026, 3, 3)): dict(
        prs_merged=1, additions=120, deletions=30, **developer_figures(STAGES_10)
    ),
    ("bo-gh", D(2026, 3, 3)): dict(reviews_given=2, prs_reviewed=1, review_comments=1),
    ("bo-gh", D(2026, 3, 4)): dict(issues_opened=1),
    ("ana-gh", D(2026, 3, 5)): dict(issues_closed=1),  # the sender of `closed`
    ("dee-gh", D(2026, 3, 5)): dict(commits=1),  # d1, by its e-mail's pairing on 03-16
    ("bo-gh", D(2026, 3, 9)): dict(commits=1, prs_opened=1),
    ("ana-gh", D(2026, 3, 10)): dict(reviews_given=2, prs_reviewed=1),
    ("bo-gh", D(2026, 3, 11)): dict(
        prs_merged=1, additions=40, deletions=5, **developer_figures(STAGES_11)
    ),
    ("ana-gh", D(2026, 3, 11)): dict(review_comments=1),
    ("dee-gh", D(2026, 3, 16)): dict(commits=1, prs_opened=1),
    ("bo-gh", D(2026, 3, 17)): dict(reviews_given=1, prs_reviewed=1),
    ("ana-gh", D(2026, 3, 18)): dict(issues_opened=1),
}
DEVELOPER_FIGURES = tuple(f"{s}_time_median_s" for s in ("cycle", "coding", "pickup", "review"))

REPOSITORY_DAYS = {  # day -> non-zero counters other than the levels
    D(2026, 3, 2): dict(commits=2, contributors=1, prs_opened=1),
    D(2026, 3, 3): dict(prs_merged=1, additions=120, deletions=30, reviews=2, review_comments=1),
    D(2026, 3, 4): dict(deployments=1, issues_opened=1),
    D(2026, 3, 5): dict(issues_closed=1, commits=2, contributors=2),  # cy and dee
    D(2026, 3, 9): dict(commits=1, contributors=1, prs_opened=1),
    D(2026, 3, 10): dict(reviews=2),
    D(2026, 3, 11): dict(prs_merged=1, additions=40, deletions=5, review_comments=1),
    D(2026, 3, 12): dict(deployments=1, commits=1, contributors=1),
    D(2026, 3, 16): dict(commits=1, contributors=1, prs_opened=1),
    D(2026, 3, 17): dict(reviews=1),
    D(2026, 3, 18): dict(issues_opened=1),
}
REPOSITORY_COUNTERS = tuple(  # the levels are checked on their own
    name for name in SAMPLES_REPOSITORY_COUNTERS if name not in ("open_prs", "open_issues")
)


def open_prs_on(day: D) -> int:
    """#10 open 03-02 only, #11 03-09 and 03-10, #12 from 03-16 on."""
    if day == D(2026, 3, 2) or D(2026, 3, 9) <= day <= D(2026, 3, 10):
        return 1
    return int(day >= D(2026, 3, 16))


def open_issues_on(day: D) -> int:
    """#20 open at the end of 03-04 only; #21 from 03-18 on; the pull requests never."""
    return int(day == D(2026, 3, 4) or day >= D(2026, 3, 18))


# The pipeline -------------------------------------------------------------------------


@dataclass
class Traffic(World):
    """The services of test_commit_authors' World, fed any GitHub event, not only pushes;
    `token` is a VIEWER's session."""

    token: str = ""

    def round(self, deliveries) -> None:
        """Deliver, process (the events worker), then deliver the outbox's messages to
        their services' real inboxes and run the queued recomputes."""
        for event, payload in deliveries:
            response = deliver(self.activity, event, json.dumps(payload).encode())
            assert response.status_code == 202, (event, response.json)
        drain()
        failed = Event.select().where(Event.status != EventStatus.PROCESSED)
        assert not failed.exists(), [(e.event_type, e.status, e.last_error) for e in failed]
        self.deliver_outbox_and_recompute()

    def developer_table(self) -> list[tuple]:
        """(day, login, unlinked, commits) of `/metrics/developers` by day."""
        rows = self.get(
            self.token,
            "developers",
            **{"from": FIRST_DAY, "to": LAST_STORY_DAY, "granularity": "day"},
        )
        return [(r["period_start"], r["user"]["login"], r["unlinked"], r["commits"]) for r in rows]


@pytest.fixture
def traffic(world, viewer, monkeypatch) -> Traffic:  # noqa: F811 - the imported fixtures
    """test_commit_authors' services and Hello-World repository, read by a VIEWER; the
    GitHub App's secret signs App and organization-hook pings (the repository's own secret
    signs its deliveries)."""
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", APP_SECRET)
    return Traffic(
        world.org, world.repo, world.accounts, world.activity, world.metrics, token=viewer
    )


def ping(traffic: Traffic, level: str) -> None:
    """A ping of an organization hook or of the App, signed with the App's secret:
    answered 200, never stored."""
    body, headers = ping_of(level)
    response = deliver(
        traffic.activity, "ping", body, headers=headers, signature=sign(body, APP_SECRET)
    )
    assert response.status_code == 200, response.json
    assert response.json["status"] == "pong"


def assert_hand_computed(org: Organization) -> None:
    today = engine.today()
    team = {row.date: row for row in TeamMetric.select().where(TeamMetric.organization == org)}
    # A row for every day from the first activity to today.
    assert sorted(team) == [FIRST_DAY + dt.timedelta(days=n) for n in range(len(team))]
    assert max(team) == today
    for day, row in team.items():
        expected = {**TEAM.get(day, {}), "open_prs": open_prs_on(day)}
        assert {name: getattr(row, name) for name in TEAM_COUNTERS} == {
            name: expected.get(name, 0) for name in TEAM_COUNTERS
        }, day
        assert {name: getattr(row, name) for name in TEAM_FIGURES} == {
            name: expected.get(name) for name in TEAM_FIGURES
        }, day

    developers = {
        (row.user.login, row.date): row
        for row in DeveloperMetric.select().join(User).where(DeveloperMetric.organization == org)
    }
    assert set(developers) == set(DEVELOPERS)
    for key, row in developers.items():
        assert {name: getattr(row, name) for name in DEVELOPER_COUNTERS} == {
            name: DEVELOPERS[key].get(name, 0) for name in DEVELOPER_COUNTERS
        }, key
        assert {name: getattr(row, name) for name in DEVELOPER_FIGURES} == {
            name: DEVELOPERS[key].get(name) for name in DEVELOPER_FIGURES
        }, key

    stats = {
        row.date: row for row in RepositoryStats.select().where(RepositoryStats.organization == org)
    }
    assert sorted(stats) == [FIRST_DAY + dt.timedelta(days=n) for n in range(len(stats))]
    assert max(stats) == today
    for day, row in stats.items():
        expected = REPOSITORY_DAYS.get(day, {})
        assert {name: getattr(row, name) for name in REPOSITORY_COUNTERS} == {
            name: expected.get(name, 0) for name in REPOSITORY_COUNTERS
        }, day
        assert (row.open_prs, row.open_issues) == (open_prs_on(day), open_issues_on(day)), day

    # The activity rows behind them: sizes from the last full object, the pull requests'
    # issue-shaped data on the pull requests, and only the two real issues as issues.
    sizes = {
        pr.number: (pr.additions, pr.deletions, pr.changed_files, pr.labels, pr.milestone)
        for pr in PullRequest.select().where(PullRequest.organization == org)
    }
    assert sizes == {
        10: (120, 30, 4, [], "v1.0"),
        11: (40, 5, 2, ["enhancement"], None),
        12: (10, 2, 1, [], None),
    }
    assert sorted(i.number for i in Issue.select().where(Issue.organization == org)) == [20, 21]
    stages = {
        pr.number: (pr.coding_s, pr.pickup_s, pr.review_s, pr.deploy_s, pr.cycle_s)
        for pr in PullRequest.select().where(PullRequest.organization == org)
    }
    assert stages == {
        10: tuple(STAGES_10.values()),
        11: tuple(STAGES_11.values()),
        12: (3_600, 82_800, None, None, None),
    }


def test_three_weeks_of_traffic_give_the_hand_computed_daily_rows(traffic, tx):
    for deliveries in WEEK_1:
        traffic.round(deliveries)
    # d1's e-mail is nobody's yet: an unlinked contributor, shown by its name part.
    assert ("2026-03-05", "dee", True, 1) in traffic.developer_table()

    ping(traffic, "Organization")
    traffic.round(WEEK_2[0])
    ping(traffic, "App")
    traffic.round(WEEK_2[1])
    for deliveries in WEEK_3:
        traffic.round(deliveries)

    # The pings were answered and nothing of them was stored.
    assert Event.select().where(Event.event_type == "ping").count() == 0
    assert_hand_computed(traffic.org)
    assert traffic.developer_table() == [
        ("2026-03-02", "ana-gh", False, 2),
        ("2026-03-03", "ana-gh", False, 0),
        ("2026-03-03", "bo-gh", False, 0),
        ("2026-03-04", "bo-gh", False, 0),
        ("2026-03-05", "ana-gh", False, 0),
        ("2026-03-05", "cy", True, 1),  # never paired: unlinked, flagged
        ("2026-03-05", "dee-gh", False, 1),  # paired on 03-16: hers since
        ("2026-03-09", "bo-gh", False, 1),
        ("2026-03-10", "ana-gh", False, 0),
        ("2026-03-11", "ana-gh", False, 0),
        ("2026-03-11", "bo-gh", False, 0),
        ("2026-03-12", "cy", True, 1),
        ("2026-03-16", "dee-gh", False, 1),
        ("2026-03-17", "bo-gh", False, 0),
        ("2026-03-18", "ana-gh", False, 0),
    ]

    # The incremental result is what a full recompute from the activity alone gives.
    assert full_recompute_equals_incremental(traffic.org)
