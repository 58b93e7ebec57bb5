"""Notification delivery against real loopback receivers: signed webhooks, Slack Block Kit,
e-mail over SMTP (with STARTTLS), retries with backoff, Retry-After, DEAD and FAILED, the
SSRF guard and the redaction of confidential repositories."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devmetrics import workers as worker
from services.notifications import channels, delivery
from shared.crypto import encrypt
from shared.models import NotificationLog, NotificationRule, Organization, utcnow
from tests.receivers import Answer, HttpReceiver, SmtpReceiver

SECRET = "rule-secret-0123456789"
PR = {
    "repository": "acme/api",
    "repository_id": 7,
    "sensitivity": "INTERNAL",
    "number": 12,
    "title": "Add the billing export",
    "author": "octocat",
    "url": "https://github.com/acme/api/pull/12",
    "pull_request_id": 99,
}
SECRET_PR = {
    **PR,
    "sensitivity": "CONFIDENTIAL",
    "title": "Secret merger plan",
    "body": "Acquire Initech quietly",
    "files": ["payroll/salaries.py"],
}


@pytest.fixture(scope="module")
def http_receiver():
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
def receiver(http_receiver, monkeypatch):
    monkeypatch.setenv("NOTIFICATIONS_ALLOW_PRIVATE_TARGETS", "true")
    monkeypatch.setenv("NOTIFICATIONS_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("NOTIFICATIONS_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("NOTIFICATIONS_BACKOFF_SECONDS", "10")
    monkeypatch.setenv("NOTIFICATIONS_MAX_BACKOFF_SECONDS", "100")
    monkeypatch.setenv("DASHBOARD_URL", "https://devmetrics.example.com")
    http_receiver.reset()
    yield http_receiver
    http_receiver.release.set()  # let a hanging answer go


@pytest.fixture
def org(tx):
    return Organization.create(name="Acme", slug="acme-notify")


def make_rule(org, channel="WEBHOOK", target="", **fields):
    return NotificationRule.create(
        organization=org,
        name=f"{channel} rule {NotificationRule.select().count()}",
        trigger="pull_request.opened",
        channel=channel,
        target=target,
        secret_encrypted=encrypt(SECRET) if channel == "WEBHOOK" else None,
        **fields,
    )


def make_log(rule, data=PR, key="pr:12:opened"):
    return NotificationLog.create(
        rule=rule,
        organization=rule.organization,
        event_key=key,
        payload={"type": "pull_request.opened", "data": data},
        next_attempt_at=utcnow(),
    )


def run_worker() -> int:
    return delivery.deliver_batch("test-worker", 10)


def make_due(log):
    NotificationLog.update(next_attempt_at=utcnow() - dt.timedelta(seconds=1)).where(
        NotificationLog.id == log.id
    ).execute()


def reload(log) -> NotificationLog:
    return NotificationLog.get_by_id(log.id)


def backoff_bounds(log, finished: dt.datetime) -> tuple[float, float]:
    """The backoff counts from the end of the attempt, which lies between the attempt's start
    and the moment the worker returned: these bound the scheduled delay from both sides."""
    return (
        (log.next_attempt_at - finished).total_seconds(),
        (log.next_attempt_at - log.last_attempt_at).total_seconds(),
    )


def test_the_notify_worker_is_registered():
    assert worker.batch_for("notify") is delivery.deliver_batch


def test_webhook_delivery_is_signed_with_the_rule_secret_and_carries_an_idempotency_key(
    receiver, org
):
    log = make_log(make_rule(org, target=receiver.url))
    assert run_worker() == 1
    sent = reload(log)
    assert (sent.status, sent.attempts, sent.response_code, sent.last_error) == (
        "SENT",
        1,
        200,
        None,
    )
    assert sent.sent_at is not None and sent.last_attempt_at is not None
    assert sent.locked_until is None
    (request,) = receiver.requests
    # The receiver verifies the signature the way a customer would: HMAC of the raw body.
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["X-DevMetrics-Signature"], expected)
    wrong = "sha256=" + hmac.new(b"another secret", request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-DevMetrics-Signature"] != wrong
    assert request.headers["X-DevMetrics-Delivery"] == str(log.id)
    assert request.headers["X-DevMetrics-Event"] == "pull_request.opened"
    body = json.loads(request.body)
    assert body["event_key"] == "pr:12:opened" and body["organization"] == "acme-notify"
    assert body["data"]["title"] == "Add the billing export"
    assert body["link"] == "https://github.com/acme/api/pull/12"
    assert run_worker() == 0  # nothing left to send


def test_failures_are_retried_with_backoff_then_succeed(receiver, org):
    receiver.script(Answer(500, "boom"), Answer(hang=True))
    log = make_log(make_rule(org, target=receiver.url))

    run_worker()
    finished = utcnow()
    first = reload(log)
    assert (first.status, first.attempts, first.response_code) == ("PENDING", 1, 500)
    assert "answered 500: boom" in first.last_error
    low, high = backoff_bounds(first, finished)
    assert high >= 5 and low <= 10  # 10 s base, jittered down to half
    assert run_worker() == 0  # not due before its backoff

    make_due(log)
    run_worker()  # the receiver hangs: a read timeout after 1 s
    finished = utcnow()
    second = reload(log)
    assert (second.status, second.attempts, second.response_code) == ("PENDING", 2, None)
    assert "timed out" in second.last_error
    low, high = backoff_bounds(second, finished)
    assert high >= 10 and low <= 20  # doubled

    make_due(log)
    run_worker()
    third = reload(log)
    assert (third.status, third.attempts, third.response_code, third.last_error) == (
        "SENT",
        3,
        200,
        None,
    )
    keys = {r.headers["X-DevMetrics-Delivery"] for r in receiver.requests}
    assert len(receiver.requests) == 3 and keys == {str(log.id)}  # one key for every attempt


def test_a_receiver_that_keeps_failing_ends_dead_with_the_last_error(receiver, org):
    receiver.script(Answer(502), Answer(503), Answer(500, "still down"))
    log = make_log(make_rule(org, target=receiver.url))
    for _ in range(3):
        make_due(log)
        assert run_worker() == 1
    dead = reload(log)
    assert (dead.status, dead.attempts, dead.response_code) == ("DEAD", 3, 500)
    assert "answered 500: still down" in dead.last_error and dead.sent_at is None
    make_due(log)
    assert run_worker() == 0 and len(receiver.requests) == 3


def test_a_connection_error_is_retried(receiver, org):
    from tests.helpers import free_port

    log = make_log(make_rule(org, target=f"http://127.0.0.1:{free_port()}/nobody"))
    run_worker()
    row = reload(log)
    assert (row.status, row.attempts, row.response_code) == ("PENDING", 1, None)
    assert "connection failed" in row.last_error


@pytest.fixture
def failing_resolver(monkeypatch):
    """The resolver answering `errno` for one host name, in this process only (a real
    NXDOMAIN is `.invalid`, tests/services/test_notification_delivery_e2e.py; a resolver
    outage cannot be arranged for real)."""
    real = socket.getaddrinfo

    def fail_for(host: str, errno: int, reason: str) -> None:
        def getaddrinfo(name, *args, **kwargs):
            if name == host:
                raise socket.gaierror(errno, reason)
            return real(name, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    return fail_for


@pytest.mark.parametrize(
    "errno,reason",
    [
        (socket.EAI_NONAME, "Name or service not known"),  # NXDOMAIN: may exist tomorrow
        (socket.EAI_AGAIN, "Temporary failure in name resolution"),  # the resolver failing
    ],
)
def test_a_host_name_that_does_not_resolve_is_retried_then_dead(
    receiver, org, monkeypatch, failing_resolver, errno, reason
):
    monkeypatch.setenv("NOTIFICATIONS_ALLOW_PRIVATE_TARGETS", "false")
    failing_resolver("hooks.acme.example", errno, reason)
    log = make_log(make_rule(org, "SLACK", target="https://hooks.acme.example/services/T0/B0/x1"))
    run_worker()
    finished = utcnow()
    first = reload(log)
    assert (first.status, first.attempts, first.response_code) == ("PENDING", 1, None)
    assert first.last_error == f"target host hooks.acme.example does not resolve: {reason}"
    low, high = backoff_bounds(first, finished)
    assert high >= 5 and low <= 10
    for _ in range(2):
        make_due(log)
        run_worker()
    dead = reload(log)
    assert (dead.status, dead.attempts) == ("DEAD", 3)
    assert dead.last_error == first.last_error


@pytest.mark.parametrize(
    "allow_private,error",
    [
        ("false", "target host is not a valid host name"),  # our own DNS check
        ("true", "invalid target: Failed to parse: 'hooks..acme.example', label empty"),
    ],
)
def test_a_host_name_no_dns_can_hold_fails_at_once(
    receiver, org, monkeypatch, allow_private, error
):
    # An empty label: not a DNS failure that may pass, so never retried (a rule stored
    # before the API refused such names, or written with Studio).
    monkeypatch.setenv("NOTIFICATIONS_ALLOW_PRIVATE_TARGETS", allow_private)
    log = make_log(make_rule(org, target="https://hooks..acme.example/hook"))
    run_worker()
    row = reload(log)
    assert (row.status, row.attempts) == ("FAILED", 1)
    assert row.last_error.startswith(error)


def test_without_smtp_host_an_email_is_retried_until_smtp_is_configured(
    receiver, org, smtp_env, monkeypatch
):
    monkeypatch.delenv("SMTP_HOST", raising=False)
    log = make_log(make_rule(org, "EMAIL", target="lead@acme.test"))
    run_worker()  # SMTP_HOST not set
    waiting = reload(log)
    assert (waiting.status, waiting.attempts) == ("PENDING", 1)
    assert waiting.last_error == channels.SMTP_MISSING
    with SmtpReceiver() as smtp:
        smtp_env(smtp)
        make_due(log)
        run_worker()
        assert len(smtp.messages) == 1
    assert (reload(log).status, reload(log).attempts) == ("SENT", 2)


def test_a_400_fails_at_once_and_is_not_retried(receiver, org):
    receiver.script(Answer(400, "invalid_payload"))
    log = make_log(make_rule(org, "SLACK", target=receiver.url))
    run_worker()
    failed = reload(log)
    assert (failed.status, failed.attempts, failed.response_code) == ("FAILED", 1, 400)
    assert "invalid_payload" in failed.last_error
    make_due(log)
    assert run_worker() == 0 and len(receiver.requests) == 1


def test_429_waits_as_long_as_retry_after_says(receiver, org):
    receiver.script(Answer(429, "slow down", retry_after="120"))
    log = make_log(make_rule(org, target=receiver.url))
    run_worker()
    finished = utcnow()
    row = reload(log)
    assert (row.status, row.response_code) == ("PENDING", 429)
    low, high = backoff_bounds(row, finished)
    assert high >= 120 and low <= 120  # not the 5-10 s backoff


def test_retry_after_as_an_http_date():
    in_a_minute = utcnow() + dt.timedelta(seconds=60)
    header = in_a_minute.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 55 <= channels.retry_after_seconds(header) <= 60
    assert channels.retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    assert channels.retry_after_seconds("soon") is None


def test_a_disabled_rule_does_not_send(receiver, org):
    log = make_log(make_rule(org, target=receiver.url, enabled=False))
    run_worker()
    assert reload(log).status == "FAILED" and receiver.requests == []


@pytest.mark.parametrize(
    "url,reason",
    [
        ("http://93.184.216.34/hook", "https"),
        ("https://127.0.0.1/hook", channels.PRIVATE_REFUSED),
        ("https://localhost/hook", channels.PRIVATE_REFUSED),
        ("https://10.1.2.3/hook", channels.PRIVATE_REFUSED),
        ("https://192.168.0.10/hook", channels.PRIVATE_REFUSED),
        ("https://169.254.169.254/latest/meta-data", channels.PRIVATE_REFUSED),
        ("https://[::1]/hook", channels.PRIVATE_REFUSED),
        ("https://[::ffff:127.0.0.1]/hook", channels.PRIVATE_REFUSED),
        ("https://[fe80::1]/hook", channels.PRIVATE_REFUSED),
    ],
)
def test_the_ssrf_guard_refuses_private_targets(url, reason):
    settings = channels.Settings.from_env({})
    with pytest.raises(channels.UnsafeTarget, match=reason) as refused:
        channels.check_target(url, settings)
    # Never which address a name resolved to (issue 17, item 14).
    assert "127.0.0.1" not in str(refused.value) and urlsplit(url).hostname not in str(
        refused.value
    )


def test_the_ssrf_guard_lets_public_https_through_and_can_be_lifted():
    channels.check_target("https://93.184.216.34/hook", channels.Settings.from_env({}))
    lifted = channels.Settings.from_env({"NOTIFICATIONS_ALLOW_PRIVATE_TARGETS": "true"})
    channels.check_target("http://127.0.0.1:9/hook", lifted)


def test_a_private_target_fails_without_a_request(receiver, org, monkeypatch):
    monkeypatch.setenv("NOTIFICATIONS_ALLOW_PRIVATE_TARGETS", "false")
    https_loopback = receiver.url.replace("http://", "https://")
    plain = make_log(make_rule(org, target=receiver.url), key="a")
    loopback = make_log(make_rule(org, target=https_loopback), key="b")
    run_worker()
    assert (reload(plain).status, reload(loopback).status) == ("FAILED", "FAILED")
    assert reload(plain).last_error == (
        "target must be an https:// URL (http:// is accepted only with "
        "NOTIFICATIONS_ALLOW_PRIVATE_TARGETS=true, for development)"
    )
    assert channels.PRIVATE_REFUSED in reload(loopback).last_error
    assert receiver.requests == []


def test_the_connected_address_is_checked_too(receiver, org, monkeypatch):
    # A name that resolved to a public address at check time but connects to an internal
    # one (DNS rebinding) is caught on the socket itself.
    monkeypatch.setenv("NOTIFICATIONS_ALLOW_PRIVATE_TARGETS", "false")
    monkeypatch.setattr(channels, "check_target", lambda url, settings=None: None)
    log = make_log(make_rule(org, target=receiver.url))
    run_worker()
    row = reload(log)
    assert row.status == "FAILED" and row.last_error == channels.PRIVATE_REFUSED
    assert receiver.requests == []


def test_confidential_repositories_are_redacted_on_every_channel(receiver, org, smtp_env):
    with SmtpReceiver() as smtp:
        smtp_env(smtp)
        make_log(make_rule(org, target=receiver.url), data=SECRET_PR, key="w")
        make_log(make_rule(org, "SLACK", target=receiver.url), data=SECRET_PR, key="s")
        make_log(make_rule(org, "EMAIL", target="lead@acme.test"), data=SECRET_PR, key="e")
        assert run_worker() == 3
        (mail,) = smtp.messages
    texts = [r.body.decode() for r in receiver.requests]
    texts += [part.get_content() for part in mail["message"].walk() if not part.is_multipart()]
    texts.append(str(mail["message"]["Subject"]))
    assert len(texts) == 5
    for text in texts:
        for secret in ("Secret merger", "Initech", "payroll", "salaries"):
            assert secret not in text
        assert "acme/api" in text and "12" in text  # what it is about is still said
    webhook = json.loads(receiver.requests[0].body)
    assert set(webhook["data"]) == {
        "repository",
        "repository_id",
        "sensitivity",
        "number",
        "author",
        "url",
        "pull_request_id",
    }


def test_redaction_judges_nested_items_one_by_one():
    digest = {
        "pull_requests": [
            {"repository": "acme/open", "sensitivity": "PUBLIC", "title": "Public fix"},
            {"repository": "acme/vault", "sensitivity": "RESTRICTED", "title": "Vault keys"},
        ]
    }
    assert channels.redact(digest) == {
        "pull_requests": [
            {"repository": "acme/open", "sensitivity": "PUBLIC", "title": "Public fix"},
            {"repository": "acme/vault", "sensitivity": "RESTRICTED"},
        ]
    }


def test_slack_gets_block_kit_with_a_link_back(receiver, org):
    make_log(make_rule(org, "SLACK", target=receiver.url))
    incident = {"repository": "acme/api", "sensitivity": "INTERNAL", "kind": "REVERT"}
    rule = make_rule(org, "SLACK", target=receiver.url)
    NotificationLog.create(
        rule=rule,
        organization=org,
        event_key="incident:1",
        payload={"type": "incident.opened", "data": incident},
        next_attempt_at=utcnow(),
    )
    assert run_worker() == 2
    pr_message, incident_message = (json.loads(r.body) for r in receiver.requests)
    assert pr_message["text"] == "Pull request #12 opened in acme/api"
    heading = pr_message["blocks"][0]["text"]
    assert heading == {
        "type": "mrkdwn",
        "text": "*<https://github.com/acme/api/pull/12|Pull request #12 opened in acme/api>*"
        "\nAdd the billing export",
    }
    (button,) = pr_message["blocks"][-1]["elements"]
    assert button["url"] == "https://github.com/acme/api/pull/12"
    fields = [f["text"] for f in pr_message["blocks"][1]["fields"]]
    assert fields == ["*repository*\nacme/api", "*number*\n12", "*author*\noctocat"]
    # Without a pull request to point at, the link is the organization's dashboard.
    (button,) = incident_message["blocks"][-1]["elements"]
    assert button["url"] == "https://devmetrics.example.com/dashboard/acme-notify"
    assert "X-DevMetrics-Signature" not in receiver.requests[0].headers


@pytest.fixture
def smtp_env(monkeypatch):
    """Points SMTP_* at a receiver for this test (and takes them back afterwards)."""
    for name in ("SMTP_USER", "SMTP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)

    def point_at(smtp, **extra):
        monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("SMTP_PORT", str(smtp.port))
        monkeypatch.setenv("SMTP_FROM", "alerts@devmetrics.test")
        for name, value in extra.items():
            monkeypatch.setenv(name, value)

    return point_at


def test_email_arrives_with_plain_text_and_html_parts(receiver, org, smtp_env):
    with SmtpReceiver() as smtp:
        smtp_env(smtp)
        log = make_log(make_rule(org, "EMAIL", target="lead@acme.test"))
        run_worker()
        (mail,) = smtp.messages
    row = reload(log)
    assert (row.status, row.response_code, row.attempts) == ("SENT", 250, 1)
    assert mail["from"] == "alerts@devmetrics.test" and mail["to"] == ["lead@acme.test"]
    message = mail["message"]
    assert message["Subject"] == "[DevMetrics] Pull request #12 opened in acme/api"
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Add the billing export" in plain and "https://github.com/acme/api/pull/12" in plain
    assert "<a href='https://github.com/acme/api/pull/12'>" in html
    assert "<th align='left'>author</th><td>octocat</td>" in html


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_email_uses_starttls_when_the_server_offers_it(receiver, org, smtp_env, tmp_path):
    cert_file, key_file = _self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    with SmtpReceiver(tls_context=server_tls) as smtp:
        # The client verifies the certificate: trust the test's own one.
        smtp_env(smtp, SSL_CERT_FILE=str(cert_file))
        log = make_log(make_rule(org, "EMAIL", target="lead@acme.test"))
        run_worker()
        (mail,) = smtp.messages
    assert reload(log).status == "SENT"
    assert mail["tls"] is True


def test_credentials_are_never_sent_without_starttls(receiver, org, smtp_env):
    with SmtpReceiver() as smtp:
        smtp_env(smtp, SMTP_USER="bot", SMTP_PASSWORD="hunter2")
        log = make_log(make_rule(org, "EMAIL", target="lead@acme.test"))
        run_worker()
        assert smtp.messages == []
    row = reload(log)
    assert row.status == "FAILED" and "no STARTTLS" in row.last_error


def test_send_now_reports_the_outcome_without_a_log(receiver, org):
    rule = make_rule(org, target=receiver.url)
    assert delivery.send_now(rule) == {"status": "SENT", "response_code": 200, "error": None}
    receiver.script(Answer(404, "no_service"))
    outcome = delivery.send_now(rule)
    assert (outcome["status"], outcome["response_code"]) == ("FAILED", 404)
    assert "no_service" in outcome["error"]
    sample = json.loads(receiver.requests[0].body)
    assert sample["data"]["title"] == "Sample pull request"
    assert receiver.requests[0].headers["X-DevMetrics-Delivery"].startswith("test-")
    assert NotificationLog.select().where(NotificationLog.rule == rule).count() == 0


def test_a_lost_last_attempt_is_not_tried_again_past_the_maximum(receiver, org):
    # Its worker died during the 3rd (last) attempt: the expired lease is taken back and
    # the delivery given up, keeping the error it had, without a 4th request.
    log = make_log(make_rule(org, target=receiver.url))
    NotificationLog.update(
        status="SENDING",
        attempts=3,
        locked_by="gone:1:notify",
        locked_until=utcnow() - dt.timedelta(seconds=1),
        last_error="answered 503",
    ).where(NotificationLog.id == log.id).execute()
    assert run_worker() == 1
    row = reload(log)
    assert (row.status, row.attempts, row.last_error) == ("DEAD", 4, "answered 503")
    assert receiver.requests == []
