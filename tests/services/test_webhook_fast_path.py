"""The WSGI fast path of `POST /webhooks/github` (services/activity/webhook_wsgi.py) answers
exactly what the Flask view answers: each case goes through an app with the fast path and
through one without it (WEBHOOK_FAST_PATH=False), on the same database, and the status,
body and headers must match (request ids and event ids aside, which differ by nature)."""

import io
import json
import uuid
from urllib.parse import quote_plus

import peewee as pw
import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from services.activity import logic
from services.activity.webhook_wsgi import WebhookFastPath
from shared import crypto
from shared.models import Event, Organization, Repository, utcnow
from shared.observability import REQUESTS
from tests.helpers import WEBHOOK_SAMPLES
from tests.services.test_webhooks import sign

SAMPLES = WEBHOOK_SAMPLES
PUSH = (SAMPLES / "push" / "payload.json").read_bytes()
PING = (SAMPLES / "ping" / "payload.json").read_bytes()
GITHUB_ID = json.loads(PUSH)["repository"]["id"]
FAILURE_BUDGET = 2
FORM_PING = b"payload=" + quote_plus(PING).encode()  # GitHub's form-encoded ping
MAX_BODY = max(len(PUSH), len(FORM_PING)) + 100  # MAX_CONTENT_LENGTH of both apps


@pytest.fixture
def apps(tx, monkeypatch):
    from services.activity import create_app

    monkeypatch.delenv("GITHUB_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("RATE_LIMIT_WEBHOOK_FAILURES", f"{FAILURE_BUDGET} per hour")
    org = Organization.create(name="Fast", slug="fast", plan="PRO")
    for sample in (PUSH, PING):  # two repositories of the samples
        repository = json.loads(sample)["repository"]
        Repository.create(
            organization=org,
            github_id=repository["id"],
            full_name=repository["full_name"],
            webhook_secret_encrypted=crypto.encrypt("fast-secret"),
            verified_at=utcnow(),  # GitHub's API confirmed it
        )
    config = {"TESTING": True, "DATABASE": tx, "MAX_CONTENT_LENGTH": MAX_BODY}
    fast = create_app(config)
    plain = create_app({**config, "WEBHOOK_FAST_PATH": False})
    assert isinstance(fast.wsgi_app, WebhookFastPath)
    assert not isinstance(plain.wsgi_app, WebhookFastPath)
    return fast.test_client(), plain.test_client()


def post(client, body, *, event="push", delivery=None, secret="fast-secret", **headers):
    all_headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "99",
        "Content-Type": "application/json",
        "X-Hub-Signature-256": sign(body, secret),
    }
    all_headers.update(headers)
    return client.post(
        "/webhooks/github", data=body, headers={k: v for k, v in all_headers.items() if v}
    )


def answer(response, *volatile):
    """Status, parsed body (volatile keys masked) and headers (the request id masked)."""
    body = response.get_json()
    for key in volatile:
        assert key in body
        body[key] = "<varies>"
    headers = {k: v for k, v in response.headers.items() if k != "X-Request-ID"}
    return response.status_code, body, headers, response.data.endswith(b"\n")


def both(apps, *args, **kwargs):
    fast, plain = apps
    return post(fast, *args, **kwargs), post(plain, *args, **kwargs)


