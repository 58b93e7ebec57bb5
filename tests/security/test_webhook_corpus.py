"""Item 7: a corpus of bad webhook deliveries, each signed with the right secret where a
signature matters (so the body itself is what is refused): every one is a 4xx, nothing is
stored, and the service keeps accepting real deliveries."""

from __future__ import annotations

import json
import random

import requests

from tests.reliability.report import record
from tests.security.conftest import count_events, real_payload, webhook_headers


def nested(depth: int) -> bytes:
    return b'{"repository": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"


def without(payload: dict, *path: str) -> dict:
    copy = json.loads(json.dumps(payload))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target.pop(path[-1])
    return copy


def corpus() -> list[tuple[str, bytes, dict]]:
    """(name, body, header overrides); bodies are signed unless the overrides say otherwise."""
    rng = random.Random(10)
    push = real_payload("push")
    real = json.dumps(push).encode()
    cases = [(f"random bytes {n}", rng.randbytes(rng.randint(1, 4096)), {}) for n in range(8)]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    no_id_or_name = without(without(push, "repository", "id"), "repository", "full_name")
    unknown_repo = {**push, "repository": {"id": 4242, "full_name": "x/y"}}
    cases += [
        ("empty body", b"", {}),
        ("truncated JSON", real[: len(real) // 2], {}),
        ("truncated JSON, one byte", real[:1], {}),
        ("deeply nested JSON", nested(100_000), {}),
        ("JSON array", b"[1, 2, 3]", {}),
        ("JSON string", b'"push"', {}),
        ("JSON null", b"null", {}),
        ("invalid UTF-8", b'{"repository": {"full_name": "\xff\xfe"}}', {}),
        ("lone surrogate", b'{"repository": {"full_name": "\\ud800"}}', {}),
        ("text/plain", real, {"Content-Type": "text/plain"}),
        ("application/xml", b"<push/>", {"Content-Type": "application/xml"}),
        ("no content type", real, {"Content-Type": ""}),
        ("form without payload", b"other=1", form),
        ("form with junk payload", b"payload=%7B", form),
        ("huge repository id", json.dumps({**push, "repository": {"id": 10**40}}).encode(), {}),
        ("negative repository id", json.dumps({**push, "repository": {"id": -1}}).encode(), {}),
        ("float repository id", json.dumps({**push, "repository": {"id": 1e308}}).encode(), {}),
        ("repository is a list", json.dumps({**push, "repository": []}).encode(), {}),
        ("no repository", json.dumps(without(push, "repository")).encode(), {}),
        ("repository without id or name", json.dumps(no_id_or_name).encode(), {}),
        ("unknown repository", json.dumps(unknown_repo).encode(), {}),
        ("huge header", real, {"X-Padding": "a" * 20_000}),
        ("huge delivery id", real, {"X-GitHub-Delivery": "d" * 5_000}),
        ("overlong delivery id", real, {"X-GitHub-Delivery": "d" * 129}),
        ("missing event header", real, {"X-GitHub-Event": ""}),
        ("missing signature", real, {"X-Hub-Signature-256": ""}),
        ("SHA-1 signature only", real, {"X-Hub-Signature-256": "", "X-Hub-Signature": "sha1=00"}),
        ("wrong signature", real, {"X-Hub-Signature-256": "sha256=" + "ab" * 32}),
        ("malformed signature", real, {"X-Hub-Signature-256": "sha256=zz"}),
        # Non-ASCII (latin-1) header bytes: the digest comparison must not raise on them.
        ("non-ASCII signature", real, {"X-Hub-Signature-256": "sha256=\u00e9" * 8}),
    ]  # fmt: skip
    return cases


def test_bad_deliveries_are_4xx_store_nothing_and_the_service_keeps_serving(secure_stack):
    url = secure_stack.url("activity") + "/webhooks/github"
    before = count_events(secure_stack)
    cases = corpus()
    for name, body, overrides in cases:
        headers = {**webhook_headers("push", body), **overrides}
        headers = {k: v for k, v in headers.items() if v != ""}
        try:
            response = requests.post(url, data=body, headers=headers, timeout=30)
        except requests.ConnectionError:  # a server may refuse a huge header by closing
            assert name.startswith("huge"), name
            continue
        assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
        assert requests.get(secure_stack.url("activity") + "/healthz", timeout=10).ok, name
    assert count_events(secure_stack) == before, "a bad delivery was stored"
    # Still serving real deliveries.
    for event, name in (("push", "payload.json"), ("pull_request", "opened.payload.json"),
                        ("issues", "opened.payload.json")):  # fmt: skip
        body = json.dumps(real_payload(event, name)).encode()
        response = requests.post(url, data=body, headers=webhook_headers(event, body), timeout=30)
        assert response.status_code == 202, (event, response.text)
    assert count_events(secure_stack) == before + 3
    record(
        "7 webhook corpus",
        "random/truncated/nested/huge/non-UTF-8/wrong-type/out-of-range/partial: 4xx, none stored",
        passed=True,
        bad_inputs=len(cases),
        rows_lost=0,
    )
