"""A local fake of an OpenAI-compatible chat-completions API, speaking its real wire format.

`POST /v1/chat/completions` takes OpenAI's request body (model, messages, response_format)
and answers a `chat.completion` object whose `choices[0].message.content` holds the reply.
Scriptable per request: a good JSON verdict, garbage, a slow answer (for timeouts) or a
server error; every request is recorded so tests can see what reached the "model".
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_KEY = "sk-test-0123456789abcdef"
GOOD_VERDICT = {
    "risk_score": 64,
    "summary": "The change rewrites token validation without tests.",
    "findings": [
        {
            "file": "app/auth.py",
            "line": 12,
            "severity": "HIGH",
            "message": "Token expiry is no longer checked",
            "confidence": 0.9,
        },
        {"severity": "low", "message": "Consider a test for the expired-token path"},
    ],
}


@dataclass
class FakeOpenAI:
    url: str = ""  # the API base, as AI_REVIEW_URL takes it (…/v1)
    mode: str = "good"  # good | garbage | invalid | slow | error500
    script: list = field(default_factory=list)  # modes for the next requests, then `mode`
    verdict: dict = field(default_factory=lambda: json.loads(json.dumps(GOOD_VERDICT)))
    slow_seconds: float = 2.0
    requests: list = field(default_factory=list)  # (headers dict, body dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.mode, self.script, self.requests = "good", [], []
            self.verdict = json.loads(json.dumps(GOOD_VERDICT))

    def next_mode(self) -> str:
        with self.lock:
            return self.script.pop(0) if self.script else self.mode

    def sent_text(self) -> str:
        """Everything the fake received, as one string (to look for leaked code)."""
        return "\n".join(json.dumps(body) for _, body in self.requests)


def _error(message: str, kind: str, code: str | None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def make_handler(state: FakeOpenAI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet test output
            pass

        def _send(self, status: int, body: dict | str) -> None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a timeout test)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path != "/v1/chat/completions":
                return self._send(
                    404, _error(f"Unknown URL {self.path}", "invalid_request_error", "unknown_url")
                )
            try:
                body = json.loads(raw)
            except ValueError:
                return self._send(
                    400,
                    _error(
                        "We could not parse the JSON body of your request.",
                        "invalid_request_error",
                        None,
                    ),
                )
            with state.lock:
                state.requests.append((dict(self.headers), body))
            if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                return self._send(
                    401,
                    _error(
                        "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"
                    ),
                )
            if not body.get("model") or not isinstance(body.get("messages"), list):
                return self._send(
                    400, _error("you must provide a model parameter", "invalid_request_error", None)
                )
            mode = state.next_mode()
            if mode == "slow":
                time.sleep(state.slow_seconds)
            if mode == "error500":
                return self._send(
                    500,
                    _error(
                        "The server had an error while processing your request. Sorry about that!",
                        "server_error",
                        None,
                    ),
                )
            if mode == "garbage":
                content = "Sure! Here is my review: the change looks risky, maybe 7/10."
            elif mode == "invalid":
                content = json.dumps({"risk_score": 150, "summary": ""})
            else:
                content = json.dumps(state.verdict)
            return self._send(
                200,
                {
                    "id": f"chatcmpl-fake{len(state.requests):06d}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content, "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": len(raw) // 4,
                        "completion_tokens": len(content) // 4,
                        "total_tokens": (len(raw) + len(content)) // 4,
                    },
                    "system_fingerprint": "fp_fake0001",
                },
            )

    return Handler


class FakeOpenAIServer:
    def __init__(self):
        self.state = FakeOpenAI()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self.state))
        self.server.daemon_threads = True
        self.state.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self.state

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