CASES = {  # name: (request, expected status)
    "ping": (dict(body=PING, event="ping"), 200),
    "bad signature": (dict(body=PUSH, secret="not-the-secret"), 401),
    "missing signature": (dict(body=PUSH, **{"X-Hub-Signature-256": ""}), 401),
    "unknown repository": (dict(body=PUSH.replace(str(GITHUB_ID).encode(), b"999999999")), 404),
    "malformed body": (dict(body=b'{"repository": {"id": 1'), 400),
    "wrong content type": (dict(body=PUSH, **{"Content-Type": "text/plain"}), 400),
    "missing event header": (dict(body=PUSH, **{"X-GitHub-Event": ""}), 400),
    "too large": (dict(body=PUSH.ljust(MAX_BODY + 1)), 413),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_fast_path_answers_what_the_flask_view_answers(apps, case):
    request, status = CASES[case]
    fast, plain = both(apps, **request)
    assert fast.status_code == status, fast.get_json()
    assert answer(fast) == answer(plain)


def test_accepted_and_duplicate_deliveries_answer_alike(apps):
    fast, plain = apps
    first_fast, first_plain = post(fast, PUSH), post(plain, PUSH)
    assert first_fast.status_code == 202
    assert answer(first_fast, "id", "delivery") == answer(first_plain, "id", "delivery")
    stored = Event.get_by_id(first_fast.get_json()["id"])
    assert stored.delivery_id == first_fast.get_json()["delivery"]

    delivery = first_plain.get_json()["delivery"]  # redelivered through each path
    again_fast, again_plain = (
        post(fast, PUSH, delivery=delivery),
        post(plain, PUSH, delivery=delivery),
    )
    assert again_fast.get_json() == {"status": "duplicate", "delivery": delivery}
    assert answer(again_fast) == answer(again_plain)


def test_a_well_formed_request_id_is_kept_and_a_bad_one_replaced(apps):
    fast, plain = apps
    for client in apps:
        kept = post(client, PING, event="ping", **{"X-Request-ID": "abc-123"})
        assert kept.headers["X-Request-ID"] == "abc-123"
        replaced = post(client, PING, event="ping", **{"X-Request-ID": "bad id!"})
        assert len(replaced.headers["X-Request-ID"]) == 32
    minted = post(fast, PING, event="ping")
    assert len(minted.headers["X-Request-ID"]) == 32


@pytest.mark.parametrize(
    "error, status",
    [
        (pw.OperationalError("server closed the connection"), 503),
        (pw.DataError("invalid byte sequence"), 422),
        (pw.IntegrityError("duplicate key"), 409),
        (OverflowError("int too large"), 422),
    ],
)
def test_database_errors_map_to_the_same_answers(apps, monkeypatch, error, status):
    def failing(raw, content_type):
        raise error

    monkeypatch.setattr(logic, "parse_body", failing)
    fast, plain = both(apps, PUSH)
    assert fast.status_code == status
    assert answer(fast) == answer(plain)
    if status == 503:
        assert fast.headers["Retry-After"] == "1"


def test_signature_failures_are_limited_alike_and_a_valid_delivery_never_is(apps):
    fast, plain = apps
    for _ in range(FAILURE_BUDGET):
        refused_fast, refused_plain = both(apps, PUSH, secret="wrong")
        assert refused_fast.status_code == 401
        assert answer(refused_fast) == answer(refused_plain)
    throttled_fast, throttled_plain = both(apps, PUSH, secret="wrong")
    assert throttled_fast.status_code == 429
    assert int(throttled_fast.headers["Retry-After"]) >= 1
    # The retry delay (in the message and header) may differ by a second between the two.
    status, body, headers, _ = answer(throttled_fast, "message")
    assert (status, body, headers.keys()) == (
        answer(throttled_plain, "message")[:2] + (answer(throttled_plain)[2].keys(),)
    )
    assert post(fast, PUSH).status_code == 202  # same IP, valid signature: accepted


def test_the_fast_path_records_request_metrics(apps):
    fast, _ = apps

    def count(status):
        return REQUESTS.labels("activity", "POST", "/webhooks/github", status)._value.get()

    before_ok, before_refused = count("202"), count("401")
    post(fast, PUSH)
    post(fast, PUSH, secret="wrong")
    assert count("202") == before_ok + 1
    assert count("401") == before_refused + 1


def test_other_requests_pass_through_to_flask(apps, monkeypatch):
    fast, _ = apps

    def not_expected(self, environ):
        raise AssertionError("the fast path answered a request meant for Flask")

    monkeypatch.setattr(WebhookFastPath, "_answer", not_expected)
    assert fast.get("/webhooks/github").status_code == 405
    assert fast.post("/webhooks/github/", data=b"{}").status_code in (308, 404)
    # A cookie-carrying request goes through Flask's CSRF check as before.
    fast.set_cookie("theme", "dark")
    assert post(fast, PING, event="ping").status_code == 200


def test_the_connection_goes_back_to_the_pool_after_each_delivery(migrated_database):
    from services.activity import create_app

    # Outside a test transaction, as in production: the request opens its own connection.
    client = create_app({"TESTING": True, "DATABASE": migrated_database}).test_client()
    unknown = PUSH.replace(str(GITHUB_ID).encode(), b"999999999")
    assert post(client, unknown).status_code == 404  # after a repository lookup
    assert migrated_database.is_closed()
    assert not getattr(migrated_database, "_in_use", {})  # PostgreSQL: none checked out


# Issue 18, items 3 and 6: every answer of the intake, exact, and alike on both paths. -----

APP_SECRET = "the-github-apps-secret"  # GITHUB_WEBHOOK_SECRET, where a case sets it
APP_PING = (SAMPLES / "ping" / "with-app_id.payload.json").read_bytes()
ORGANIZATION = json.loads((SAMPLES / "organization" / "member_added.payload.json").read_bytes())[
    "organization"
]


def ping_of(level: str) -> tuple[bytes, dict]:
    """The ping GitHub sends to a new hook of each level, and the headers it sends with it:
    a repository's hook (the sample), an organization's and a GitHub App's own hook, which
    carry no `repository` (the organization hook's shape is octokit/webhooks'
    ping/with-organization.payload.json; the App's is GitHub's with its `app_id`)."""
    repository_id = json.loads(PING)["repository"]["id"]
    if level == "Repository":
        return PING, {
            "X-GitHub-Hook-Installation-Target-Type": "repository",
            "X-GitHub-Hook-Installation-Target-ID": str(repository_id),
        }
    ping = json.loads(APP_PING if level == "App" else PING)
    del ping["repository"]
    hook = ping["hook"]
    del hook["test_url"], hook["last_response"]
    if level == "Organization":
        hook_id = 266738161
        hooks = f"https://api.github.com/orgs/{ORGANIZATION['login']}/hooks/{hook_id}"
        hook.update(type="Organization", id=hook_id, url=hooks, ping_url=f"{hooks}/pings")
        hook["deliveries_url"] = f"{hooks}/deliveries"
        ping.update(hook_id=hook_id, organization=ORGANIZATION)
        target = ("organization", ORGANIZATION["id"])
    else:  # the App's hook, created with the App: no repository, no organization
        hook.update(type="App", deliveries_url="https://api.github.com/app/hook/deliveries")
        del hook["url"], hook["ping_url"]
        target = ("integration", hook["app_id"])
    headers = {
        "X-GitHub-Hook-ID": str(ping["hook_id"]),
        "X-GitHub-Hook-Installation-Target-Type": target[0],
        "X-GitHub-Hook-Installation-Target-ID": str(target[1]),
    }
    return json.dumps(ping, indent=2).encode(), headers


PING_CASES = {  # name: (hook level, signing secret, App secret configured, status)
    "repository hook, its secret": ("Repository", "fast-secret", True, 200),
    "repository hook, the App's secret": ("Repository", APP_SECRET, True, 200),
    "repository hook, a wrong secret": ("Repository", "not-the-secret", True, 401),
    "organization hook, the App's secret": ("Organization", APP_SECRET, True, 200),
    "organization hook, a repository's secret": ("Organization", "fast-secret", True, 401),
    "organization hook, a wrong secret": ("Organization", "not-the-secret", True, 401),
    "organization hook, no App configured": ("Organization", APP_SECRET, False, 401),
    "App hook, the App's secret": ("App", APP_SECRET, True, 200),
    "App hook, a wrong secret": ("App", "not-the-secret", True, 401),
    "App hook, no App configured": ("App", APP_SECRET, False, 401),
}


@pytest.mark.parametrize("case", list(PING_CASES))
def test_a_ping_is_answered_at_every_hook_level(apps, monkeypatch, case):
    level, secret, app_configured, status = PING_CASES[case]
    if app_configured:
        monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", APP_SECRET)
    body, headers = ping_of(level)
    fast, plain = both(apps, body, event="ping", secret=secret, **headers)
    assert fast.status_code == status, fast.get_json()
    assert answer(fast) == answer(plain)
    if status == 200:
        assert fast.get_json() == {"status": "pong", "zen": json.loads(body)["zen"]}
    else:
        assert set(fast.get_json()) == {"code", "status", "message", "errors"}
        if level != "Repository":  # says what GitHub's delivery log should tell its admin
            assert "organization webhooks are not supported" in fast.get_json()["message"]
    assert Event.select().count() == 0  # a ping is answered, never stored


def test_a_wrongly_signed_hook_ping_spends_the_signature_failure_budget(apps, monkeypatch):
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", APP_SECRET)
    body, headers = ping_of("Organization")
    for _ in range(FAILURE_BUDGET):
        refused = both(apps, body, event="ping", secret="x", **headers)
        assert [r.status_code for r in refused] == [401, 401]
    throttled = both(apps, body, event="ping", secret="x", **headers)
    assert [r.status_code for r in throttled] == [429, 429]
    assert all(int(r.headers["Retry-After"]) >= 1 for r in throttled)
    # Signed with the App's secret, from the same address: answered.
    assert {r.status_code for r in both(apps, body, event="ping", secret=APP_SECRET)} == {200}


def with_value(sample: bytes, literal: str) -> bytes:
    """The push sample with the repository's `size` (a number) replaced by `literal`."""
    assert sample.count(b'"size": 0,') == 1
    return sample.replace(b'"size": 0,', f'"size": {literal},'.encode())


BODY_CASES = {  # name: (request, status, what the message must name)
    "media type in capitals": (
        dict(body=PING, event="ping", **{"Content-Type": "Application/JSON; charset=UTF-8"}),
        200,
        None,
    ),
    "form media type in capitals": (
        dict(
            body=FORM_PING,
            event="ping",
            **{"Content-Type": "Application/X-WWW-Form-Urlencoded"},
        ),
        200,
        None,
    ),
    "a charset other than UTF-8": (
        dict(body=PUSH, **{"Content-Type": "application/json; charset=ISO-8859-1"}),
        400,
        "'ISO-8859-1'",
    ),
    "NaN": (dict(body=with_value(PUSH, "NaN")), 400, "NaN"),
    "Infinity": (dict(body=with_value(PUSH, "Infinity")), 400, "Infinity"),
    "-Infinity": (dict(body=with_value(PUSH, "-Infinity")), 400, "-Infinity"),
    "a number past a double": (dict(body=with_value(PUSH, "1e400")), 400, "1e400"),
}


@pytest.mark.parametrize("case", list(BODY_CASES))
def test_bodies_are_answered_exactly(apps, case):
    request, status, named = BODY_CASES[case]
    fast, plain = both(apps, **request)
    assert fast.status_code == status, fast.get_json()
    assert answer(fast) == answer(plain)
    if named is not None:
        assert named in fast.get_json()["message"]
        assert "NUL" not in fast.get_json()["message"]
    assert Event.select().count() == 0


@pytest.mark.parametrize("content_type", ["Application/JSON; charset=UTF-8", "APPLICATION/JSON"])
def test_a_delivery_with_its_media_type_in_capitals_is_stored_as_sent(apps, content_type):
    for client in apps:
        accepted = post(client, PUSH, **{"Content-Type": content_type})
        assert accepted.status_code == 202, accepted.get_json()
        stored = Event.get_by_id(accepted.get_json()["id"])
        assert stored.payload == json.loads(PUSH)
        assert stored.headers["Content-Type"] == content_type


def post_chunked(client, body: bytes, secret: str = "fast-secret"):
    """A delivery sent chunked (no Content-Length), as gunicorn hands it to the app: the
    body decoded, `wsgi.input_terminated` set."""
    environ = EnvironBuilder(
        path="/webhooks/github",
        method="POST",
        headers={
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-GitHub-Hook-ID": "99",
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(body, secret),
            "Transfer-Encoding": "chunked",
        },
        input_stream=io.BytesIO(body),
    ).get_environ()
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True
    return client.open(Request(environ))


def test_a_chunked_body_past_the_limit_is_a_413_and_one_at_the_limit_is_taken(apps):
    fast, plain = apps
    over = [post_chunked(client, PUSH.ljust(MAX_BODY + 1)) for client in apps]
    assert [r.status_code for r in over] == [413, 413], over[0].get_json()
    assert answer(over[0]) == answer(over[1])
    assert set(over[0].get_json()) == {"code", "status", "message", "errors"}
    assert Event.select().count() == 0
    at_limit = [post_chunked(client, PUSH.ljust(MAX_BODY)) for client in apps]
    assert [r.status_code for r in at_limit] == [202, 202], at_limit[0].get_json()
    assert answer(at_limit[0], "id", "delivery") == answer(at_limit[1], "id", "delivery")
