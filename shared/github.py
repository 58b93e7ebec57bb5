"""GitHub, from our side: the OAuth web flow and the REST API, at configurable base URLs
(github.com, GitHub Enterprise, or the tests' local fake). Failures become UpstreamError
(502) or BadRequest (400) with one clear message; nothing here touches the database."""

from __future__ import annotations

import threading
import time
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
        """`/user`, with the primary verified e-mail from `/user/emails` when it is private,
        and `verified_emails`: every address GitHub lists verified for the account, with the
        public one (GitHub publishes only a verified address), lowercased. A refusal of
        `/user/emails` (a token without the `user:email` scope) leaves only the public
        address; without one it fails the sign-in, as before."""
        user = self.get("/user", token)
        try:
            emails = self.get("/user/emails", token)
        except BadRequest:
            if not user.get("email"):
                raise
            emails = []
        emails = [e for e in emails if isinstance(e, dict) and isinstance(e.get("email"), str)]
        if not user.get("email"):
            primary = [e for e in emails if e.get("primary") and e.get("verified")]
            user["email"] = primary[0]["email"] if primary else None
        verified = {e["email"].lower() for e in emails if e.get("verified") is True}
        if user.get("email"):
            verified.add(user["email"].lower())
        user["verified_emails"] = sorted(verified)
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


class RestPage:
    def __init__(self, status: int, data, headers, next_url: str | None):
        self.status, self.data, self.headers, self.next_url = status, data, headers, next_url


class GitHubRest:
    """The REST API for backfills: `Link` pagination, conditional requests (ETag), rate
    limits honoured (wait for the reset or Retry-After instead of hammering), 5xx retried
    with backoff. `sleep` is injectable so waits are observable."""

    MAX_ATTEMPTS = 5

    def __init__(
        self,
        token: str | None,
        settings: Settings | None = None,
        *,
        sleep=None,
        max_wait_seconds: float = 900.0,
        attempts: int = MAX_ATTEMPTS,
    ):
        self.settings = settings or Settings.from_env()
        self.attempts = attempts
        self.session = requests.Session()
        self.session.headers.update({**API_HEADERS, "User-Agent": "DevMetrics"})
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.sleep = sleep or time.sleep
        self.max_wait = max_wait_seconds
        self.rate_limit_remaining: int | None = None
        self.requests_made = 0
        self.waited_seconds = 0.0

    def url(self, path: str) -> str:
        return path if path.startswith("http") else f"{self.settings.github_api_url}{path}"

    def get(self, path: str, params: dict | None = None, etag: str | None = None) -> RestPage:
        headers = {"If-None-Match": etag} if etag else {}
        for attempt in range(1, self.attempts + 1):
            try:
                response = self.session.get(
                    self.url(path),
                    params=params,
                    headers=headers,
                    timeout=self.settings.github_timeout_seconds,
                )
            except requests.RequestException as exc:
                if attempt == self.attempts:
                    raise UpstreamError(
                        f"GitHub could not be reached: {type(exc).__name__}"
                    ) from None
                self._wait(2 ** (attempt - 1) * 0.5)
                continue
            self.requests_made += 1
            remaining = response.headers.get("X-RateLimit-Remaining")
            if remaining is not None and remaining.isdigit():
                self.rate_limit_remaining = int(remaining)
            if response.status_code in (403, 429) and (
                remaining == "0" or "Retry-After" in response.headers
            ):
                retry_after = response.headers.get("Retry-After")
                reset = response.headers.get("X-RateLimit-Reset")
                if retry_after and retry_after.isdigit():
                    wait = float(retry_after)
                elif reset and reset.isdigit():
                    wait = max(0.0, int(reset) - time.time()) + 1
                else:
                    wait = 60.0
                if wait > self.max_wait:
                    raise UpstreamError(f"GitHub rate limit: next request allowed in {int(wait)} s")
                self._wait(wait)
                continue
            if response.status_code >= 500:
                if attempt == self.attempts:
                    raise UpstreamError(f"GitHub kept failing (HTTP {response.status_code})")
                self._wait(2 ** (attempt - 1) * 0.5)
                continue
            if response.status_code == 304:
                return RestPage(304, None, response.headers, None)
            if response.status_code in (401, 403):
                raise BadRequest(f"GitHub refused the token (HTTP {response.status_code})")
            if response.status_code == 404:
                raise BadRequest(f"GitHub has no {path} (or the token cannot see it)")
            if response.status_code >= 400:
                raise UpstreamError(f"GitHub answered HTTP {response.status_code} for {path}")
            next_url = response.links.get("next", {}).get("url")
            return RestPage(response.status_code, response.json(), response.headers, next_url)
        raise UpstreamError("GitHub did not answer usefully")  # pragma: no cover

    def _wait(self, seconds: float) -> None:
        self.waited_seconds += seconds
        self.sleep(seconds)


class GitHubApp:
    """A GitHub App's own credentials (GITHUB_APP_ID, GITHUB_APP_PRIVATE_KEY): a JWT signed
    with its private key (RS256, valid ten minutes, as GitHub allows), and installation
    access tokens for the repositories it is installed on, kept per process until five
    minutes before they expire."""

    _tokens: dict[str, tuple[str, float]] = {}  # full_name (lowercase) -> (token, expiry)
    _lock = threading.Lock()

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings.from_env()

    @property
    def configured(self) -> bool:
        return bool(self.settings.github_app_id and self.settings.github_app_private_key)

    def jwt(self) -> str:
        import jwt  # PyJWT, only needed with an App

        now = int(time.time())
        claims = {"iat": now - 60, "exp": now + 540, "iss": self.settings.github_app_id}
        return jwt.encode(claims, self.settings.github_app_private_key, algorithm="RS256")

    def installation_token(self, full_name: str) -> str | None:
        """An installation token for `full_name`, or None when the App is not installed on
        it (or not configured). UpstreamError when GitHub is unavailable."""
        if not self.configured:
            return None
        key = full_name.lower()
        with self._lock:
            cached = self._tokens.get(key)
        if cached and cached[1] > time.time():
            return cached[0]
        found = self._call("GET", f"/repos/{full_name}/installation")
        if found is None:
            return None
        made = self._call("POST", f"/app/installations/{found['id']}/access_tokens")
        if made is None or not made.get("token"):
            raise UpstreamError("GitHub answered the installation token request without one")
        expires = _expiry(made.get("expires_at")) - 300
        with self._lock:
            self._tokens[key] = (made["token"], expires)
        return made["token"]

    def _call(self, method: str, path: str):
        headers = {**API_HEADERS, "Authorization": f"Bearer {self.jwt()}"}
        try:
            response = requests.request(
                method,
                f"{self.settings.github_api_url}{path}",
                headers=headers,
                timeout=self.settings.github_timeout_seconds,
            )
        except requests.RequestException as exc:
            raise UpstreamError(f"GitHub could not be reached: {type(exc).__name__}") from None
        if response.status_code == 404:
            return None
        if response.status_code >= 500:
            raise UpstreamError(f"GitHub is failing (HTTP {response.status_code}); try again")
        if response.status_code >= 400:
            raise BadRequest(
                f"GitHub refused the App's credentials (HTTP {response.status_code}): check "
                "GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY"
            )
        return response.json()


def _expiry(value: str | None) -> float:
    """GitHub's `expires_at` (ISO 8601) as a timestamp; an hour from now when missing."""
    import datetime as dt

    if not value:
        return time.time() + 3600
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
