"""Local stand-ins for X API v2 (``POST /2/tweets``) and Reddit's OAuth API (token and ``/api/submit``) on loopback.

Both record every request (method, path, headers, parsed body, the status answered) and can be scripted: the next
requests to a path get the scripted answers in order, then normal service resumes.  Normal service follows the
documented behaviour the platform relies on:

- X: the bearer token must match; text over 280 characters is a 400; the same text twice is a 403 "duplicate
  content"; success is 201 ``{"data": {"id", "text"}}`` with the ``x-rate-limit-*`` headers.
- Reddit: the token endpoint checks HTTP basic auth (401) and the password grant (200 ``{"error": "invalid_grant"}``
  like Reddit); submit checks the bearer token (401 once ``expire_tokens`` has run) and a User-Agent of its own
  (403 without), then answers ``{"json": {"errors": [...], "data": {"name", "url"}}}``.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from apps.core.standins.base import LoopbackStandin

X_TEXT_MAX = 280
REDDIT_TITLE_MAX = 300
REDDIT_TEXT_MAX = 40_000


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int


@dataclass
class Scripted:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class _RecordingStandin(LoopbackStandin):
    """Parses each request (JSON or form body), answers a scripted response if one is queued for the path, else
    ``_serve``; records it all."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._scripts: dict[str, deque[Scripted]] = {}
        self.delay_seconds = 0.0
        super().__init__()

    def script(self, path: str, *responses: Scripted) -> None:
        """The next requests to ``path`` get these answers, in order; then normal service resumes."""
        with self._lock:
            self._scripts.setdefault(path, deque()).extend(responses)

    def requests_to(self, path: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def _serve(self, method: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> Scripted:
        raise TypeError(f"{type(self).__name__} must serve its endpoints")

    def _answer(self, method: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> Scripted:
        with self._lock:
            queue = self._scripts.get(path)
            scripted = queue.popleft() if queue else None
        if scripted is not None:
            return scripted
        return self._serve(method, path, headers, body)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                path = urlsplit(self.path).path
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                body: dict[str, Any]
                if "json" in headers.get("content-type", ""):
                    try:
                        parsed = json.loads(raw or b"{}")
                    except ValueError:
                        parsed = None
                    body = parsed if isinstance(parsed, dict) else {}
                else:
                    body = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
                if standin.delay_seconds:
                    time.sleep(standin.delay_seconds)
                answer = standin._answer("POST", path, headers, body)
                with standin._lock:
                    standin.requests.append(Recorded("POST", path, headers, body, answer.status))
                data = b"" if answer.body is None else json.dumps(answer.body).encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
                return

        return Handler


class XStandin(_RecordingStandin):
    """X API v2's tweet endpoint for one user-context bearer token."""

    TWEETS = "/2/tweets"

    def __init__(self, *, token: str) -> None:
        self.token = token
        self.tweets: list[dict[str, str]] = []  # what was created: id and text
        self._ids = itertools.count(1_860_000_000_000_000_000)
        super().__init__()

    # -- scripted answers ---------------------------------------------------------------------------------------------
    def rate_limit(self, *, reset_at: int | None = None, retry_after: int | None = None) -> None:
        """The next tweet gets a 429, with ``x-rate-limit-reset`` (epoch seconds) and/or ``retry-after``."""
        headers = {"x-rate-limit-limit": "100", "x-rate-limit-remaining": "0"}
        if reset_at is not None:
            headers["x-rate-limit-reset"] = str(reset_at)
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        self.script(self.TWEETS, Scripted(429, {"title": "Too Many Requests", "status": 429}, headers))

    def fail(self, status: int = 503, times: int = 1) -> None:
        """The next ``times`` tweets get a server error."""
        self.script(self.TWEETS, *[Scripted(status, {"title": "Service Unavailable", "status": status})] * times)

    def duplicate(self) -> None:
        """The next tweet is refused as duplicate content (403)."""
        self.script(self.TWEETS, Scripted(403, self._duplicate_body()))

    def created(self) -> list[Recorded]:
        return [r for r in self.requests_to(self.TWEETS) if r.status == 201]

    # -- normal service -----------------------------------------------------------------------------------------------
    @staticmethod
    def _duplicate_body() -> dict[str, Any]:
        detail = "You are not allowed to create a Tweet with duplicate content."
        return {"detail": detail, "type": "about:blank", "title": "Forbidden", "status": 403}

    def _serve(self, method: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> Scripted:
        if path != self.TWEETS:
            return Scripted(404, {"title": "Not Found Error", "status": 404})
        if headers.get("authorization") != f"Bearer {self.token}":
            return Scripted(
                401, {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}
            )
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return Scripted(400, {"title": "Invalid Request", "errors": [{"message": "text is required"}]})
        if len(text) > X_TEXT_MAX:
            return Scripted(
                400,
                {
                    "title": "Invalid Request",
                    "detail": "One or more parameters to your request was invalid.",
                    "errors": [{"message": "Your Tweet text is too long."}],
                },
            )
        with self._lock:
            if any(tweet["text"] == text for tweet in self.tweets):
                return Scripted(403, self._duplicate_body())
            tweet_id = str(next(self._ids))
            self.tweets.append({"id": tweet_id, "text": text})
        headers_out = {
            "x-rate-limit-limit": "100",
            "x-rate-limit-remaining": "99",
            "x-rate-limit-reset": str(int(time.time()) + 900),
        }
        return Scripted(
            201, {"data": {"id": tweet_id, "text": text, "edit_history_tweet_ids": [tweet_id]}}, headers_out
        )


class RedditStandin(_RecordingStandin):
    """Reddit's password-grant token endpoint and ``/api/submit`` for one script app and one account."""

    TOKEN = "/api/v1/access_token"
    SUBMIT = "/api/submit"

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        username: str,
        password: str,
        subreddits: tuple[str, ...],
        expires_in: int = 3600,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.username = username
        self.password = password
        self.subreddits = subreddits
        self.expires_in = expires_in
        self.submissions: list[dict[str, str]] = []  # what was posted: name, sr, title, text
        self._valid_tokens: set[str] = set()
        self._token_ids = itertools.count(1)
        self._post_ids = itertools.count(36**5)
        super().__init__()

    # -- control and scripted answers -------------------------------------------------------------------------------
    def expire_tokens(self) -> None:
        """Every token issued so far stops working: the next submit with one gets 401."""
        with self._lock:
            self._valid_tokens.clear()

    def rate_limit(self, *, retry_after: int | None = None, reset_in: int | None = None) -> None:
        """The next submit gets a 429 with ``retry-after`` and/or ``x-ratelimit-reset`` (seconds)."""
        headers = {"x-ratelimit-remaining": "0", "x-ratelimit-used": "600"}
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        if reset_in is not None:
            headers["x-ratelimit-reset"] = str(reset_in)
        self.script(self.SUBMIT, Scripted(429, {"message": "Too Many Requests", "error": 429}, headers))

    def fail(self, status: int = 503, times: int = 1) -> None:
        self.script(self.SUBMIT, *[Scripted(status, {"message": "Service Unavailable", "error": status})] * times)

    def refuse(self, code: str, message: str, field_name: str = "") -> None:
        """The next submit is answered 200 with ``json.errors`` (e.g. SUBREDDIT_NOEXIST, RATELIMIT)."""
        self.script(self.SUBMIT, Scripted(200, {"json": {"errors": [[code, message, field_name]]}}))

    def token_requests(self) -> list[Recorded]:
        return self.requests_to(self.TOKEN)

    # -- normal service -----------------------------------------------------------------------------------------------
    def _basic_ok(self, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[len("Basic ") :]).decode()
        except ValueError:
            return False
        return decoded == f"{self.client_id}:{self.client_secret}"

    @staticmethod
    def _user_agent_ok(headers: dict[str, str]) -> bool:
        agent = headers.get("user-agent", "")
        return bool(agent) and not agent.startswith("python-requests")

    def _token(self, headers: dict[str, str], body: dict[str, Any]) -> Scripted:
        if not self._basic_ok(headers.get("authorization", "")):
            return Scripted(401, {"message": "Unauthorized", "error": 401})
        if body.get("grant_type") != "password":
            return Scripted(200, {"error": "unsupported_grant_type"})
        if body.get("username") != self.username or body.get("password") != self.password:
            return Scripted(200, {"error": "invalid_grant"})
        with self._lock:
            token = f"reddit-token-{next(self._token_ids)}"
            self._valid_tokens.add(token)
        return Scripted(
            200, {"access_token": token, "token_type": "bearer", "expires_in": self.expires_in, "scope": "*"}
        )

    def _submit(self, headers: dict[str, str], body: dict[str, Any]) -> Scripted:
        authorization = headers.get("authorization", "")
        token = authorization[len("bearer ") :] if authorization.lower().startswith("bearer ") else ""
        with self._lock:
            valid = token in self._valid_tokens
        if not valid:
            return Scripted(401, {"message": "Unauthorized", "error": 401})
        if not self._user_agent_ok(headers):
            return Scripted(
                403, {"message": "Forbidden", "error": 403, "reason": "a descriptive User-Agent is required"}
            )
        if body.get("api_type") != "json" or body.get("kind") != "self":
            return Scripted(400, {"message": "Bad Request", "error": 400})
        title, text, sr = body.get("title") or "", body.get("text") or "", body.get("sr") or ""
        errors = []
        if sr not in self.subreddits:
            errors.append(["SUBREDDIT_NOEXIST", "that subreddit doesn't exist", "sr"])
        if not title:
            errors.append(["NO_TEXT", "we need something here", "title"])
        elif len(title) > REDDIT_TITLE_MAX:
            errors.append(["TOO_LONG", f"this is too long (max: {REDDIT_TITLE_MAX})", "title"])
        if len(text) > REDDIT_TEXT_MAX:
            errors.append(["TOO_LONG", f"this is too long (max: {REDDIT_TEXT_MAX})", "text"])
        if errors:
            return Scripted(200, {"json": {"errors": errors}})
        post_id = _base36(next(self._post_ids))
        slug = "_".join(title.lower().split())[:50]
        with self._lock:
            self.submissions.append({"name": f"t3_{post_id}", "sr": sr, "title": title, "text": text})
        data = {
            "url": f"https://www.reddit.com/r/{sr}/comments/{post_id}/{slug}/",
            "drafts_count": 0,
            "id": post_id,
            "name": f"t3_{post_id}",
        }
        return Scripted(200, {"json": {"errors": [], "data": data}})

    def _serve(self, method: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> Scripted:
        if path == self.TOKEN:
            return self._token(headers, body)
        if path == self.SUBMIT:
            return self._submit(headers, body)
        return Scripted(404, {"message": "Not Found", "error": 404})


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while number:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
    return out or "0"
