"""What a notification says and how each channel carries it: a Slack Block Kit message, a
signed JSON webhook, or an e-mail (plain text and HTML) over SMTP.

`render(rule, payload)` builds the message of the rule's channel; `send(...)` delivers it once
and returns an `Attempt` that the delivery worker turns into a status (sent, retry, failed).
An attempt's error is stored, answered and logged as it is, so `send` masks it first (the
target as on rule reads, SMTP credentials out: `mask_error`), and a refused private address
is never named (`PRIVATE_REFUSED`).
What may recover is retried: a host name that does not resolve (no such name yet, or the
resolver failing) and an SMTP server not configured yet (`SMTP_MISSING`) are retryable
attempts, like timeouts and 5xx; a target the service must not call (not HTTPS, a private
address, a host name that can never exist) fails at once.
Messages about CONFIDENTIAL or RESTRICTED repositories keep only an allowlist of fields: no
titles, bodies or file names ever leave the service for them.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import html
import ipaddress
import json
import logging
import smtplib
import socket
import ssl
import time
import traceback
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import LocationValueError

from shared import masking
from shared.config import Settings
from shared.crypto import decrypt
from shared.models import Channel, NotificationRule, Sensitivity

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-DevMetrics-Signature"
DELIVERY_HEADER = "X-DevMetrics-Delivery"
EVENT_HEADER = "X-DevMetrics-Event"
USER_AGENT = "DevMetrics-Notifications/1"
# What a target resolving to (or connecting to) a non-public address is told: never which
# address, which would map internal names for whoever can create a rule.
PRIVATE_REFUSED = "refused: private address"
# The setting that allows http:// and private targets, named wherever an http:// target is
# refused (at save time and at delivery): which switch a development setup needs. A private
# address refused at delivery still says only PRIVATE_REFUSED.
ALLOW_PRIVATE_SETTING = "NOTIFICATIONS_ALLOW_PRIVATE_TARGETS=true"
HTTPS_ONLY = (
    f"an https:// URL (http:// is accepted only with {ALLOW_PRIVATE_SETTING}, for development)"
)
# An EMAIL rule's deliveries while the operator has not configured SMTP: shown as a warning on
# the rule, and the error of its attempts (retried: configuring SMTP lets them go out).
SMTP_MISSING = "SMTP_HOST is not set: e-mails cannot be sent"
REDACTED_SENSITIVITIES = {Sensitivity.CONFIDENTIAL, Sensitivity.RESTRICTED}
# What a message about a confidential repository may still say: identifiers, numbers and
# states, never free text written by people (titles, bodies, commit messages, file names).
REDACTED_KEEP = {
    "repository",
    "repository_id",
    "sensitivity",
    "number",
    "pull_request_id",
    "author",
    "reviewer",
    "url",
    "risk_score",
    "risk_level",
    "deployment_id",
    "environment",
    "sha",
    "production",
    "state",
    "incident_id",
    "kind",
    "opened_at",
    "hours",
    "age_hours",
    "metric",
    "scope",
    "team",
    "developer",
    "op",
    "value",
    "bound",
}
HEADLINES = {
    "pull_request.opened": "Pull request #{number} opened in {repository}",
    "pull_request.merged": "Pull request #{number} merged in {repository}",
    "pull_request.review_requested": "Review requested on #{number} in {repository}",
    "pull_request.stale": "Pull request #{number} in {repository} is waiting for review",
    "ai_review.completed": "AI review of #{number} in {repository}: risk {risk_score}",
    "deployment.failed": "Deployment to {environment} failed",
    "incident.opened": "Incident opened in {repository}",
    "metric.threshold": "{metric} crossed its bound",
    "digest.daily": "Daily digest",
    "digest.weekly": "Weekly digest",
    "test": "Test notification from DevMetrics",
}
HIDDEN_FIELDS = {"sensitivity", "url", "title"}  # the title is the headline's second line
# Fields shown in this order first, the rest alphabetically (JSON columns do not keep order).
FIELD_ORDER = [
    "repository",
    "number",
    "author",
    "reviewer",
    "risk_score",
    "risk_level",
    "environment",
    "sha",
    "state",
    "kind",
    "metric",
    "team",
    "developer",
    "value",
    "bound",
]


class UnsafeTarget(ValueError):
    """A target the service must not or cannot ever call (not HTTPS, a private address, a host
    name no DNS can hold): the delivery fails at once."""


class UnresolvedTarget(Exception):
    """A target whose host name does not resolve now: no such name (NXDOMAIN) or a resolver
    failure. Both may recover (a domain registered or renewed, DNS propagating, a resolver
    outage ending), so the delivery is retried with backoff, then DEAD."""


@dataclass
class Attempt:
    """One try at delivering: ok, or the error and whether trying again may help."""

    ok: bool
    response_code: int | None = None
    error: str | None = None
    retryable: bool = False
    retry_after: float | None = None  # seconds the receiver asked us to wait


# --- content -----------------------------------------------------------------------------


def redact(data):
    """`data` without free text wherever it concerns a CONFIDENTIAL/RESTRICTED repository
    (nested items, e.g. a digest's pull requests, are judged one by one)."""
    if isinstance(data, list):
        return [redact(item) for item in data]
    if not isinstance(data, dict):
        return data
    if data.get("sensitivity") in REDACTED_SENSITIVITIES:
        return {k: redact(v) for k, v in data.items() if k in REDACTED_KEEP}
    return {k: redact(v) for k, v in data.items()}


class _Blank(dict):
    def __missing__(self, key):
        return "?"


@dataclass
class Summary:
    kind: str
    headline: str
    title: str | None
    fields: list[tuple[str, str]]
    link: str
    data: dict


def _text(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "; ".join(_text(v) for v in value)
    return str(value)


def _field_rank(item) -> tuple:
    key = item[0]
    return (FIELD_ORDER.index(key), "") if key in FIELD_ORDER else (len(FIELD_ORDER), key)


def duration(seconds) -> str:
    """3h 20m, 2d 4h, 45s: a duration for people."""
    if seconds is None:
        return "n/a"
    seconds = int(round(float(seconds)))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{secs}s"


def _graded(value: str, key: dict) -> str:
    category = key.get("category")
    return f"{value} ({category})" if category else value


def digest_fields(data: dict) -> list[tuple[str, str]]:
    """A digest's figures as a person reads them (not its nested JSON)."""
    metrics, dora = data.get("metrics") or {}, data.get("dora") or {}
    lead, freq = dora.get("lead_time") or {}, dora.get("deployment_frequency") or {}
    cfr, ttr = dora.get("change_failure_rate") or {}, dora.get("time_to_restore") or {}
    rate = cfr.get("rate")
    return [
        ("period", f"{data.get('period_start')} to {data.get('period_end')}"),
        ("commits", str(metrics.get("commits", 0))),
        (
            "pull requests",
            f"{metrics.get('prs_opened', 0)} opened, {metrics.get('prs_merged', 0)} merged",
        ),
        ("reviews", str(metrics.get("reviews", 0))),
        (
            "deployments",
            f"{metrics.get('deployments', 0)} ({metrics.get('failed_deployments', 0)} failed)",
        ),
        ("cycle time (median)", duration(metrics.get("cycle_time_median_s"))),
        ("lead time", _graded(duration(lead.get("median_s")), lead)),
        ("deployment frequency", _graded(f"{freq.get('per_week', 0):.1f} / week", freq)),
        ("change failure rate", _graded("n/a" if rate is None else f"{rate * 100:.0f} %", cfr)),
        ("time to restore", _graded(duration(ttr.get("median_s")), ttr)),
    ]


def summarize(rule: NotificationRule, payload: dict, settings: Settings) -> Summary:
    kind = str(payload.get("type") or rule.trigger)
    data = redact(dict(payload.get("data") or {}))
    headline = HEADLINES.get(kind, kind).format_map(_Blank(data))
    org_slug = rule.organization.slug
    link = data.get("url") or f"{settings.dashboard_url}/dashboard/{org_slug}"
    fields = [
        (key.replace("_", " "), _text(value))
        for key, value in sorted(data.items(), key=_field_rank)
        if key not in HIDDEN_FIELDS and not key.endswith("_id") and value not in (None, "")
    ]
    if kind.startswith("digest."):
        fields = digest_fields(data)
    title = data.get("title")
    return Summary(kind, headline, str(title) if title else None, fields, link, data)


def slack_message(summary: Summary) -> dict:
    heading = f"*<{summary.link}|{summary.headline}>*"
    if summary.title:
        heading += f"\n{summary.title}"
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": heading}}]
    if summary.fields:
        blocks.append(
            {
                "type": "section",
                # Slack allows at most 10 fields per section.
                "fields": [
                    {"type": "mrkdwn", "text": f"*{label}*\n{value[:1900]}"}
                    for label, value in summary.fields[:10]
                ],
            }
        )
    blocks.append(
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Open in DevMetrics"},
                    "url": summary.link,
                }
            ],
        }
    )
    return {"text": summary.headline, "blocks": blocks}


