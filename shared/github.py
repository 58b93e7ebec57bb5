"""GitHub, from our side: the OAuth web flow and the REST API, at configurable base URLs
(github.com, GitHub Enterprise, or the tests' local fake). Failures become UpstreamError
(502) or BadRequest (400) with one clear message; nothing here touches the database."""

from __future__ import annotations

from urllib.parse import urlencode

import requests

from shared.config import Settings
from shared.errors import BadRequest, UpstreamError

OAUTH_SCOPES = "read:user user:email"
API_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}


class GitHub:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings.from_env()
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "DevMetrics"

    # OAuth web flow -------------------------------------------------------------------
    def authorize_url(self, state: str, redirect_uri: str) -> str:
        query = urlencode(
            {
                "client_id": self.settings.github_client_id,
                "redirect_uri": redirect_uri,
                "scope": OAUTH_SCOPES,
                "state": state,
                "allow_signup": "true",
            }
        )
        return f"{self.settings.github_url}/login/oauth/authorize?{query}"

    def exchange_code(self, code: str, redirect_uri: str) -> str:
        """The user's access token for a callback `code`."""
        data = self._call(
            "POST",
            f"{self.settings.github_url}/login/oauth/access_token",
            headers={"Accept": "application/json"},
            data={
                "client_id": self.settings.github_client_id,
                "client_secret": self.settings.github_client_secret,
                "code": code,
                "redirect_uri": redirect_uri,
            },
        )
        # GitHub reports a bad or expired code as 200 with an "error" field.
        if "error" in data:
            description = data.get("error_description") or data["error"]
            raise BadRequest(f"GitHub refused the sign-in code ({data['error']}): {description}")
        token = data.get("access_token")
        if not token:
            raise UpstreamError("GitHub answered the code exchange without an access token")
        return token

    # REST API -------------------------------------------------------------------------
    def get(self, path: str, token: str | None = None):
        headers = dict(API_HEADERS)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self._call("GET", f"{self.settings.github_api_url}{path}", headers=headers)

    def user_with_email(self, token: str) -> dict:
        """`/user`, with the primary verified e-mail from `/user/emails` when it is private."""
        user = self.get("/user", token)
        if not user.get("email"):
            emails = self.get("/user/emails", token)
            primary = [e for e in emails if e.get("primary") and e.get("verified")]
            user["email"] = primary[0]["email"] if primary else None
        return user

    def _call(self, method: str, url: str, **kwargs):
        try:
            response = self.session.request(
                method, url, timeout=self.settings.github_timeout_seconds, **kwargs
            )
        except requests.Timeout:
            raise UpstreamError("GitHub did not answer in time; try again") from None
        except requests.RequestException as exc:
            raise UpstreamError(f"GitHub could not be reached: {type(exc).__name__}") from None
        if response.status_code >= 500:
            raise UpstreamError(f"GitHub is failing (HTTP {response.status_code}); try again")
        if response.status_code in (401, 403):
            raise BadRequest(f"GitHub refused the request (HTTP {response.status_code})")
        if response.status_code >= 400:
            raise UpstreamError(f"GitHub answered HTTP {response.status_code} for {url}")
        try:
            return response.json()
        except ValueError:
            raise UpstreamError("GitHub answered with something that is not JSON") from None
