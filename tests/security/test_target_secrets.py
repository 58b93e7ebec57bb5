"""Issue 17, items 5 and 14: what a notification's failures tell people. A target's secret (a
Slack incoming-webhook path, a webhook's query-string token or user:password, the SMTP
password) never shows in the delivery log, the rule's test answer or any log line, however
the receiver fails; a target refused for a private address never says which address.

Real processes on their own database (the notify worker sends every due delivery it finds,
so no other test's): accounts and two notifications services, one strict (production: https
and public addresses only), one permissive (for receivers on loopback), and the real
`devmetrics worker notify`; receivers on loopback (tests/receivers.py)."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import secrets
import socket
import ssl
import uuid

import pytest
import requests

from shared import crypto
from shared.models import NotificationLog, NotificationRule, Organization, utcnow
from tests.conftest import run_cli
from tests.helpers import INTERNAL_TOKEN, bound_to, free_port, start_service, stop, wait_ready
from tests.receivers import Answer, HttpReceiver, SmtpReceiver
from tests.reliability.report import record
from tests.security.conftest import session_for, start_stack
from tests.test_notification_delivery import _self_signed

ORG = "startup-inc"  # seed: bob OWNER, alice VIEWER
RULES = f"/api/v1/orgs/{ORG}/notification-rules"
LOGS = f"/api/v1/orgs/{ORG}/notification-logs"
PRIVATE_REFUSED = "refused: private address"
SMTP_USER, SMTP_PASSWORD = "devmetrics-bot", "smtp-pa55-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def notify_stack(database_factory, tmp_path_factory, fake_github_server):
    stack = start_stack(
        database_factory,
        tmp_path_factory,
        fake_github_server,
        NOTIFICATIONS_TIMEOUT_SECONDS=2,
        NOTIFICATIONS_MAX_ATTEMPTS=2,
    )
    permissive_port = free_port()
    permissive = None
    try:
        stack.start("accounts")
        stack.start("notifications")  # NOTIFICATIONS_ALLOW_PRIVATE_TARGETS unset: strict
        permissive_env = {**stack.env, "NOTIFICATIONS_ALLOW_PRIVATE_TARGETS": "true"}
        permissive = start_service("notifications", permissive_port, permissive_env, stack.log_dir)
        stack.permissive = f"http://127.0.0.1:{permissive_port}"
        wait_ready(stack.permissive)
        made = stack.cli(
            "apikey", "create", "--org", ORG, "--name", "reader", "--scope", "notifications:read"
        )
        assert made.returncode == 0, made.stderr
        stack.reader_key = made.stdout.strip().splitlines()[-1]
        stack.as_ = {
            "OWNER": {"Authorization": f"Bearer {session_for(stack, 'bob')}"},
            "VIEWER": {"Authorization": f"Bearer {session_for(stack, 'alice')}"},
            "notifications:read key": {"Authorization": f"Bearer {stack.reader_key}"},
        }
        yield stack
    finally:
        if permissive is not None:
            stop(permissive)
        for name in list(stack.processes):
            stack.stop(name)


def create_rule(base: str, stack, name: str, channel: str, target: str, trigger: str) -> int:
    made = requests.post(
        base + RULES,
        json={"name": name, "trigger": trigger, "channel": channel, "target": target},
        headers=stack.as_["OWNER"],
        timeout=20,
    )
    assert made.status_code == 201, made.text
    return made.json()["id"]


def insert_rule(stack, name: str, channel: str, target: str, trigger: str) -> int:
    """A rule the API would refuse (user:password in the URL, a loopback name): as one
    stored before that check, or written with Studio."""
    with bound_to(stack.database_url):
        rule = NotificationRule.create(
            organization=Organization.get(Organization.slug == ORG),
            name=name,
            trigger=trigger,
            channel=channel,
            target=target,
            secret_encrypted=crypto.encrypt("rule-secret") if channel == "WEBHOOK" else None,
        )
        return rule.id


def send_event(stack, kind: str, data: dict) -> list[int]:
    with bound_to(stack.database_url):
        org_id = Organization.get(Organization.slug == ORG).id
    answer = requests.post(
        stack.url("notifications") + "/internal/v1/events",
        json={
            "id": uuid.uuid4().hex,
            "type": kind,
            "organization_id": org_id,
            "key": f"{kind}:{uuid.uuid4().hex}",
            "data": data,
        },
        headers={"Authorization": f"Bearer {INTERNAL_TOKEN}"},
        timeout=20,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["logs"]


def run_worker(stack, **env) -> str:
    """One pass of the real notify worker; returns its output (its JSON log lines)."""
    done = run_cli(
        "worker",
        "notify",
        "--once",
        database_url=stack.database_url,
        env={**stack.env, "NOTIFICATIONS_TIMEOUT_SECONDS": "1", **env},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def make_due(stack, log_ids) -> None:
    with bound_to(stack.database_url):
        NotificationLog.update(next_attempt_at=utcnow() - dt.timedelta(seconds=1)).where(
            NotificationLog.id.in_(log_ids) & (NotificationLog.status == "PENDING")
        ).execute()


def delivery_lines(output: str) -> list[dict]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("message") == "notification delivery"]


def test_target_secrets_never_show_in_the_delivery_log_test_answers_or_logs(notify_stack):
    stack = notify_stack
    permissive = stack.permissive
    token = {name: secrets.token_hex(12) for name in ("refused", "echo", "hang", "query", "user")}
    cert_file, key_file = _self_signed(stack.log_dir)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_file, key_file)
    refused_port = free_port()
    with (
        HttpReceiver() as echo,
        HttpReceiver() as hang,
        HttpReceiver() as failing,
        SmtpReceiver(
            tls_context=server_tls,
            auth_reply=lambda args: (
                f"535 5.7.8 Authentication failed: {' '.join(args)} ({_decoded(args)})"
            ),
        ) as smtp,
    ):
        # Slack's answers for a revoked hook, echoing the path as web frameworks do.
        echo.script(*[Answer(404, "no_service: Cannot POST ", echo=True)] * 20)
        hang.script(*[Answer(hang=True)] * 20)
        failing.script(*[Answer(500, "upstream failed for ", echo=True)] * 20)
        slack = "/services/T0{0}/B0{0}/{0}"
        targets = {
            # Connection refused: requests' error text carries the whole path.
            "refused": (
                "SLACK",
                f"http://127.0.0.1:{refused_port}" + slack.format(token["refused"]),
            ),
            # A 404 whose body repeats the path.
            "echo": ("SLACK", f"http://127.0.0.1:{echo.port}" + slack.format(token["echo"])),
            # A read timeout (retried, then DEAD).
            "hang": ("SLACK", f"http://127.0.0.1:{hang.port}" + slack.format(token["hang"])),
            # A webhook with a token in its query string, answering 500 (retried).
            "query": (
                "WEBHOOK",
                f"http://127.0.0.1:{failing.port}/hooks/devmetrics?token={token['query']}&v=2",
            ),
            "email": ("EMAIL", "oncall@startup.example"),
        }
        rule_ids = {
            name: create_rule(
                permissive, stack, f"secret {name}", channel, target, "deployment.failed"
            )
            for name, (channel, target) in targets.items()
        }
        # user:password in the URL: the API refuses it now; a row from before (or Studio).
        targets["user"] = (
            "WEBHOOK",
            f"http://deliverybot:{token['user']}@127.0.0.1:{echo.port}/hook",
        )
        rule_ids["user"] = insert_rule(stack, "secret user", *targets["user"], "deployment.failed")
        hidden = {**token, "SMTP password": SMTP_PASSWORD}

        env = {
            "NOTIFICATIONS_ALLOW_PRIVATE_TARGETS": "true",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp.port),
            "SMTP_USER": SMTP_USER,
            "SMTP_PASSWORD": SMTP_PASSWORD,
            "SSL_CERT_FILE": str(cert_file),  # the worker trusts the receiver's certificate
        }
        # The rules API's test button (its own process has no SMTP settings: the e-mail one
        # fails on that), then the deliveries of one event through the real worker: first
        # attempts, the retries of the retryable ones (DEAD after 2), a manual retry.
        answers = []
        for name, rule_id in rule_ids.items():
            tested = requests.post(
                f"{permissive}{RULES}/{rule_id}/test", headers=stack.as_["OWNER"], timeout=30
            )
            assert tested.status_code == 200, tested.text
            assert tested.json()["status"] == "FAILED", (name, tested.json())
            answers.append(tested.text)
        log_ids = send_event(stack, "deployment.failed", {"environment": "production"})
        assert len(log_ids) == len(rule_ids)
        output = run_worker(stack, **env)
        make_due(stack, log_ids)
        output += run_worker(stack, **env)
        with bound_to(stack.database_url):
            by_rule = {
                row.rule_id: row
                for row in NotificationLog.select().where(NotificationLog.id.in_(log_ids))
            }
        statuses = {name: by_rule[rule_id].status for name, rule_id in rule_ids.items()}
        assert statuses == {
            "refused": "DEAD",
            "echo": "FAILED",
            "hang": "DEAD",
            "query": "DEAD",
            "email": "FAILED",
            "user": "FAILED",
        }, statuses
        retried = requests.post(
            f"{permissive}{LOGS}/{by_rule[rule_ids['echo']].id}/retry",
            headers=stack.as_["OWNER"],
            timeout=20,
        )
        assert retried.status_code == 200, retried.text
        answers.append(retried.text)
        output += run_worker(stack, **env)
        # The receivers really were called and really failed as intended.
        assert len(echo.requests) >= 4 and len(hang.requests) >= 2 and len(failing.requests) >= 2

    # A row stored before errors were masked is masked when read.
    legacy_error = f"connection failed: {targets['refused'][1]} (Caused by NewConnectionError)"
    with bound_to(stack.database_url):
        legacy = NotificationLog.create(
            rule=rule_ids["refused"],
            organization=Organization.get(Organization.slug == ORG),
            event_key="legacy",
            status="FAILED",
            attempts=1,
            last_error=legacy_error,
        )

    errors = {}
    reads = 0
    for who in ("VIEWER", "notifications:read key"):
        headers = stack.as_[who]
        listed = requests.get(f"{permissive}{LOGS}?page_size=100", headers=headers, timeout=20)
        assert listed.status_code == 200, listed.text
        answers.append(listed.text)
        for row in listed.json():
            errors[row["rule_id"], row["event_key"]] = row["last_error"]
        for rule_id in rule_ids.values():
            for url in (f"{RULES}/{rule_id}", f"{RULES}/{rule_id}/logs"):
                read = requests.get(permissive + url, headers=headers, timeout=20)
                assert read.status_code == 200, read.text
                answers.append(read.text)
                reads += 1
        for log_id in [*log_ids, legacy.id]:
            read = requests.get(f"{permissive}{LOGS}/{log_id}", headers=headers, timeout=20)
            assert read.status_code == 200, read.text
            answers.append(read.text)
            reads += 1

    logs = {path.name: path.read_text(errors="replace") for path in stack.log_dir.glob("*.log")}
    logs["worker output"] = output
    delivered = delivery_lines(output)
    assert len(delivered) >= 9 and all(line["error"] for line in delivered)  # really logged
    texts = {"answers": "\n".join(answers), **logs}
    for kind, secret in hidden.items():
        for where, text in texts.items():
            assert secret.lower() not in text.lower(), f"the {kind} secret in {where}"

    # The errors still say what happened, and where (the target as rule reads show it).
    def error_of(name):
        return next(
            e for (rid, key), e in errors.items() if rid == rule_ids[name] and key != "legacy"
        )

    assert "connection failed" in error_of("refused") and "/…" in error_of("refused")
    assert f"http://127.0.0.1:{echo.port}/… answered 404: no_service" in error_of("echo")
    assert "timed out" in error_of("hang")
    assert f"http://127.0.0.1:{failing.port}/… answered 500" in error_of("query")
    assert f"http://127.0.0.1:{echo.port}/… answered 404" in error_of("user")
    assert error_of("email").startswith("SMTP 535") and SMTP_USER in error_of("email")
    assert errors[rule_ids["refused"], "legacy"] == (
        f"connection failed: http://127.0.0.1:{refused_port}/… (Caused by NewConnectionError)"
    )
    record(
        "17.5 delivery-log secrets",
        "Slack/webhook targets failing by refused connection, 404 echoing the path, timeout, "
        "500 echoing a query token, user:password, SMTP 535 echoing AUTH: no secret in the "
        "test answers, retry, delivery log (VIEWER, notifications:read key) or any log",
        passed=True,
        load=reads + len(log_ids) * 3,
        bad_inputs=len(hidden),
    )


def _decoded(args) -> str:
    try:
        return base64.b64decode(args[-1]).decode().replace("\0", " ")
    except ValueError:
        return ""


def loopback_names() -> dict[str, set[str]]:
    """Host names of this machine the API accepts (not `localhost`, not an address) that the
    system resolver answers with non-public addresses only: name -> those addresses."""
    found = {}
    for name in {socket.gethostname(), socket.getfqdn()}:
        if not name or name.lower().rstrip(".").endswith("localhost"):
            continue
        try:
            ipaddress.ip_address(name)
            continue
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(name, 443, type=socket.SOCK_STREAM)
        except OSError:
            continue
        addresses = {info[4][0] for info in infos}
        if addresses and not any(ipaddress.ip_address(a).is_global for a in addresses):
            found[name] = addresses
    return found


def test_a_refused_private_target_never_names_its_address(notify_stack):
    stack = notify_stack
    strict = stack.url("notifications")
    port = free_port()
    by_api = loopback_names()
    rule_ids, addresses = {}, {"127.0.0.1", "::1", "10.0.0.5", "169.254.169.254", "192.168.7.7"}
    for name, resolved in by_api.items():
        rule_ids[name] = create_rule(
            strict,
            stack,
            f"private {name}",
            "WEBHOOK",
            f"https://{name}:{port}/hook",
            "incident.opened",
        )
        addresses |= resolved
    # Refused at save time (the API never takes them), so stored directly: as rules saved
    # while a name still resolved to a public address, or written with Studio.
    for target in (
        f"https://localhost:{port}/hook",
        "https://10.0.0.5/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://192.168.7.7/hook",
    ):
        rule_ids[target] = insert_rule(
            stack, f"private {target}", "WEBHOOK", target, "incident.opened"
        )
        if target.startswith("https://localhost"):
            addresses |= {info[4][0] for info in socket.getaddrinfo("localhost", 443)}

    answers = []
    for name, rule_id in rule_ids.items():
        tested = requests.post(
            f"{strict}{RULES}/{rule_id}/test", headers=stack.as_["OWNER"], timeout=30
        )
        assert tested.status_code == 200, tested.text
        assert tested.json() == {
            "status": "FAILED",
            "response_code": None,
            "error": PRIVATE_REFUSED,
        }, name
        answers.append(tested.text)
    log_ids = send_event(stack, "incident.opened", {"kind": "LABELED_ISSUE"})
    assert len(log_ids) == len(rule_ids)
    output = run_worker(stack)  # the stack's environment: private targets not allowed
    for who in ("VIEWER", "notifications:read key"):
        for log_id in log_ids:
            read = requests.get(f"{strict}{LOGS}/{log_id}", headers=stack.as_[who], timeout=20)
            assert read.status_code == 200, read.text
            assert (read.json()["status"], read.json()["last_error"]) == ("FAILED", PRIVATE_REFUSED)
            answers.append(read.text)
    lines = [line for line in delivery_lines(output) if line["log_id"] in log_ids]
    assert len(lines) == len(log_ids)
    assert {line["error"] for line in lines} == {PRIVATE_REFUSED}
    for text in answers:
        error_texts = [json.loads(text).get("error"), json.loads(text).get("last_error")]
        for error in filter(None, error_texts):
            for address in addresses:
                assert address not in error
    assert "resolves to" not in output and "connected to" not in output
    record(
        "17.14 private-target answers",
        f"rule test and delivery of {len(rule_ids)} targets resolving to loopback, private, "
        f"link-local addresses ({len(by_api)} host name(s) of this machine through the API): "
        f"'{PRIVATE_REFUSED}', no address, in answers, delivery log and worker log",
        passed=True,
        load=len(answers),
        bad_inputs=len(rule_ids),
    )
