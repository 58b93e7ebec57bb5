"""shared.masking: the one rule for showing notification targets and the texts that may carry
them (delivery errors, receivers' answers, tracebacks), used by the notifications API, its
worker and Studio. The end-to-end proofs are in tests/security/test_target_secrets.py and
tests/security/test_studio_abuse.py."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from shared.masking import mask_target, scrub

SLACK = "https://hooks.slack.com/services/T0SECRET1/B0SECRET2/abcdefghijklmnopqrstuvwx"


@pytest.mark.parametrize(
    "target,channel,shown",
    [
        (SLACK, "SLACK", "https://hooks.slack.com/…"),
        ("https://hooks.example.com:8443/in?token=t0psecret", "WEBHOOK", "https://hooks.example.com:8443/…"),
        ("https://bot:pa55word@hooks.example.com/x", "WEBHOOK", "https://hooks.example.com/…"),
        ("oncall@example.com", "EMAIL", "oncall@example.com"),
        ("not a url", "WEBHOOK", "…"),
        ("https://[::1", "WEBHOOK", "…"),
    ],
)  # fmt: skip
def test_a_target_shows_only_its_scheme_and_host(target, channel, shown):
    assert mask_target(target, channel) == shown


@pytest.mark.parametrize(
    "text",
    [
        f"connection failed: {SLACK}",
        "Max retries exceeded with url: /services/T0SECRET1/B0SECRET2/abcdefghijklmnopqrstuvwx",
        "Cannot POST " + quote("/services/T0SECRET1/B0SECRET2/abcdefghijklmnopqrstuvwx", safe=""),
        "token abcdefghijklmnopqrstuvwx revoked",
        "HOOKS.SLACK.COM/SERVICES/T0SECRET1/B0SECRET2/ABCDEFGHIJKLMNOPQRSTUVWX",
    ],
)
def test_no_secret_part_of_a_target_survives_in_a_text(text):
    masked = scrub(text, targets=[SLACK])
    for secret in ("T0SECRET1", "B0SECRET2", "abcdefghijklmnopqrstuvwx"):
        assert secret.lower() not in masked.lower()


def test_what_is_not_secret_is_kept():
    text = f"{SLACK} answered 404: no_service"
    assert scrub(text, targets=[SLACK]) == "https://hooks.slack.com/… answered 404: no_service"
    webhook = "http://127.0.0.1:5000/hook"
    assert scrub(f"{webhook} answered 500: boom", targets=[webhook]) == (
        "http://127.0.0.1:5000/… answered 500: boom"
    )
    assert scrub("lead@acme.test refused", targets=["lead@acme.test"]) == "lead@acme.test refused"
    assert scrub(None, targets=[SLACK]) is None


def test_query_tokens_userinfo_and_given_secrets():
    webhook = "https://hooks.example.com/in?token=t0psecret&v=2"
    assert "t0psecret" not in scrub("echo: /in?token=t0psecret&v=2 and t0psecret", [webhook])
    userinfo = "https://bot:pa55word@hooks.example.com/x"
    assert "pa55word" not in scrub("401 for bot:pa55word", [userinfo])
    assert scrub("AUTH failed for hunter22", secrets=["hunter22"]) == "AUTH failed for …"


def test_secret_like_text_of_unknown_origin():
    text = (
        "GET https://x.example/cb?state=1&access_token=abc123&author=me, "
        "https://user:pw@db.example/, https://hooks.slack.com/services/T1/B2/c3"
    )
    assert scrub(text) == (
        "GET https://x.example/cb?state=1&access_token=…&author=me, "
        "https://…@db.example/, https://hooks.slack.com/…"
    )
