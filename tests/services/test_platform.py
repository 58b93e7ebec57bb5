"""What every service offers the same way: health, readiness, OpenAPI and /docs, metrics,
request ids and the JSON error format."""

import pytest
import requests
from openapi_spec_validator import validate

from tests.helpers import INTERNAL_TOKEN, SERVICE_NAMES

ORG_ROUTES = {
    "accounts": "/api/v1/orgs/{org}",
    "activity": "/api/v1/orgs/{org}/repositories",
    "metrics": "/api/v1/orgs/{org}/metrics/daily",
    "notifications": "/api/v1/orgs/{org}/notification-rules",
}

pytestmark = pytest.mark.parametrize("service", SERVICE_NAMES)


def test_healthz_and_readyz(stack, service):
    health = requests.get(stack.url(service) + "/healthz", timeout=5)
    assert health.status_code == 200 and health.json() == {"status": "ok", "service": service}
    ready = requests.get(stack.url(service) + "/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_openapi_is_valid_and_documents_the_api(stack, service):
    spec = requests.get(stack.url(service) + "/openapi.json", timeout=5).json()
    validate(spec)  # raises on an invalid OpenAPI 3 document
    assert spec["info"]["title"] == f"DevMetrics {service} service"
    assert ORG_ROUTES[service] in spec["paths"]
    assert "/internal/v1/messages" in spec["paths"]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_docs_page_and_its_assets_are_served_locally(stack, service):
    page = requests.get(stack.url(service) + "/docs", timeout=5)
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert "/docs/assets/swagger-ui-bundle.js" in page.text
    asset = requests.get(stack.url(service) + "/docs/assets/swagger-ui-bundle.js", timeout=5)
    assert asset.status_code == 200 and len(asset.content) > 100_000


def test_prometheus_metrics_count_requests_by_endpoint_and_status(stack, service):
    requests.get(stack.url(service) + "/healthz", timeout=5)
    text = requests.get(stack.url(service) + "/metrics", timeout=5).text
    assert (
        f'devmetrics_http_requests_total{{endpoint="/healthz",method="GET",'
        f'service="{service}",status="200"}}' in text
    )
    assert "devmetrics_http_request_duration_seconds_bucket" in text


def test_request_id_is_echoed_or_minted(stack, service):
    given = requests.get(
        stack.url(service) + "/healthz", headers={"X-Request-ID": "req-abc.123"}, timeout=5
    )
    assert given.headers["X-Request-ID"] == "req-abc.123"
    minted = requests.get(stack.url(service) + "/healthz", timeout=5).headers["X-Request-ID"]
    assert len(minted) == 32 and minted != "req-abc.123"
    hostile = requests.get(
        stack.url(service) + "/healthz", headers={"X-Request-ID": "x" * 500}, timeout=5
    )
    assert hostile.headers["X-Request-ID"] != "x" * 500


def test_errors_are_json_with_code_status_message_errors(stack, service):
    missing = requests.get(stack.url(service) + "/no/such/route", timeout=5)
    assert missing.status_code == 404
    assert set(missing.json()) == {"code", "status", "message", "errors"}
    wrong_method = requests.delete(stack.url(service) + "/healthz", timeout=5)
    assert wrong_method.status_code == 405 and wrong_method.json()["code"] == 405

    inbox = stack.url(service) + "/internal/v1/messages"
    auth = {"Authorization": f"Bearer {INTERNAL_TOKEN}"}
    unknown_field = requests.post(
        inbox,
        json={"id": "m1", "topic": "t", "payload": {}, "surprise": 1},
        headers=auth,
        timeout=5,
    )
    assert unknown_field.status_code == 422
    assert "surprise" in unknown_field.json()["errors"]["json"]
    missing_field = requests.post(inbox, json={"id": "m1", "payload": {}}, headers=auth, timeout=5)
    assert missing_field.status_code == 422
    assert "topic" in missing_field.json()["errors"]["json"]
    not_json = requests.post(
        inbox, data=b"{oops", headers={**auth, "Content-Type": "application/json"}, timeout=5
    )
    assert not_json.status_code in (400, 422)
    assert set(not_json.json()) == {"code", "status", "message", "errors"}


def test_what_gunicorn_refuses_before_the_app_is_json_too(stack, service):
    """gunicorn answers a request over its limits itself (gunicorn.conf.py): the same JSON
    error shape as the app's, naming the limit; just within them, the app answers."""
    url = stack.url(service) + ORG_ROUTES[service].format(org="techcorp")
    refused = [
        (requests.get(url, headers={"X-Padding": "a" * 8200}, timeout=5), 431, "8190 bytes"),
        (
            requests.get(url, headers={f"X-Extra-{i}": "1" for i in range(101)}, timeout=5),
            431,
            "more than 100 request headers",
        ),
        (requests.get(f"{stack.url(service)}/{'a' * 4100}", timeout=5), 414, "4094 bytes"),
    ]
    for response, status, named in refused:
        assert response.status_code == status, response.text
        assert response.headers["Content-Type"] == "application/json"
        body = response.json()
        assert set(body) == {"code", "status", "message", "errors"}, body
        assert body["code"] == status and named in body["message"], body
    within = requests.get(
        url,
        headers={"X-Padding": "a" * 8000, **{f"X-Extra-{i}": "1" for i in range(90)}},
        timeout=5,
    )
    assert within.status_code == 401 and "X-Request-ID" in within.headers  # the app's answer


def test_retry_after_is_on_refusals_only(stack, service):
    """`Retry-After` tells a refused caller when to come back: never on a 200 or another
    answer; the public API's answers say the caller's budget (X-RateLimit-*)."""
    url = stack.url(service) + ORG_ROUTES[service].format(org="techcorp")
    key = {"Authorization": f"Bearer {stack.keys['CI pipeline']}"}
    api = [requests.get(url, headers=key, timeout=5), requests.get(url, timeout=5)]
    others = [requests.get(stack.url(service) + "/healthz", timeout=5)]
    if service == "activity":  # activity:read
        api.append(requests.get(url, headers=key, params={"page_size": 1}, timeout=5))
        assert api[-1].status_code == 200
    for response in api + others:
        assert response.status_code not in (429, 503), response.text
        assert "Retry-After" not in response.headers, (response.status_code, response.url)
    for response in api:
        assert response.headers["X-RateLimit-Limit"] == "1000000"
        assert 0 <= int(response.headers["X-RateLimit-Remaining"]) < 1000000
        assert int(response.headers["X-RateLimit-Reset"]) > 0


def test_a_chunked_body_past_25_mb_is_a_413(stack, service):
    """A body sent chunked (no Content-Length: gunicorn decodes it) is held to the same 25 MB
    as any other: a 413 in the JSON error shape, not a 400 for a body cut short."""
    path = "/webhooks/github" if service == "activity" else "/internal/v1/messages"
    megabyte = b" " * (1024 * 1024)

    def chunks():
        yield b'{"zen": "x"}'
        for _ in range(25):
            yield megabyte

    response = requests.post(
        stack.url(service) + path,
        data=chunks(),  # a generator: requests sends it chunked
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {INTERNAL_TOKEN}",
            "X-GitHub-Event": "ping",
            "X-GitHub-Delivery": "chunked-413",
            "X-Hub-Signature-256": "sha256=" + "0" * 64,
        },
        timeout=60,
    )
    assert response.status_code == 413, response.text
    assert response.request.headers["Transfer-Encoding"] == "chunked"
    body = response.json()
    assert set(body) == {"code", "status", "message", "errors"} and body["code"] == 413
