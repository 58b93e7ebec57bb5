"""Real receivers on loopback for notification deliveries: an HTTP server standing in for
Slack incoming webhooks and customer webhooks, and an SMTP server (aiosmtpd).

The HTTP receiver records every request (path, headers, body) and answers from a script:
`receiver.script(Answer(500), Answer(429, retry_after="120"), Answer(hang=True), ...)` -
each request takes the next answer, then plain 200 "ok" (Slack's answer) once it runs out.
`Answer(404, "Cannot POST ", echo=True)` appends the request's path and query to the body,
as web frameworks' error pages do.
"""

from __future__ import annotations

import email
import email.policy
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller

from tests.helpers import free_port


@dataclass
class Answer:
    status: int = 200
    body: str = "ok"
    retry_after: str | None = None
    hang: bool = False  # hold the request open until the receiver is released or closed
    echo: bool = False  # append the request's path (and query string) to the body


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes


@dataclass
class HttpReceiver:
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def script(self, *answers: Answer) -> None:
        self.answers[:] = answers

    def reset(self) -> None:
        self.requests.clear()
        self.answers.clear()
        self.release.clear()
        self.arrived.clear()

    def __enter__(self) -> HttpReceiver:
        state = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    state.requests.append(Received(self.path, dict(self.headers), body))
                    answer = state.answers.pop(0) if state.answers else Answer()
                state.arrived.set()
                if answer.hang:
                    state.release.wait(60)
                    return  # close without answering
                payload = (answer.body + (self.path if answer.echo else "")).encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                if answer.retry_after is not None:
                    self.send_header("Retry-After", answer.retry_after)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.port = self.port or free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


class _Mailbox:
    def __init__(self):
        self.messages: list[dict] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "message": email.message_from_bytes(
                    envelope.original_content or envelope.content, policy=email.policy.default
                ),
                "tls": session.ssl is not None,
            }
        )
        return "250 Message accepted for delivery"


class _RefusingMailbox(_Mailbox):
    def __init__(self, auth_reply):
        super().__init__()
        self.auth_reply = auth_reply

    async def handle_AUTH(self, server, session, envelope, args):
        return self.auth_reply(args)


class SmtpReceiver:
    """aiosmtpd on a loopback port; `messages` holds what it accepted (parsed). With a
    `tls_context` it offers STARTTLS (and AUTH PLAIN after it); `auth_reply(args)` answers
    every AUTH command (e.g. a 535 that echoes what the client sent, as some servers do)."""

    def __init__(self, tls_context=None, auth_reply=None):
        self.mailbox = _RefusingMailbox(auth_reply) if auth_reply else _Mailbox()
        self.port = free_port()
        self._controller = Controller(
            self.mailbox,
            hostname="127.0.0.1",
            port=self.port,
            tls_context=tls_context,
            # One mechanism: the client's last error is the answer to its password.
            auth_exclude_mechanism=["LOGIN"] if auth_reply else None,
        )

    @property
    def messages(self) -> list[dict]:
        return self.mailbox.messages

    def __enter__(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self._controller.stop()
