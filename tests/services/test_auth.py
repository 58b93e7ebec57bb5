"""Bearer tokens on every service: resolved by accounts over real HTTP, checked by one
decorator (401 unauthenticated, 403 wrong scope, 404 another organization)."""

import json
import re
import time

import pytest
import requests

from tests.conftest import connect
from tests.helpers import INTERNAL_TOKEN, SERVICE_NAMES, wait_until
from tests.services.conftest import CACHE_SECONDS
from tests.services.test_platform import ORG_ROUTES

# Which scope each service's org route needs (the seed's techcorp key has the first two).
NEEDED_SCOPE = {
    "accounts": None,
    "activity": "activity:read",
    "metrics": "metrics:read",
    "notifications": "notifications:read",
}
KEY_LINE = re.compile(r"^(dm_\S+)$", re.M)


def call(stack, service, token=None, org="techcorp", headers=None):
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    url = stack.url(service) + ORG_ROUTES[service].format(org=org)
    return requests.get(url, headers=headers, timeout=10)


def new_key(stack, org, *scopes, extra=()):
    args = ["apikey", "create", "--org", org, "--name", f"test {time.time_ns()}"]
    for scope in scopes:
        args += ["--scope", scope]
    result = stack.cli(*args, *extra)
    assert result.returncode == 0, result.stderr
    return KEY_LINE.search(result.stdout).group(1)


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_missing_or_bad_token_is_401(stack, service):
    for token, headers in [
        (None, None),
        ("dm_nothere00000_xyz", None),
        ("garbage", None),
        (None, {"Authorization": "Basic abc"}),
    ]:
        response = call(stack, service, token, headers=headers)
        assert response.status_code == 401, (token, headers)
        assert response.json()["code"] == 401


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_key_made_by_the_cli_authenticates_on_every_service(stack, service):
    key = new_key(stack, "techcorp", "activity:read", "metrics:read", "notifications:read")
    response = call(stack, service, key)
    assert response.status_code == 200, response.text
    if service == "activity":
        names = {r["full_name"] for r in response.json()}
        assert names == {"techcorp/api-server", "techcorp/web-dashboard"}
        assert '"total": 2' in response.headers["X-Pagination"]


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_another_organizations_key_gets_404_not_403(stack, service):
    startup_key = stack.keys["Read-only dashboard"]
    response = call(stack, service, startup_key, org="techcorp")
    assert response.status_code == 404 and response.json()["message"] == "organization not found"
    # An org that does not exist looks exactly the same.
    assert call(stack, service, startup_key, org="no-such-org").json() == response.json()


@pytest.mark.parametrize("service", ["activity", "metrics", "notifications"])
def test_wrong_scope_is_403(stack, service):
    others = [
        s
        for s in ("activity:read", "metrics:read", "notifications:read")
        if s != NEEDED_SCOPE[service]
    ]
    key = new_key(stack, "techcorp", *others)
    response = call(stack, service, key)
    assert response.status_code == 403
    assert NEEDED_SCOPE[service] in response.json()["message"]


def test_revoked_key_stops_working_within_the_cache_ttl(stack):
    key = new_key(stack, "techcorp", "activity:read", "metrics:read", "notifications:read")
    assert all(call(stack, s, key).status_code == 200 for s in SERVICE_NAMES)
    prefix = key.split("_")[1]
    database = connect(stack.database_url)
    database.execute_sql(
        "UPDATE api_keys SET revoked_at = CURRENT_TIMESTAMP WHERE prefix = " + database.param,
        (prefix,),
    )
    database.close()
    revoked_at = time.monotonic()
    for service in SERVICE_NAMES:
        wait_until(
            lambda s=service: call(stack, s, key).status_code == 401,
            timeout=CACHE_SECONDS + 5,
            what=f"{service} to refuse the revoked key",
        )
    assert time.monotonic() - revoked_at <= CACHE_SECONDS + 5


def test_expired_key_is_401(stack):
    key = new_key(stack, "techcorp", "metrics:read", extra=("--expires-in-days", "1"))
    assert call(stack, "metrics", key).status_code == 200
    database = connect(stack.database_url)
    database.execute_sql(
        "UPDATE api_keys SET expires_at = '2020-01-01 00:00:00' WHERE prefix = " + database.param,
        (key.split("_")[1],),
    )
    database.close()
    wait_until(
        lambda: call(stack, "metrics", key).status_code == 401,
        timeout=CACHE_SECONDS + 5,
        what="the expired key to be refused",
    )


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_internal_routes_take_only_the_service_token(stack, service):
    url = stack.url(service) + "/internal/v1/messages"
    body = {"id": "x", "topic": "nope", "payload": {}}
    assert requests.post(url, json=body, timeout=5).status_code == 401
    api_key = stack.keys["CI pipeline"]
    as_key = requests.post(
        url, json=body, headers={"Authorization": f"Bearer {api_key}"}, timeout=5
    )
    assert as_key.status_code == 401
    as_service = requests.post(
        url, json=body, timeout=5, headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"}
    )
    assert as_service.status_code == 422  # authenticated; this topic is simply unknown
    assert "nope" in as_service.json()["message"]


def test_introspection_is_a_real_http_call_carrying_the_request_id(stack):
    key = new_key(stack, "techcorp", "activity:read")
    request_id = f"trace-{time.time_ns()}"
    response = call(stack, "activity", key, headers={"X-Request-ID": request_id})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == request_id
    # accounts logged the introspection call it received, under the same request id.
    wait_until(
        lambda: any(
            '"/internal/v1/auth/introspect"' in line and request_id in line
            for line in stack.log("accounts").splitlines()
        ),
        timeout=5,
        what="accounts' access log line",
    )


def test_lists_are_paginated_with_a_capped_page_size(stack):
    key = stack.keys["CI pipeline"]
    url = stack.url("activity") + "/api/v1/orgs/techcorp/repositories"
    headers = {"Authorization": f"Bearer {key}"}
    page = requests.get(url, params={"page": 2, "page_size": 1}, headers=headers, timeout=5)
    assert page.status_code == 200 and len(page.json()) == 1
    assert json.loads(page.headers["X-Pagination"])["total"] == 2
    too_big = requests.get(url, params={"page_size": 1000}, headers=headers, timeout=5)
    assert too_big.status_code == 422 and "page_size" in too_big.json()["errors"]["query"]
    bad_date = requests.get(
        stack.url("metrics") + "/api/v1/orgs/techcorp/metrics/daily",
        params={"from": "2026-13-01"},
        headers=headers,
        timeout=5,
    )
    assert bad_date.status_code == 422 and "from" in bad_date.json()["errors"]["query"]


def test_service_logs_are_json_lines_with_request_ids(stack):
    requests.get(
        stack.url("accounts") + "/healthz", headers={"X-Request-ID": "log-check-1"}, timeout=5
    )

    def complete_lines():  # the access line is written just after the response is sent
        return [
            json.loads(line)
            for line in stack.log("accounts").splitlines()[:-1]
            + [line for line in stack.log("accounts").splitlines()[-1:] if line.endswith("}")]
        ]

    wait_until(
        lambda: any(e.get("request_id") == "log-check-1" for e in complete_lines()),
        timeout=5,
        what="the access log line",
    )
    assert all("ts" in entry for entry in complete_lines())
