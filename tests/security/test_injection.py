"""Item 8: SQL, JSON and path injection strings in every query (filter) and path parameter of
every GET route, enumerated from the OpenAPI specs, sent by an OWNER of techcorp only:
4xx or an ordinary answer, never a 5xx, never startup-inc's data. The requests go over one
keep-alive connection per service, the four services side by side."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
import requests

from tests.reliability.report import record
from tests.security.conftest import github_sign_in, specs
from tests.services.conftest import join

INJECTIONS = [
    "' OR '1'='1",
    "1; DROP TABLE events; --",
    '{"$ne": null}',
    "../../../etc/passwd",
    "startup-inc",
    "9" * 40,
]
OTHER_ORG_MARKERS = ("mobile-app", "Startup Inc")  # only startup-inc's data says these


def injected_requests(spec: dict) -> list[tuple[str, str, dict | None]]:
    """(parameter, path, query) for every injection string of every parameter of every
    organization GET route; the other path parameters are `techcorp` and 1."""
    planned = []
    for path, item in spec["paths"].items():
        if "get" not in item or "{org}" not in path:
            continue
        sample = re.sub(r"\{[^}]+\}", "1", path.replace("{org}", "techcorp"))
        for param in item["get"].get("parameters", []) + item.get("parameters", []):
            where = f"{path} {param['in']}:{param['name']}"
            for value in INJECTIONS:
                if param["in"] == "query":
                    planned.append((where, sample, {param["name"]: value}))
                elif param["in"] == "path":
                    injected = path.replace("{" + param["name"] + "}", quote(value, safe=""))
                    concrete = re.sub(r"\{[^}]+\}", "1", injected.replace("{org}", "techcorp"))
                    planned.append((where, concrete, None))
    return planned


@pytest.fixture(scope="module")
def techcorp_owner(secure_stack, sessions, fake_github_server) -> str:
    """The session of someone who signed in through (fake) GitHub and was made an OWNER of
    techcorp only: every techcorp route is theirs, no other org's data is. A session, not an
    API key: a key costs a bcrypt check per service each time its short cached
    answer (1 s here) runs out, which would be most of this test's time."""
    token = github_sign_in(secure_stack, fake_github_server, "injector", 9_900_002)[0]
    join(secure_stack, "techcorp", "OWNER", inviter=sessions["alice"], invitee=token)
    return token


def test_injection_strings_in_every_filter_and_path_parameter(secure_stack, techcorp_owner):
    token = techcorp_owner
    plans = {service: injected_requests(spec) for service, spec in specs(secure_stack).items()}

    def send_all(service: str) -> list[tuple]:
        # One keep-alive connection per service, one request at a time.
        with requests.Session() as session:  # closed after: no idle connection kept open
            session.headers["Authorization"] = f"Bearer {token}"
            problems = []
            for _where, path, params in plans[service]:
                response = session.get(secure_stack.url(service) + path, params=params, timeout=15)
                refused_caller = response.status_code in (401, 403)  # the test's own mistake
                other_org = any(marker in response.text for marker in OTHER_ORG_MARKERS)
                if response.status_code >= 500 or refused_caller or other_org:
                    problems.append(
                        (service, path, params, response.status_code, response.text[:200])
                    )
        return problems

    with ThreadPoolExecutor(len(plans)) as pool:  # the four services answer side by side
        problems = [problem for found in pool.map(send_all, plans) for problem in found]
    assert not problems, problems
    parameters = sum(len({where for where, _, _ in plan}) for plan in plans.values())
    tried = sum(len(plan) for plan in plans.values())
    assert (
        parameters > 150 and tried == len(INJECTIONS) * parameters
    )  # the specs really were enumerated
    record(
        "8 injection",
        f"SQL/JSON/path strings in every filter and path parameter ({parameters}): "
        "no 5xx, no other org's data",
        passed=True,
        bad_inputs=tried,
    )
