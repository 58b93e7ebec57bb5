"""Secrets inside readable values, as people may see them: one rule for notification rule
targets (the API's rule reads, every stored, answered and logged delivery error) and Studio.

A URL target is a credential (a Slack incoming-webhook URL is the whole secret, in its path;
customer webhooks may carry a token in the query string or user:password before the host).
People see only its scheme and host: `https://hooks.slack.com/…`. An e-mail address is shown
whole. `scrub(text, targets=...)` takes every part of the given targets that is not shown out
of a free text (an error, a receiver's answer, a traceback), in the forms libraries print
them (whole, the path alone, percent-encoded or decoded), and also anything secret-like
whatever its origin: user:password in a URL, a Slack/Discord webhook path, the value of a
query parameter named like a token, key, secret, signature or password.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, unquote, urlsplit

MASK = "…"
# A path segment or query value shorter than this, found alone in a text, is a word
# ("hook", "api", "v1"), not a secret; the whole path and query are hidden at any length.
MIN_SECRET_PART = 6

# Query parameters named like a credential: token, access_token, api_key, X-Amz-Signature...
_SECRET_NAME = (
    r"(?:[A-Za-z0-9]*[_.-])*"
    r"(?:token|secret|password|passwd|pwd|key|apikey|accesstoken|authtoken|sig|signature|auth"
    r"|code|credentials?)"
)
# Patterns of secrets whatever target they come from: (regex, replacement).
GENERIC = [
    # user:password@ (or a lone user token) in front of a host
    (re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@'\"<>]+@"), rf"\1{MASK}@"),
    # webhook URLs whose path is the credential
    (
        re.compile(
            r"(\bhooks\.slack(?:-gov)?\.com/)(?:services|workflows|triggers)/[^\s'\"<>)\]]+",
            re.I,
        ),
        rf"\1{MASK}",
    ),
    (
        re.compile(r"(\b(?:discord|discordapp)\.com/api/webhooks/)[^\s'\"<>)\]]+", re.I),
        rf"\1{MASK}",
    ),
    # ?token=..., &api_key=..., &sig=... (values of secret-looking query parameters)
    (re.compile(rf"([?&;]{_SECRET_NAME}=)[^&#\s'\"<>]+", re.I), rf"\1{MASK}"),
]


def _split(target: str):
    try:
        parts = urlsplit(target.strip())
        parts.port  # noqa: B018 (raises on a malformed port)
    except (ValueError, AttributeError):
        return None
    return parts if parts.scheme and parts.netloc else None


def _shown(parts) -> str:
    """scheme://host[:port] of a split URL: what may be shown of it."""
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def mask_target(target: str | None, channel=None) -> str:
    """A notification rule's target as people see it: an EMAIL channel's address whole, a URL
    only its scheme, host and port (`https://hooks.slack.com/…`), anything else not at all."""
    if target is None:
        return ""
    if str(getattr(channel, "value", channel)) == "EMAIL":
        return target
    parts = _split(target)
    return f"{_shown(parts)}/{MASK}" if parts else MASK


def _forms(text: str) -> set[str]:
    """`text` as libraries may print it: as is, percent-decoded, percent-encoded."""
    return {text, unquote(text), quote(text, safe="/:@?&=#%"), quote(text, safe="")}


def _hidden_parts(target: str) -> dict[str, str]:
    """What to replace in a text, for one target: {fragment: replacement}."""
    target = target.strip()
    parts = _split(target)
    if parts is None:
        return {}
    shown = _shown(parts)
    masked = f"{shown}/{MASK}"
    rest = target.split(parts.netloc, 1)[1]  # path, query and fragment as written
    found: dict[str, str] = {}

    def hide(fragment: str, replacement: str, *, min_length: int = 1) -> None:
        for form in _forms(fragment):
            if len(form) >= min_length and form.lower() not in shown.lower():
                found.setdefault(form, replacement)

    for whole in (target, shown + rest, target.split("#")[0], target.split("?")[0]):
        hide(whole, masked)
    for piece in (rest, parts.path + ("?" + parts.query if parts.query else "")):
        if piece not in ("", "/"):
            hide(piece, "/" + MASK if piece.startswith("/") else MASK, min_length=2)
    if parts.path not in ("", "/"):
        hide(parts.path, "/" + MASK, min_length=2)
    userinfo = parts.netloc.rpartition("@")[0]
    for piece in (parts.query, parts.fragment, userinfo, *userinfo.split(":")):
        if piece:
            hide(piece, MASK)
    pieces = [s for s in parts.path.split("/") if s]
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        pieces += [f"{name}={value}", value]
    for piece in pieces:
        hide(piece, MASK, min_length=MIN_SECRET_PART)
    return found


def scrub(
    text: str | None, targets: Iterable[str | None] = (), secrets: Iterable[str | None] = ()
) -> str | None:
    """`text` without the hidden parts of `targets` (see mask_target), without `secrets`
    (e.g. a password, shown nowhere at all) and without anything secret-like."""
    if not text:
        return text
    found: dict[str, str] = {}
    for target in targets:
        if target:
            for fragment, replacement in _hidden_parts(target).items():
                found.setdefault(fragment, replacement)
    for secret in secrets:
        for form in _forms(secret) if secret else ():
            found.setdefault(form, MASK)
    if found:
        # Longest first, in one pass: a replacement is never searched again.
        ordered = sorted(found, key=len, reverse=True)
        pattern = re.compile("|".join(re.escape(f) for f in ordered), re.I)
        lowered = {f.lower(): r for f, r in found.items()}
        text = pattern.sub(lambda m: lowered[m.group(0).lower()], text)
    for regex, replacement in GENERIC:
        text = regex.sub(replacement, text)
    return text
