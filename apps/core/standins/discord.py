"""A local stand-in for Discord's webhook endpoint, on loopback, for the real ``discord-webhook`` client.

It records every request, validates payloads against Discord's documented limits (answering 400 like Discord when
they are exceeded), answers ``?wait=true`` with the created message, and can be scripted to answer 429 (with a
``Retry-After`` header or only a body ``retry_after``), 404 or 500, and to respond slowly.  ``rate_limit`` enforces a
per-webhook bucket like Discord's (about 5 requests per 2 s), answering 429 with ``Retry-After`` past it.
``hold_next`` holds a request before Discord would process it; a request whose client went away meanwhile (a worker
killed mid-send) is dropped unprocessed, as a front end drops a request whose client disconnected.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from apps.core.standins.base import LoopbackStandin


@dataclass
class Recorded:
    path: str
    query: dict[str, list[str]]
    body: dict[str, Any]
    status: int  # 0: dropped unprocessed, the client went away while it was held
    message_id: str = ""
    received_at: float = 0.0  # time.time() when it arrived


@dataclass
class Scripted:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def limit_violations(payload: dict[str, Any]) -> list[str]:
    """What Discord would refuse in ``payload`` (empty when it is acceptable)."""
    problems = []
    if len(payload.get("content") or "") > 2000:
        problems.append("content > 2000")
    embeds = payload.get("embeds") or []
    if len(embeds) > 10:
        problems.append("more than 10 embeds")
    total = 0
    for embed in embeds:
        title, description = embed.get("title") or "", embed.get("description") or ""
        footer = (embed.get("footer") or {}).get("text") or ""
        fields = embed.get("fields") or []
        if len(title) > 256:
            problems.append("title > 256")
        if len(description) > 4096:
            problems.append("description > 4096")
        if len(fields) > 25:
            problems.append("more than 25 fields")
        for f in fields:
            if len(f.get("name") or "") > 256 or len(f.get("value") or "") > 1024:
                problems.append("field too long")
            if not f.get("name") or not f.get("value"):
                problems.append("empty field")
        total += len(title) + len(description) + len(footer)
        total += sum(len(f.get("name") or "") + len(f.get("value") or "") for f in fields)
    if total > 6000:
        problems.append("embeds total > 6000")
    if not payload.get("content") and not embeds:
        problems.append("empty message")
    return problems


class DiscordStandin(LoopbackStandin):
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._scripts: dict[str, deque[Scripted]] = {}
        self._gone: set[str] = set()
        self.delay_seconds = 0.0
        self._ids = itertools.count(1_300_000_000_000_000_000)
        self._holds: dict[str, deque[float]] = {}
        self.holding = threading.Event()  # set while a held request waits
        self.held_client_port = 0  # the client's local port of the request being held (to find its process)
        self._bucket: tuple[int, float] | None = None  # (requests, window seconds) per webhook
        self._hits: dict[str, deque[float]] = {}
        super().__init__()

    # -- control -------------------------------------------------------------------------------------------------
    def url(self, webhook: str) -> str:
        return f"http://127.0.0.1:{self.port}/api/webhooks/{webhook}"

    def script(self, webhook: str, *responses: Scripted) -> None:
        """The next requests to ``webhook`` get these answers, in order; then normal service resumes."""
        with self._lock:
            self._scripts.setdefault(f"/api/webhooks/{webhook}", deque()).extend(responses)

    def hold_next(self, webhook: str, seconds: float) -> None:
        """The next request to ``webhook`` waits ``seconds`` before it is processed (``holding`` is set meanwhile)."""
        with self._lock:
            self._holds.setdefault(f"/api/webhooks/{webhook}", deque()).append(seconds)

    def rate_limit(self, requests: int, window_seconds: float) -> None:
        """Enforce at most ``requests`` per ``window_seconds`` per webhook, answering 429 with Retry-After past it."""
        self._bucket = (requests, window_seconds)

    def gone(self, webhook: str) -> None:
        """The webhook was deleted: Discord answers 404 Unknown Webhook from now on."""
        self._gone.add(f"/api/webhooks/{webhook}")

    def delivered(self, webhook: str | None = None) -> list[Recorded]:
        """Requests that created a message (2xx), optionally to one webhook."""
        return [
            r
            for r in self.requests
            if 200 <= r.status < 300 and (webhook is None or r.path == f"/api/webhooks/{webhook}")
        ]

    def requests_to(self, webhook: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == f"/api/webhooks/{webhook}"]

    # -- the server ----------------------------------------------------------------------------------------------
    def _answer(self, path: str, payload: dict[str, Any]) -> tuple[Scripted, str]:
        with self._lock:
            queue = self._scripts.get(path)
            if queue:
                return queue.popleft(), ""
        if path in self._gone:
            return Scripted(404, {"message": "Unknown Webhook", "code": 10015}), ""
        limited = self._over_bucket(path)
        if limited is not None:
            body = {"message": "You are being rate limited.", "retry_after": limited, "global": False}
            return Scripted(429, body, {"Retry-After": f"{limited:.3f}", "X-RateLimit-Remaining": "0"}), ""
        problems = limit_violations(payload)
        if problems:
            return Scripted(400, {"message": "Invalid Form Body", "code": 50035, "errors": problems}), ""
        message_id = str(next(self._ids))
        body = {"id": message_id, "type": 0, "channel_id": "1", "content": payload.get("content", "")}
        body["embeds"] = payload.get("embeds", [])
        return Scripted(200, body, {"X-RateLimit-Limit": "5", "X-RateLimit-Remaining": "4"}), message_id

    def _over_bucket(self, path: str) -> float | None:
        """Seconds until the webhook's bucket has room, or None when this request fits (and is counted)."""
        if self._bucket is None:
            return None
        limit, window = self._bucket
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault(path, deque())
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) >= limit:
                return max(hits[0] + window - now, 0.001)
            hits.append(now)
        return None

    def _hold(self, path: str) -> float:
        with self._lock:
            queue = self._holds.get(path)
            return queue.popleft() if queue else 0.0

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    payload = json.loads(raw or b"{}")
                except ValueError:
                    payload = {}
                received = time.time()
                if standin.delay_seconds:
                    time.sleep(standin.delay_seconds)
                hold = standin._hold(parts.path)
                if hold:
                    standin.held_client_port = self.client_address[1]
                    standin.holding.set()
                    time.sleep(hold)
                    standin.holding.clear()
                    if self._client_gone():
                        with standin._lock:
                            standin.requests.append(
                                Recorded(parts.path, parse_qs(parts.query), payload, 0, "", received)
                            )
                        self.close_connection = True
                        return
                answer, message_id = standin._answer(parts.path, payload)
                with standin._lock:
                    standin.requests.append(
                        Recorded(parts.path, parse_qs(parts.query), payload, answer.status, message_id, received)
                    )
                data = (
                    b""
                    if answer.body is None
                    else (answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode())
                )
                self.send_response(answer.status)
                content_type = "application/json" if not isinstance(answer.body, bytes) else "text/html"
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _client_gone(self) -> bool:
                # TCP_INFO's first byte is the connection state; CLOSE_WAIT (8) means the client closed its end.
                info = self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)
                return info[0] in (7, 8)  # CLOSE, CLOSE_WAIT

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
                return

        return Handler
