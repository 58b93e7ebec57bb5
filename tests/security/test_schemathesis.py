"""Item 6: schemathesis against every service's /openapi.json: each operation gets a bounded,
derandomized set of generated requests (schema-valid and schema-violating), sent with an
admin-scope API key of the seeded `techcorp` organization to the real gunicorn services.
Every answer must be no 5xx, carry a declared status code and match the declared schema.

The fuzzer creates, changes and deletes whatever the key may touch, so it runs on a stack of
its own (a fresh seeded database): the shared `secure_stack` stays as the seed made it.
Path parameters: `{org}` is always `techcorp` (a random slug would only ever meet the 404 of
an unknown organization); each id parameter is either generated or one of techcorp's real
rows, so the 200 answers (and their schemas) are exercised too. `DELETE /orgs/{org}` runs
last, as deleting the organization ends what the other operations can reach."""

from __future__ import annotations

from collections import Counter

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import connect
from tests.helpers import SERVICE_NAMES
from tests.reliability.report import record
from tests.security.conftest import admin_key, start_stack

EXAMPLES = {schemathesis.GenerationMode.POSITIVE: 10, schemathesis.GenerationMode.NEGATIVE: 5}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
FUZZER_KEY = "schemathesis fuzzer"
# id path parameter -> techcorp's rows it may name (not the fuzzer's own key: revoking it
# would turn every later request into a 401)
REAL_IDS_SQL = {
    "repo_id": "SELECT id FROM repositories WHERE organization_id = {org}",
    "user_id": "SELECT user_id FROM user_organizations WHERE organization_id = {org}",
    "key_id": f"SELECT id FROM api_keys WHERE organization_id = {{org}} AND name <> '{FUZZER_KEY}'",
    "rule_id": "SELECT id FROM notification_rules WHERE organization_id = {org}",
    "log_id": "SELECT id FROM notification_logs WHERE organization_id = {org}",
    "pr_id": "SELECT id FROM pull_requests WHERE organization_id = {org}",
    "org_id": "SELECT {org}",
}


@pytest.fixture(scope="module")
def fuzz_stack(database_factory, tmp_path_factory, fake_github_server):
    # Answers about the key cached for the whole run: no bcrypt check per service per second.
    stack = start_stack(
        database_factory, tmp_path_factory, fake_github_server, INTROSPECTION_CACHE_SECONDS=600
    )
    try:
        for name in SERVICE_NAMES:
            stack.start(name)
        stack.fuzzer_key = admin_key(stack, FUZZER_KEY)
        yield stack
    finally:
        for name in list(stack.processes):
            stack.stop(name)


def real_ids(stack) -> dict[str, list[int]]:
    database = connect(stack.database_url)
    try:
        org = int(
            database.execute_sql("SELECT id FROM organizations WHERE slug = 'techcorp'").fetchone()[
                0
            ]
        )
        return {
            name: sorted({row[0] for row in database.execute_sql(sql.format(org=org))})[:5]
            for name, sql in REAL_IDS_SQL.items()
        }
    finally:
        database.close()


def cases_for(operation, mode, ids: dict[str, list[int]]):
    """Generated cases with `{org}` fixed; id parameters generated or real, half and half."""
    names = [p.name for p in operation.path_parameters]
    fixed = {"org": "techcorp"} if "org" in names else {}
    generated = operation.as_strategy(generation_mode=mode, path_parameters=fixed or None)
    known = {n: ids[n] for n in names if ids.get(n)}
    if not known:
        return generated
    with_real_ids = st.fixed_dictionaries(
        {n: st.sampled_from(v) for n, v in known.items()}
    ).flatmap(
        lambda chosen: operation.as_strategy(
            generation_mode=mode, path_parameters={**fixed, **chosen}
        )
    )
    return st.one_of(generated, with_real_ids)


def refused_by_gunicorn(response) -> bool:
    """gunicorn itself refuses an over-long request line or header (its limit_request_line,
    limit_request_field_size) before the app runs: no answer of the API for its schema to
    declare. It answers in the app's JSON error shape (shared/web/gunicorn_errors.py), but
    without the request id the app puts on every answer of its own."""
    return response.status_code in (400, 414, 431) and "x-request-id" not in response.headers


def fuzz_operation(operation, base_url, session, ids, failures: list[str], statuses) -> int:
    """Send the operation's generated requests; list every disagreement in `failures`."""
    return sum(
        fuzz_mode(operation, mode, examples, base_url, session, ids, failures, statuses)
        for mode, examples in EXAMPLES.items()
    )


def fuzz_mode(operation, mode, examples, base_url, session, ids, failures, statuses) -> int:
    sent = 0

    @settings(
        max_examples=examples,
        derandomize=True,  # the same requests on every run
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: failures are listed
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases_for(operation, mode, ids))
    def run(case):
        nonlocal sent
        response = case.call(base_url=base_url, session=session, timeout=20)
        sent += 1
        statuses[response.status_code // 100 * 100] += 1
        if refused_by_gunicorn(response):
            return
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as failed:
            failures.append(
                f"{operation.label} [{mode.value}] -> {response.status_code}: "
                + "; ".join(sorted({f.title for f in failed.exceptions}))
                + f"\n    {case.as_curl_command()}\n    {response.text[:300]}"
            )

    try:
        run()
    except Unsatisfiable:
        # Nothing in the operation can be made invalid (no parameters, no body).
        assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
    return sent


def operations_in_order(schema):
    operations = [result.ok() for result in schema.get_all_operations()]
    # Deleting the organization last: nothing after it could reach its routes.
    return sorted(
        operations, key=lambda op: (op.method.upper(), op.path) == ("DELETE", "/api/v1/orgs/{org}")
    )


# accounts last: its `DELETE /orgs/{org}` is the stack's very last request.
@pytest.mark.parametrize("service", sorted(SERVICE_NAMES, key=lambda name: name == "accounts"))
def test_every_operation_answers_as_its_schema_declares(fuzz_stack, service):
    base_url = fuzz_stack.url(service)
    session = requests.Session()  # keep-alive: one connection for the whole run
    session.headers["Authorization"] = f"Bearer {fuzz_stack.fuzzer_key}"
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    ids = real_ids(fuzz_stack)
    failures: list[str] = []
    statuses = Counter()  # 200, 400, ... -> answers
    sent = operations = 0
    with session:  # closed after: no idle keep-alive connection delays the services' stop
        for operation in operations_in_order(schema):
            sent += fuzz_operation(operation, base_url, session, ids, failures, statuses)
            operations += 1
    assert operations >= 10 and sent >= operations * 3  # the spec really was fuzzed
    assert statuses[200] >= operations, statuses  # the key works: real answers, not only 4xx
    assert not failures, f"{len(failures)} of {sent} requests disagree:\n" + "\n".join(failures)
    record(
        "6 schemathesis",
        f"{service}: {operations} operations, no 5xx, every response as declared",
        passed=True,
        bad_inputs=sent,
        detail=", ".join(f"{n} x {code // 100}xx" for code, n in sorted(statuses.items())),
    )