def webhook_body(rule: NotificationRule, summary: Summary, event_key: str, delivery: str) -> dict:
    return {
        "delivery": delivery,
        "event": summary.kind,
        "event_key": event_key,
        "rule": {"id": rule.id, "name": rule.name},
        "organization": rule.organization.slug,
        "summary": summary.headline,
        "link": summary.link,
        "data": summary.data,
    }


def email_message(rule: NotificationRule, summary: Summary, settings: Settings) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = f"[DevMetrics] {summary.headline}"
    message["From"] = settings.smtp_from
    message["To"] = rule.target
    message["Date"] = email.utils.formatdate(localtime=False)
    message["Message-ID"] = email.utils.make_msgid(domain="devmetrics")
    lines = [summary.headline]
    if summary.title:
        lines.append(summary.title)
    lines += ["", *(f"{label}: {value}" for label, value in summary.fields), "", summary.link]
    message.set_content("\n".join(lines) + "\n")
    rows = "".join(
        f"<tr><th align='left'>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
        for label, value in summary.fields
    )
    title = f"<p>{html.escape(summary.title)}</p>" if summary.title else ""
    message.add_alternative(
        f"<html><body><h2><a href='{html.escape(summary.link)}'>{html.escape(summary.headline)}"
        f"</a></h2>{title}<table>{rows}</table>"
        f"<p><a href='{html.escape(summary.link)}'>Open in DevMetrics</a></p></body></html>",
        subtype="html",
    )
    return message


