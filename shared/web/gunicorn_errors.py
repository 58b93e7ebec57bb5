"""What gunicorn answers itself, before any app sees the request (a request line or a
header over gunicorn's limits, a request it cannot parse), in the services' JSON error
shape `{code, status, message, errors}` instead of gunicorn's HTML page.

gunicorn has no setting for these answers: every one of them is written by
`gunicorn.util.write_error`, which gunicorn.conf.py replaces in each worker
(`post_worker_init`) with `install(worker.cfg)`. The limits named in the messages are the
worker's own (gunicorn.conf.py sets them; a command-line flag may change them)."""

from __future__ import annotations

import json
from functools import partial

from gunicorn import util


def install(cfg) -> None:
    """From now on this process's gunicorn answers its own refusals in JSON."""
    util.write_error = partial(
        write_json_error,
        line=cfg.limit_request_line,
        fields=cfg.limit_request_fields,
        field_size=cfg.limit_request_field_size,
    )


def write_json_error(
    sock, status_int: int, reason: str, mesg: str, *, line: int, fields: int, field_size: int
) -> None:
    """`gunicorn.util.write_error`'s signature and wire behaviour (one answer, then the
    connection closes), in JSON."""
    message, errors = explain(status_int, mesg, line=line, fields=fields, field_size=field_size)
    body = json.dumps(
        {"code": status_int, "status": reason, "message": message, "errors": errors}
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        "\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


def explain(
    status_int: int, mesg: str, *, line: int, fields: int, field_size: int
) -> tuple[str, dict]:
    """The message and `errors` of one of gunicorn's refusals (`mesg` is gunicorn's text)."""
    if status_int == 431:
        if "fields size" in mesg:
            return (
                f"a request header is longer than {field_size} bytes",
                {"headers": [f"each header line at most {field_size} bytes"]},
            )
        if "trailer" in mesg:
            return (
                "the request's trailer section is too large",
                {"headers": [f"each trailer line at most {field_size} bytes"]},
            )
        return (
            f"more than {fields} request headers",
            {"headers": [f"at most {fields} header lines"]},
        )
    if status_int == 414:
        return (
            f"the request line is longer than {line} bytes",
            {"url": [f"method, path and query at most {line} bytes together"]},
        )
    if status_int >= 500 and not mesg:
        return "internal error", {}
    return mesg or "bad request", {}
