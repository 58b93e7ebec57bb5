"""A local fake of GitHub's OAuth and REST endpoints, speaking GitHub's real wire format.

User objects are real GitHub user objects (the `sender` of a recorded push webhook in
tests/fixtures/github/webhooks), with the fields `/user` adds; error bodies are GitHub's.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

from flask import Flask, jsonify, request
from werkzeug.serving import make_server

from tests.helpers import GITHUB_API, WEBHOOK_SAMPLES

SENDER = json.loads((WEBHOOK_SAMPLES / "push/1.payload.json").read_text())["sender"]
REPOSITORY = json.loads((GITHUB_API / "get-repository.json").read_text())[0]["response"]
NOT_FOUND = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
# What GitHub lists for a token that can read (and push to) a repository.
READER_PERMISSIONS = {"admin": False, "maintain": False, "push": True, "triage": True, "pull": True}
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


def push_commit_as_api(commit: dict) -> dict:
    """A push payload's commit in the shape of the REST API's commit object."""
    author = commit.get("author") or {}
    person = {
        "name": author.get("name"),
        "email": author.get("email"),
        "date": commit.get("timestamp"),
    }
    login = author.get("username")
    return {
        "sha": commit["id"],
        "node_id": "C_" + commit["id"][:10],
        "commit": {"author": person, "committer": person, "message": commit.get("message")},
        "author": {"login": login, "id": 1, "type": "User"} if login else None,
        "committer": None,
        "parents": [],
        "files": [{"filename": f} for f in commit.get("modified") or []],
    }


def load_rest_data() -> dict:
    """What the fake serves for one repository, all from recorded real GitHub objects."""
    hooks = WEBHOOK_SAMPLES
    issues = [
        i
        for x in json.loads((GITHUB_API / "paginate-issues.json").read_text())
        for i in x["response"]
    ]
    closed = json.loads((hooks / "pull_request/closed.payload.json").read_text())["pull_request"]
    opened = json.loads((hooks / "pull_request/opened.payload.json").read_text())["pull_request"]
    pulls = [closed]
    for n, day in ((3, "2019-05-16"), (4, "2019-05-17")):
        pr = copy.deepcopy(opened)
        pr.update(
            number=n,
            id=opened["id"] + n,
            title=f"{opened['title']} #{n}",
            created_at=f"{day}T10:00:00Z",
            updated_at=f"{day}T11:00:00Z",
        )
        pr["head"] = {**pr["head"], "ref": f"feature-{n}"}
        pulls.append(pr)
    pulls.sort(key=lambda p: p["updated_at"], reverse=True)
    review = json.loads((hooks / "pull_request_review/submitted.payload.json").read_text())[
        "review"
    ]
    first = json.loads((hooks / "push/with-new-branch.payload.json").read_text())["commits"][0]
    later = {
        **first,
        "id": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c",
        "timestamp": "2019-05-16T09:00:00-04:00",
        "message": "A later commit",
    }
    commits = [push_commit_as_api(c) for c in (later, first)]  # newest first, as GitHub lists
    status_payload = json.loads((hooks / "deployment_status/payload.json").read_text())
    deployment = status_payload["deployment"]
    return {
        "issues": issues,
        "pulls": pulls,
        "reviews": {2: [review]},
        "pr_commits": {2: commits, 3: [], 4: []},
        "commits": commits,
        "deployments": [deployment],
        "statuses": {deployment["id"]: [status_payload["deployment_status"]]},
    }


@dataclass
class FakeGitHub:
    url: str = ""
    mode: str = "ok"  # ok | error500 | slow
    slow_seconds: float = 3.0
    codes: dict = field(default_factory=dict)  # code -> access token
    users: dict = field(default_factory=dict)  # access token -> (user dict, emails)
    requests: list = field(default_factory=list)  # (method, path, form/query)
    rest: dict = field(default_factory=dict)  # repository data served under /repos/...
    page_cap: int = 100  # GitHub's maximum per_page; lower it to force pagination
    rate_limit_once: set = field(default_factory=set)  # paths answered 403 + reset, once
    error502_once: set = field(default_factory=set)  # paths answered 502, once
    rest_requests: list = field(default_factory=list)  # (path, query, If-None-Match)
    tokens_used: list = field(default_factory=list)  # (path, bearer token) of each request
    # full_name (lowercase) -> (repository object, tokens that can read it, or None: anyone)
    repositories: dict = field(default_factory=dict)
    # A GitHub App: its id and public key (the JWT's check), where it is installed (full_name
    # lowercase -> installation id) and the installation tokens it issued (token -> id).
    app_id: str = ""
    app_public_key: str = ""
    installations: dict = field(default_factory=dict)
    installation_tokens: dict = field(default_factory=dict)

    def add_repository(
        self, full_name: str, github_id: int, *, readers=None, private: bool = True
    ) -> dict:
        """A repository served at /repos/{full_name}: the recorded real repository object
        with this name and id, readable by the tokens in `readers` (GitHub answers 404 to
        the others, as it does for a private repository they cannot see); `readers=None`
        makes it public. Its other resources come from `rest`, for readers only."""
        owner, name = full_name.split("/")
        repo = copy.deepcopy(REPOSITORY)
        repo.update(id=github_id, name=name, full_name=full_name, private=private)
        repo["owner"] = {**repo["owner"], "login": owner}
        self.repositories[full_name.lower()] = (repo, None if readers is None else set(readers))
        return repo

    def can_read(self, full_name: str, token: str | None) -> bool | None:
        """Whether `token` reads a repository added with `add_repository` (None: not one):
        a reader's token, or an installation token of the App installed on it."""
        found = self.repositories.get(full_name.lower())
        if found is None:
            return None
        installation = self.installation_tokens.get(token)
        if installation is not None:
            return self.installations.get(full_name.lower()) == installation
        return found[1] is None or token in found[1]

    def app_claims(self, authorization: str) -> dict | None:
        """The App JWT's claims when it is signed with the App's key, else None."""
        import jwt

        token = authorization.removeprefix("Bearer ")
        try:
            claims = jwt.decode(token, self.app_public_key, algorithms=["RS256"])
        except jwt.PyJWTError:
            return None
        return claims if str(claims.get("iss")) == self.app_id else None

    def add_user(
        self,
        code: str,
        login: str,
        github_id: int,
        name: str,
        *,
        email=None,
        private_email: str | None = None,
        other_emails: dict[str, bool] | None = None,  # address -> verified
    ) -> str:
        token = f"gho_fake{github_id:010d}{len(self.codes)}"
        self.codes[code] = token
        emails = []
        if email:  # GitHub lists the public address too (verified: only those are shown)
            emails = [{"email": email, "primary": True, "verified": True, "visibility": "public"}]
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
        emails += [
            {"email": address, "primary": False, "verified": verified, "visibility": None}
            for address, verified in (other_emails or {}).items()
        ]
        self.users[token] = (github_user(login, github_id, name, email), emails)
        return token