def render(rule: NotificationRule, payload: dict, *, event_key: str = "", delivery: str = ""):
    """The message for the rule's channel: Slack JSON, webhook JSON, or an EmailMessage."""
    settings = Settings.from_env()
    summary = summarize(rule, payload, settings)
    if rule.channel == Channel.SLACK:
        return slack_message(summary)
    if rule.channel == Channel.WEBHOOK:
        return webhook_body(rule, summary, event_key, delivery)
    return email_message(rule, summary, settings)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- HTTP targets: HTTPS only, never a private address ------------------------------------


def _forbidden(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def check_target(url: str, settings: Settings | None = None) -> None:
    """Raise UnsafeTarget unless `url` is HTTPS and its host resolves only to public
    addresses (NOTIFICATIONS_ALLOW_PRIVATE_TARGETS=true lifts both, for development), and
    UnresolvedTarget when its host name does not resolve (now)."""
    settings = settings or Settings.from_env()
    parts = urlsplit(url)
    if not parts.hostname:
        raise UnsafeTarget("target is not a URL")
    if settings.notifications_allow_private_targets:
        if parts.scheme not in ("http", "https"):
            raise UnsafeTarget("target must be an http(s) URL")
        return
    if parts.scheme != "https":
        raise UnsafeTarget(f"target must be {HTTPS_ONLY}")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except UnicodeError:  # an empty or over-long label: no DNS will ever hold it
        raise UnsafeTarget("target host is not a valid host name") from None
    except socket.gaierror as exc:
        reason = exc.strerror or str(exc)  # "Name or service not known", "Temporary failure..."
        raise UnresolvedTarget(f"target host {parts.hostname} does not resolve: {reason}") from None
    if any(_forbidden(sockaddr[0]) for *_, sockaddr in infos):
        raise UnsafeTarget(PRIVATE_REFUSED)


class _PeerCheck:
    # Checked again on the socket actually connected, so a DNS answer that changes between
    # check_target() and the request (rebinding) still cannot reach an internal address.
    def connect(self):
        super().connect()
        peer = self.sock.getpeername()[0]
        if _forbidden(peer):
            self.sock.close()
            raise UnsafeTarget(PRIVATE_REFUSED)


class _CheckedHTTPConnection(_PeerCheck, HTTPConnection):
    pass


class _CheckedHTTPSConnection(_PeerCheck, HTTPSConnection):
    pass


class _CheckedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _CheckedHTTPConnection


class _CheckedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _CheckedHTTPSConnection


class _PublicOnlyAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _CheckedHTTPPool,
            "https": _CheckedHTTPSPool,
        }


