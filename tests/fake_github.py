"""A local fake of GitHub's OAuth and REST endpoints, speaking GitHub's real wire format.

User objects are real GitHub user objects (the `sender` of a recorded push webhook in
../shared/github-webhooks), with the fields `/user` adds; error bodies are GitHub's.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from flask import Flask, jsonify, request
from werkzeug.serving import make_server

REFERENCE = Path(__file__).resolve().parents[2] / "shared"
SENDER = json.loads((REFERENCE / "github-webhooks/push/1.payload.json").read_text())["sender"]
BAD_CODE = {
    "error": "bad_verification_code",
    "error_description": "The code passed is incorrect or expired.",
    "error_uri": "https://docs.github.com/apps/managing-oauth-apps/"
    "troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code",
}
BAD_CREDENTIALS = {
    "message": "Bad credentials",
    "documentation_url": "https://docs.github.com/rest",
}
CLIENT_ID = "Iv1.fakeclientid0001"
CLIENT_SECRET = "fake-client-secret"


def github_user(login: str, github_id: int, name: str, email: str | None) -> dict:
    user = copy.deepcopy(SENDER)
    for key, value in list(user.items()):
        if isinstance(value, str):
            user[key] = value.replace(SENDER["login"], login).replace(
                str(SENDER["id"]), str(github_id)
            )
    user.update(
        {
            "login": login,
            "id": github_id,
            "type": "User",
            "name": name,
            "email": email,
            "company": None,
            "blog": "",
            "location": None,
            "bio": None,
            "public_repos": 3,
            "followers": 1,
            "following": 0,
            "created_at": "2019-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
        }
    )
    return user


@dataclass
class FakeGitHub:
    url: str = ""
    mode: str = "ok"  # ok | error500 | slow
    slow_seconds: float = 3.0
    codes: dict = field(default_factory=dict)  # code -> access token
    users: dict = field(default_factory=dict)  # access token -> (user dict, emails)
    requests: list = field(default_factory=list)  # (method, path, form/query)

    def add_user(
        self,
        code: str,
        login: str,
        github_id: int,
        name: str,
        *,
        email=None,
        private_email: str | None = None,
    ) -> str:
        token = f"gho_fake{github_id:010d}{len(self.codes)}"
        self.codes[code] = token
        emails = []
        if private_email:
            emails = [
                {
                    "email": f"{login}@users.noreply.github.com",
                    "primary": False,
                    "verified": True,
                    "visibility": None,
                },
                {
                    "email": private_email,
                    "primary": True,
                    "verified": True,
                    "visibility": "private",
                },
            ]
        self.users[token] = (github_user(login, github_id, name, email), emails)
        return token


def make_app(state: FakeGitHub) -> Flask:
    app = Flask("fake_github")

    @app.before_request
    def record():
        state.requests.append((request.method, request.path, request.values.to_dict()))
        if state.mode == "error500":
            return jsonify({"message": "Server Error"}), 500
        if state.mode == "slow":
            time.sleep(state.slow_seconds)
        return None

    @app.get("/login/oauth/authorize")
    def authorize():
        return "<html>authorize DevMetrics?</html>"

    @app.post("/login/oauth/access_token")
    def access_token():
        form = request.form
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return jsonify(
                {
                    "error": "incorrect_client_credentials",
                    "error_description": "The client_id and/or client_secret passed are incorrect.",
                }
            )
        token = state.codes.pop(form.get("code"), None)  # a code works once
        if token is None:
            return jsonify(BAD_CODE)
        return jsonify(
            {"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"}
        )

    def _user():
        auth = request.headers.get("Authorization", "")
        return state.users.get(auth.removeprefix("Bearer ").removeprefix("token "))

    @app.get("/user")
    def user():
        found = _user()
        return (jsonify(found[0]), 200) if found else (jsonify(BAD_CREDENTIALS), 401)

    @app.get("/user/emails")
    def emails():
        found = _user()
        return (jsonify(found[1]), 200) if found else (jsonify(BAD_CREDENTIALS), 401)

    return app


class FakeGitHubServer:
    def __init__(self):
        self.state = FakeGitHub()
        self.server = make_server("127.0.0.1", 0, make_app(self.state), threaded=True)
        self.state.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeGitHub:
        self.thread.start()
        return self.state

    def __exit__(self, *exc):
        self.server.shutdown()


def env_for(state: FakeGitHub) -> dict:
    return {
        "GITHUB_URL": state.url,
        "GITHUB_API_URL": state.url,
        "GITHUB_CLIENT_ID": CLIENT_ID,
        "GITHUB_CLIENT_SECRET": CLIENT_SECRET,
        "GITHUB_TIMEOUT_SECONDS": "1",
    }