def make_app(state: FakeGitHub) -> Flask:
    app = Flask("fake_github")

    @app.before_request
    def record():
        state.requests.append((request.method, request.path, request.values.to_dict()))
        auth = request.headers.get("Authorization", "")
        if auth:
            state.tokens_used.append((request.path, auth.split(" ", 1)[-1]))
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

    def _token():
        auth = request.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ").removeprefix("token ") or None

    # The GitHub App's endpoints (authenticated by its JWT), GitHub's wire format.
    @app.get("/repos/<owner>/<name>/installation")
    def repository_installation(owner, name):
        if state.app_claims(request.headers.get("Authorization", "")) is None:
            return jsonify(BAD_CREDENTIALS), 401
        installation = state.installations.get(f"{owner}/{name}".lower())
        if installation is None:
            return jsonify(NOT_FOUND), 404
        account = {**SENDER, "login": owner, "type": "Organization"}
        return jsonify(
            {"id": installation, "account": account, "app_id": int(state.app_id),
             "target_type": "Organization", "permissions": {"metadata": "read",
             "contents": "read", "pull_requests": "read"}, "repository_selection": "selected"}
        )  # fmt: skip

    @app.post("/app/installations/<int:installation>/access_tokens")
    def installation_token(installation):
        if state.app_claims(request.headers.get("Authorization", "")) is None:
            return jsonify(BAD_CREDENTIALS), 401
        if installation not in state.installations.values():
            return jsonify(NOT_FOUND), 404
        token = f"ghs_fake{installation}x{len(state.installation_tokens)}"
        state.installation_tokens[token] = installation
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        body = {"token": token, "expires_at": expires, "repository_selection": "selected"}
        return jsonify({**body, "permissions": {"contents": "read"}}), 201

    @app.get("/repos/<owner>/<name>")
    def repository(owner, name):
        readable = state.can_read(f"{owner}/{name}", _token())
        if readable is not None:
            if not readable:
                return jsonify(NOT_FOUND), 404
            repo = state.repositories[f"{owner}/{name}".lower()][0]
            return jsonify({**repo, "permissions": READER_PERMISSIONS})
        repo = state.rest.get("repository")
        if not repo or repo["full_name"].lower() != f"{owner}/{name}".lower():
            return jsonify(NOT_FOUND), 404
        return jsonify({**repo, "permissions": READER_PERMISSIONS})

    @app.get("/repos/<owner>/<name>/<path:resource>")
    def rest(owner, name, resource):
        import hashlib

        state.rest_requests.append(
            (resource, request.args.to_dict(), request.headers.get("If-None-Match"))
        )
        if state.can_read(f"{owner}/{name}", _token()) is False:
            return jsonify(NOT_FOUND), 404
        headers = {
            "X-RateLimit-Limit": "5000",
            "X-RateLimit-Remaining": "4999",
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
        }
        if resource in state.rate_limit_once:
            state.rate_limit_once.discard(resource)
            headers.update(
                {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(time.time()) + 1)}
            )
            body = {
                "message": "API rate limit exceeded for user ID 1.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
            }
            return jsonify(body), 403, headers
        if resource in state.error502_once:
            state.error502_once.discard(resource)
            return jsonify({"message": "Server Error"}), 502
        if resource.startswith("compare/"):
            return _compare(state, headers)
        detail = _pull_request_detail(state.rest, resource)
        if detail is not None:
            return jsonify(detail), 200, headers
        items = _resource_items(state.rest, resource)
        if items is None:
            return jsonify(
                {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
            ), 404
        since = request.args.get("since")
        if since and resource == "issues":
            items = [i for i in items if i["updated_at"] >= since]
        if since and resource == "commits":
            items = [c for c in items if c["commit"]["author"]["date"] >= since]
        per_page = min(int(request.args.get("per_page", 30)), state.page_cap)
        page = int(request.args.get("page", 1))
        chunk = items[(page - 1) * per_page : page * per_page]
        etag = '"' + hashlib.sha1(json.dumps(chunk, sort_keys=True).encode()).hexdigest() + '"'
        headers["ETag"] = etag
        if request.headers.get("If-None-Match") == etag:
            return "", 304, headers
        last = max(1, -(-len(items) // per_page))
        links = []
        base = request.base_url
        query = {k: v for k, v in request.args.items() if k != "page"}

        def link(n, rel):
            return f'<{base}?{urlencode({**query, "page": n})}>; rel="{rel}"'

        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if links:
            headers["Link"] = ", ".join(links)
        return jsonify(chunk), 200, headers

    return app


def _compare(state, headers):
    """GET /repos/{o}/{r}/compare/{base}...{head}: its commits, paginated like GitHub does."""
    commits = state.rest.get("compare", [])
    per_page = min(int(request.args.get("per_page", 250)), 250)
    page = int(request.args.get("page", 1))
    chunk = commits[(page - 1) * per_page : page * per_page]
    if page * per_page < len(commits):
        query = {**request.args.to_dict(), "page": page + 1}
        headers["Link"] = f'<{request.base_url}?{urlencode(query)}>; rel="next"'
    body = {
        "status": "ahead",
        "ahead_by": len(commits),
        "behind_by": 0,
        "total_commits": len(commits),
        "commits": chunk,
        "files": [],
    }
    return jsonify(body), 200, headers


# What GitHub's pull-request list leaves out of each object (its "pull-request-simple"
# schema): the full object is only at GET /repos/{owner}/{repo}/pulls/{number}.
NOT_IN_PULL_REQUEST_LIST = (
    "merged",
    "mergeable",
    "rebaseable",
    "mergeable_state",
    "merged_by",
    "comments",
    "review_comments",
    "maintainer_can_modify",
    "commits",
    "additions",
    "deletions",
    "changed_files",
)


def _pull_request_detail(data: dict, resource: str) -> dict | None:
    parts = resource.split("/")
    if len(parts) != 2 or parts[0] != "pulls" or not parts[1].isdigit():
        return None
    return next((p for p in data.get("pulls", []) if p["number"] == int(parts[1])), None)


def _resource_items(data: dict, resource: str):
    parts = resource.split("/")
    if resource == "pulls":
        return [
            {k: v for k, v in pr.items() if k not in NOT_IN_PULL_REQUEST_LIST}
            for pr in data.get("pulls", [])
        ]
    if resource in ("issues", "commits", "deployments"):
        return data.get(resource, [])
    if len(parts) == 3 and parts[0] == "pulls" and parts[2] in ("reviews", "commits"):
        key = "reviews" if parts[2] == "reviews" else "pr_commits"
        return data.get(key, {}).get(int(parts[1]), [])
    if len(parts) == 3 and parts[0] == "pulls" and parts[2] == "files":
        return data.get("pr_files", {}).get(int(parts[1]), [])
    if len(parts) == 3 and parts[0] == "deployments" and parts[2] == "statuses":
        return data.get("statuses", {}).get(int(parts[1]), [])
    return None


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