def _session(settings: Settings) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # a proxy from the environment would hide the real peer
    if not settings.notifications_allow_private_targets:
        adapter = _PublicOnlyAdapter(max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
    return session


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def post_json(url: str, body: bytes, headers: dict, settings: Settings) -> Attempt:
    try:
        check_target(url, settings)
    except UnsafeTarget as exc:
        return Attempt(False, error=str(exc))
    except UnresolvedTarget as exc:
        return Attempt(False, error=str(exc), retryable=True)
    timeout = settings.notifications_timeout_seconds
    try:
        with _session(settings) as session:
            response = session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
                timeout=(timeout, timeout),
                allow_redirects=False,  # a redirect could point anywhere
            )
    except UnsafeTarget as exc:
        return Attempt(False, error=str(exc))
    except requests.Timeout as exc:
        return Attempt(False, error=f"timed out after {timeout:g}s: {exc}", retryable=True)
    except (
        requests.exceptions.InvalidURL,
        requests.exceptions.InvalidSchema,
        LocationValueError,  # urllib3's own, on a host name no DNS can hold
    ) as exc:
        return Attempt(False, error=f"invalid target: {exc}")  # the same at every attempt
    except requests.RequestException as exc:
        cause = _unsafe_in(exc)
        if cause is not None:
            return Attempt(False, error=str(cause))
        return Attempt(False, error=f"connection failed: {exc}", retryable=True)
    code = response.status_code
    if 200 <= code < 300:
        return Attempt(True, response_code=code)
    detail = f"{masking.mask_target(url)} answered {code}: {response.text[:300]}"
    if code == 429 or code >= 500:
        return Attempt(
            False,
            response_code=code,
            error=detail,
            retryable=True,
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )
    return Attempt(False, response_code=code, error=detail)  # 3xx, 4xx: retrying cannot help


def _unsafe_in(exc: BaseException) -> UnsafeTarget | None:
    # urllib3 wraps errors raised while connecting; find ours in the chain.
    seen = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, UnsafeTarget):
            return current
        stack += [current.__cause__, current.__context__]
        stack += [a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]
        stack.append(getattr(current, "reason", None))
    return None


# --- e-mail ------------------------------------------------------------------------------


def _reply(text) -> str:
    # An SMTP reply as text (not a bytes repr, whose escapes would hide an echoed password
    # from mask_error).
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)


