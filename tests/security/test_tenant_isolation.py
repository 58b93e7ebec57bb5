"""Item 9: every organization route of every service, enumerated from the OpenAPI specs (a new
endpoint is covered without touching this file), called with another organization's API key
and with the session of someone outside it: 404, no data. Then the role matrix: each seeded
role calls every route and gets exactly the rights its `require(...)` declares."""

from __future__ import annotations

import re

import pytest
import requests

from shared.models import Role
from shared.permissions import ROLE_RANK
from tests.reliability.report import record
from tests.security.conftest import ROLE_SEATS, github_sign_in, route_requirements, specs

METHODS = ("get", "post", "put", "patch", "delete")
MISSING_ID = 2_000_000_000  # no row has it: an allowed call touches nothing
UNKNOWN_BODY = {"security_suite_unknown_field": 1}  # refused (422) after authorization


def org_operations(stack):
    """(service, path template, METHOD, operation) for every route under an organization."""
    for service, spec in specs(stack).items():
        for path, item in spec["paths"].items():
            if "{org}" not in path:
                continue
            for method in METHODS:
                if method in item:
                    yield service, path, method.upper(), item[method]


def concrete(path: str, org: str) -> str:
    return re.sub(r"\{[^}]+\}", str(MISSING_ID), path.replace("{org}", org))


def call(stack, service, path, method, org, token, body=None):
    return requests.request(
        method,
        stack.url(service) + concrete(path, org),
        headers={"Authorization": f"Bearer {token}"},
        json=body,
        timeout=15,
    )


@pytest.fixture(scope="module")
def outsider(secure_stack, fake_github_server):
    """A person who signed in through (fake) GitHub and belongs to their personal org only."""
    return github_sign_in(secure_stack, fake_github_server, "outsider", 9_900_001)[0]


def test_every_org_route_hides_another_org_from_its_keys_and_people(secure_stack, outsider):
    other_key = secure_stack.keys["Read-only dashboard"]  # startup-inc's key
    tried = 0
    for service, path, method, _op in org_operations(secure_stack):
        for who, token in (("startup-inc key", other_key), ("outsider session", outsider)):
            response = call(secure_stack, service, path, method, "techcorp", token, UNKNOWN_BODY)
            assert response.status_code == 404, (service, method, path, who, response.text)
            assert response.json()["message"] == "organization not found"
            assert "api-server" not in response.text and "TechCorp" not in response.text
            tried += 1
    # Lists outside any organization show only the caller's own.
    for token in (other_key, outsider):
        orgs = requests.get(
            secure_stack.url("accounts") + "/api/v1/orgs",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert orgs.status_code == 200 and "techcorp" not in {o["slug"] for o in orgs.json()}
    # The dashboard page of another organization is a 404 too.
    page = requests.get(
        secure_stack.url("metrics") + "/dashboard/techcorp",
        cookies={"devmetrics_session": outsider},
        timeout=10,
    )
    assert page.status_code == 404
    assert tried >= 60  # the specs really were enumerated
    record(
        "9 tenant isolation",
        "every org route with another org's key and session: 404, no data",
        passed=True,
        load=tried,
    )


def test_role_matrix_each_role_gets_exactly_its_rights(secure_stack, sessions):
    requirements = route_requirements()
    checked = {"allowed": 0, "denied": 0}
    for service, path, method, op in org_operations(secure_stack):
        needed = requirements[(service, path, method)]["role"]
        safe_to_allow = method == "GET" or "requestBody" in op or path.count("{") > 1
        for role, (login, org) in ROLE_SEATS.items():
            allowed = needed == "None" or ROLE_RANK[Role(role)] >= ROLE_RANK[Role(needed)]
            if allowed and not safe_to_allow:
                continue  # e.g. DELETE /orgs/{org} as OWNER would really delete it
            body = UNKNOWN_BODY if "requestBody" in op else None
            response = call(secure_stack, service, path, method, org, sessions[login], body)
            where = (service, method, path, role, response.status_code, response.text[:200])
            if allowed:
                assert response.status_code not in (401, 403), where
                assert response.status_code < 500, where
                if response.status_code == 404:
                    assert response.json()["message"] != "organization not found", where
            else:
                assert response.status_code == 403, where
                assert f"role {needed}" in response.json()["message"], where
            checked["allowed" if allowed else "denied"] += 1
    assert checked["denied"] > 10 and checked["allowed"] > 40
    record(
        "9 role matrix",
        f"VIEWER/MEMBER/ADMIN/OWNER on every org route ({checked['allowed']} allowed, "
        f"{checked['denied']} denied, as declared)",
        passed=True,
        load=sum(checked.values()),
    )
