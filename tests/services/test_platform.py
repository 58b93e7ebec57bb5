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