def send_email(message: EmailMessage, settings: Settings) -> Attempt:
    if not settings.smtp_host:
        # The rule was saved with this as a warning (logic.rule_warnings): the operator may
        # still configure SMTP, and then the retried deliveries go out.
        return Attempt(False, error=SMTP_MISSING, retryable=True)
    timeout = settings.notifications_timeout_seconds
    try:
        if settings.smtp_port == 465:  # implicit TLS
            smtp = smtplib.SMTP_SSL(
                settings.smtp_host,
                settings.smtp_port,
                timeout=timeout,
                context=ssl.create_default_context(),
            )
        else:
            smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=timeout)
        with smtp:
            smtp.ehlo()
            if smtp.has_extn("starttls"):
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            elif settings.smtp_user and settings.smtp_port != 465:
                return Attempt(
                    False,
                    error=f"{settings.smtp_host} offers no STARTTLS: not sending the password",
                )
            if settings.smtp_user:
                smtp.login(settings.smtp_user, settings.smtp_password)
            refused = smtp.send_message(message)
            if refused:
                code, reason = next(iter(refused.values()))
                return Attempt(False, response_code=code, error=f"refused: {_reply(reason)}")
            return Attempt(True, response_code=250)
    except smtplib.SMTPRecipientsRefused as exc:
        code, reason = next(iter(exc.recipients.values()))
        return Attempt(
            False,
            response_code=code,
            error=f"recipient refused: {code} {_reply(reason)}",
            retryable=400 <= code < 500,
        )
    except smtplib.SMTPResponseException as exc:
        return Attempt(
            False,
            response_code=exc.smtp_code,
            error=f"SMTP {exc.smtp_code}: {_reply(exc.smtp_error)}",
            retryable=400 <= exc.smtp_code < 500,
        )
    except (smtplib.SMTPException, OSError) as exc:  # timeouts, refused connections, TLS
        return Attempt(False, error=f"SMTP {settings.smtp_host}: {exc}", retryable=True)


# --- one delivery ------------------------------------------------------------------------


def send(
    rule: NotificationRule, payload: dict, *, event_key: str, delivery: str, settings: Settings
) -> Attempt:
    """Deliver `payload` once over the rule's channel; `delivery` is the idempotency key.
    Never raises (a bug is a retryable failed attempt), and the attempt's error is masked
    (`mask_error`): callers store, answer and log it as it is."""
    try:
        attempt = _send(rule, payload, event_key=event_key, delivery=delivery, settings=settings)
    except Exception as exc:  # a bug must not leave a delivery SENDING until its lease ends
        log.error(
            "notification delivery crashed",
            extra={
                "rule_id": rule.id,
                "delivery": delivery,
                "traceback": mask_error(rule, traceback.format_exc(), settings),
            },
        )
        attempt = Attempt(False, error=f"{type(exc).__name__}: {exc}", retryable=True)
    attempt.error = mask_error(rule, attempt.error, settings)
    return attempt


def smtp_secrets(settings: Settings) -> list[str]:
    """The SMTP password as a server could echo it: plain, and inside AUTH PLAIN/LOGIN."""
    if not settings.smtp_password:
        return []
    user, password = settings.smtp_user or "", settings.smtp_password
    return [
        password,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(f"\0{user}\0{password}".encode()).decode(),
    ]


def mask_error(rule: NotificationRule, text: str | None, settings: Settings | None = None):
    """An error of `rule`'s deliveries as people may see it (the delivery log, the test
    answer, the logs): its target masked the way rule reads show it (shared.masking), and
    no SMTP credentials."""
    if not text:
        return text
    secrets = []
    if rule.channel == Channel.EMAIL:  # only an e-mail delivery speaks to the SMTP server
        secrets = smtp_secrets(settings or Settings.from_env())
    return masking.scrub(text, targets=[rule.target], secrets=secrets)


def _send(
    rule: NotificationRule, payload: dict, *, event_key: str, delivery: str, settings: Settings
) -> Attempt:
    summary = summarize(rule, payload, settings)
    if rule.channel == Channel.EMAIL:
        return send_email(email_message(rule, summary, settings), settings)
    headers = {DELIVERY_HEADER: delivery, EVENT_HEADER: summary.kind}
    if rule.channel == Channel.SLACK:
        body = json.dumps(slack_message(summary)).encode()
    else:
        body = json.dumps(webhook_body(rule, summary, event_key, delivery)).encode()
        if not rule.secret_encrypted:
            return Attempt(False, error="the rule has no signing secret")
        try:
            secret = decrypt(rule.secret_encrypted)
        except ValueError as exc:
            return Attempt(False, error=str(exc))
        headers[SIGNATURE_HEADER] = sign(secret, body)
    return post_json(rule.target, body, headers, settings)
