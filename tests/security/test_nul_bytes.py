"""Issue 17 item 10: a NUL character (PostgreSQL text cannot hold U+0000) in any query or path
parameter of any route of the four services' OpenAPI specs, in any field of any JSON body, or
in a header used as a value, is a 4xx naming where it was (422 for a parameter, a field or a
header; 404 for a path segment), never a 5xx. Sent by an OWNER of techcorp, so every request
reaches past authentication to the code that would have handed the value to the database."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
import requests

from tests.helpers import INTERNAL_TOKEN
from tests.reliability.report import record
from tests.security.conftest import github_sign_in, real_payload, specs, webhook_headers
from tests.services.conftest import join

NUL = "a\x00b"
METHODS = ("get", "post", "put", "patch", "delete")


def concrete(path: str) -> str:
    """A spec path with real values: techcorp for the organization, 1 for the rest."""
    return re.sub(r"\{[^}]+\}", "1", path.replace("{org}", "techcorp"))


def parameter_probes(spec: dict) -> list[tuple[str, str, str, str, str, dict | None]]:
    """(method, where, name, kind, url path, query) with a NUL in one parameter each, for
    every query and path parameter of every route and method of a spec."""
    probes = []
    for path, item in spec["paths"].items():
        for method in METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            for param in item.get("parameters", []) + operation.get("parameters", []):
                name, kind = param["name"], param["in"]
                where = f"{method.upper()} {path} {kind}:{name}"
                if kind == "query":
                    probes.append((method, where, name, kind, concrete(path), {name: NUL}))
                elif kind == "path":
                    injected = path.replace("{" + name + "}", quote(NUL, safe=""))
                    probes.append((method, where, name, kind, concrete(injected), None))
    return probes


def body_probes(spec: dict) -> list[tuple[str, str, str, str, dict]]:
    """(method, where, field, url path, body) with a NUL in one field each, for every field
    of every JSON request body of a spec."""
    schemas = spec.get("components", {}).get("schemas", {})
    probes = []
    for path, item in spec["paths"].items():
        for method in METHODS:
            operation = item.get(method) or {}
            content = operation.get("requestBody", {}).get("content", {})
            schema = content.get("application/json", {}).get("schema")
            if not schema:
                continue
            if "$ref" in schema:
                schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
            for field in schema.get("properties", {}):
                if schema["properties"][field].get("readOnly"):
                    continue
                where = f"{method.upper()} {path} json:{field}"
                probes.append((method, where, field, concrete(path), {field: NUL}))
    return probes


@pytest.fixture(scope="module")
def nul_owner(secure_stack, sessions, fake_github_server) -> str:
    """A session of an OWNER of techcorp only (see test_injection.py's techcorp_owner)."""
    token = github_sign_in(secure_stack, fake_github_server, "nul-prober", 9_900_010)[0]
    join(secure_stack, "techcorp", "OWNER", inviter=sessions["alice"], invitee=token)
    return token


def named_in(body: dict, location: str, name: str) -> bool:
    return name in (body.get("errors") or {}).get(location, {})


def test_nul_in_every_parameter_and_body_field_is_a_4xx_naming_it(secure_stack, nul_owner):
    all_specs = specs(secure_stack)
    parameters = {service: parameter_probes(spec) for service, spec in all_specs.items()}
    bodies = {service: body_probes(spec) for service, spec in all_specs.items()}

    def send_all(service: str) -> tuple[list, int]:
        problems, sent = [], 0
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {nul_owner}"
            base = secure_stack.url(service)
            for method, where, name, kind, path, query in parameters[service]:
                response = session.request(method, base + path, params=query, timeout=15)
                sent += 1
                if kind == "query":
                    ok = response.status_code == 422 and named_in(response.json(), "query", name)
                else:
                    ok = response.status_code == 404
                if not ok:
                    problems.append((where, response.status_code, response.text[:200]))
            for method, where, field, path, body in bodies[service]:
                internal = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
                headers = internal if path.startswith("/internal/") else {}
                response = session.request(
                    method, base + path, json=body, headers=headers, timeout=15
                )
                sent += 1
                ok = response.status_code == 422 and named_in(response.json(), "json", field)
                if not ok:
                    problems.append((where, response.status_code, response.text[:200]))
        return problems, sent

    with ThreadPoolExecutor(len(all_specs)) as pool:
        results = list(pool.map(send_all, all_specs))
    problems = [problem for found, _ in results for problem in found]
    sent = sum(count for _, count in results)
    assert not problems, f"{len(problems)} of {sent} probes: {problems}"
    n_parameters = sum(len(p) for p in parameters.values())
    n_fields = sum(len(b) for b in bodies.values())
    assert n_parameters > 150 and n_fields > 20  # the specs really were walked
    record(
        "17.10 NUL bytes",
        f"NUL in every query/path parameter ({n_parameters}) and JSON body field "
        f"({n_fields}) of the four specs: 422 naming it, 404 for a path, never 5xx",
        passed=True,
        bad_inputs=sent,
    )


HEADER_PROBES = [
    # (service, method, path, header): headers the services store or look up as values.
    ("activity", "post", "/webhooks/github", "X-GitHub-Delivery"),
    ("activity", "post", "/webhooks/github", "X-GitHub-Event"),
    ("activity", "post", "/webhooks/github", "X-GitHub-Hook-ID"),
    ("accounts", "get", "/api/v1/auth/login-link/{link}", "User-Agent"),
    ("accounts", "get", "/api/v1/orgs/techcorp/members", "Authorization"),
    ("metrics", "get", "/api/v1/orgs/techcorp/metrics/team", "Authorization"),
]


def header_request(service: str, method: str, path: str, header: str, link: str) -> dict:
    body = json.dumps(real_payload("push")).encode()
    headers = webhook_headers("push", body) if path == "/webhooks/github" else {}
    headers[header] = f"dm_{'a' * 12}_se\x00cret" if header == "Authorization" else NUL
    return {
        "method": method,
        "path": path.format(link=link),
        "headers": headers,
        "data": body if method == "post" else None,
    }


def test_nul_in_a_header_is_refused_by_gunicorn_before_any_service(secure_stack):
    """On gunicorn (how the services run) such a request never reaches the app: 400."""
    link = secure_stack.cli("login-link", "--user", "bob").stdout.strip().split("/")[-1]
    link = link.split("?")[0]
    for service, method, path, header in HEADER_PROBES:
        probe = header_request(service, method, path, header, link)
        response = requests.request(
            probe["method"],
            secure_stack.url(service) + probe["path"],
            headers=probe["headers"],
            data=probe["data"],
            allow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 400, (header, response.status_code, response.text)
    # The refusal spent nothing: the link still signs in.
    link_url = secure_stack.url("accounts") + "/api/v1/auth/login-link/" + link
    assert requests.get(link_url, allow_redirects=False, timeout=10).status_code == 303


def test_nul_in_a_header_is_a_422_naming_it_in_the_apps_themselves(seeded):
    """Under a WSGI server that lets it through, each app (and the activity service's
    webhook fast path, and its Flask view behind a cookie) refuses it itself, naming it."""
    import services.accounts
    import services.activity
    import services.metrics
    from devmetrics.cli.login_link import create_login_link
    from shared.models import User

    clients = {
        name: module.create_app({"TESTING": True, "DATABASE": seeded}).test_client()
        for name, module in (
            ("accounts", services.accounts),
            ("activity", services.activity),
            ("metrics", services.metrics),
        )
    }
    link = create_login_link(User.get(User.login == "bob"))
    sent = 0
    for service, method, path, header in HEADER_PROBES:
        probe = header_request(service, method, path, header, link)
        for cookie in ({}, {"Cookie": "other=1"}) if service == "activity" else ({},):
            response = clients[service].open(
                probe["path"],
                method=probe["method"].upper(),
                headers={**probe["headers"], **cookie},
                data=probe["data"],
            )
            sent += 1
            assert response.status_code == 422, (header, cookie, response.text)
            named = {k.lower(): v for k, v in response.json["errors"]["headers"].items()}
            assert named == {header.lower(): ["contains a NUL character"]}, header
    assert clients["accounts"].get("/api/v1/auth/login-link/" + link).status_code == 303
    record(
        "17.10 NUL bytes",
        "NUL in headers used as values (webhook ids on the fast path and the view, "
        "User-Agent, bearer token): 400 from gunicorn; 422 naming it from the apps",
        passed=True,
        bad_inputs=sent + len(HEADER_PROBES),
    )
