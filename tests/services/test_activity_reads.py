"""The activity read API over real HTTP on the seeded data: filters, sorting, pagination,
RESTRICTED repositories and raw events for ADMIN+ only."""

import json

import requests

from tests.services.test_auth import new_key


def get(stack, key, path, **params):
    return requests.get(
        stack.url("activity") + "/api/v1/orgs/techcorp" + path,
        params=params,
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def test_lists_filter_sort_and_paginate(stack):
    key = stack.keys["CI pipeline"]  # techcorp, activity:read
    commits = get(stack, key, "/commits")
    assert commits.status_code == 200
    assert json.loads(commits.headers["X-Pagination"])["total"] == 7  # techcorp's seeded commits
    times = [c["authored_at"] for c in commits.json()]
    assert times == sorted(times, reverse=True)  # newest first
    by_alice = get(stack, key, "/commits", author="alice").json()
    assert len(by_alice) == 2 and {c["author_login"] for c in by_alice} == {"alice"}
    oldest_first = get(stack, key, "/commits", sort="authored_at").json()
    assert [c["sha"] for c in oldest_first] == [c["sha"] for c in reversed(commits.json())]
    day_two = get(stack, key, "/commits", **{"from": "2026-11-03T00:00:00Z"}).json()
    assert len(day_two) == 3

    merged = get(stack, key, "/pull-requests", state="merged").json()
    assert {p["number"] for p in merged} == {1} and len(merged) == 2
    assert all(p["merged_at"] and p["first_review_at"] for p in merged)
    repo_id = merged[0]["repository_id"]
    one_repo = get(stack, key, "/pull-requests", repository=repo_id).json()
    assert {p["repository_id"] for p in one_repo} == {repo_id}
    assert get(stack, key, "/issues", state="OPEN").status_code == 200

    wrong_filter = get(stack, key, "/commits", environment="production")
    assert (
        wrong_filter.status_code == 422 and "environment" in wrong_filter.json()["errors"]["query"]
    )
    wrong_sort = get(stack, key, "/commits", sort="message")
    assert wrong_sort.status_code == 422 and "sort" in wrong_sort.json()["errors"]["query"]
    page = get(stack, key, "/commits", page=2, page_size=5)
    assert len(page.json()) == 2


def test_raw_events_are_for_admins_and_restricted_repositories_hidden(stack):
    reader = stack.keys["CI pipeline"]
    assert get(stack, reader, "/events").status_code == 403
    admin = new_key(stack, "techcorp", "admin")
    assert get(stack, admin, "/events").status_code == 200

    writer = new_key(stack, "techcorp", "activity:write", "activity:read")
    repos = get(stack, reader, "/repositories").json()
    api = next(r for r in repos if r["full_name"] == "techcorp/api-server")
    url = stack.url("activity") + f"/api/v1/orgs/techcorp/repositories/{api['id']}"
    headers = {"Authorization": f"Bearer {writer}"}
    try:
        assert (
            requests.patch(
                url, json={"sensitivity": "RESTRICTED"}, headers=headers, timeout=10
            ).status_code
            == 200
        )
        visible = get(stack, reader, "/commits").json()
        assert api["id"] not in {c["repository_id"] for c in visible} and visible
        assert api["id"] in {c["repository_id"] for c in get(stack, admin, "/commits").json()}
    finally:
        requests.patch(url, json={"sensitivity": "CONFIDENTIAL"}, headers=headers, timeout=10)
