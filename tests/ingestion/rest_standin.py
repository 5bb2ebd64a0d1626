"""A small Unusual Whales REST stand-in on loopback: canned replies per path, and flow alerts served from a dataset.

Replies queue per path (the last one repeats); each says its status, JSON body or text, headers and an optional
delay (to make the client time out).  Flow alerts can instead come from ``flow_alert_dataset``, filtered by
``newer_than``/``older_than`` (epoch ms, exclusive), newest first and cut at ``limit``, like UW pages them.  Every
request is recorded with its monotonic arrival time, so tests can measure how long a client waited between tries.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from apps.core.standins.base import LoopbackStandin

FLOW_ALERTS_PATH = "/api/option-trades/flow-alerts"
USAGE_HEADERS = {
    "x-uw-daily-req-count": "10",
    "x-uw-token-req-limit": "15000",
    "x-uw-minute-req-counter": "1",
    "x-uw-req-per-minute-remaining": "119",
    "x-uw-req-per-minute-reset": "30000",
}


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-encoded when ``text`` is None
    text: str | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    echo_authorization: bool = False  # put the request's Authorization header in the body (a leaky server)


@dataclass
class SeenRequest:
    path: str
    params: dict[str, str]
    authorization: str
    at: float  # time.monotonic() on arrival


def _created_ms(item: dict[str, Any]) -> int:
    text = str(item["created_at"]).replace("Z", "+00:00")
    return int(datetime.fromisoformat(text).timestamp() * 1000)


class RestStandin(LoopbackStandin):
    def __init__(self, token: str = "test-token") -> None:
        self.token = token
        self.replies: dict[str, list[Reply]] = {}
        self.flow_alert_dataset: list[dict[str, Any]] | None = None
        self.requests: list[SeenRequest] = []
        super().__init__()

    def reply(self, path: str, *replies: Reply) -> None:
        """Queue ``replies`` for ``path`` (appended to what is queued)."""
        with self._lock:
            self.replies.setdefault(path, []).extend(replies)

    def data(self, path: str, data: Any, **options: Any) -> None:
        self.reply(path, Reply(body={"data": data}, **options))

    def seen(self, path: str) -> list[SeenRequest]:
        return [r for r in self.requests if r.path == path]

    def _next(self, path: str) -> Reply | None:
        with self._lock:
            queue = self.replies.get(path)
            if not queue:
                return None
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def _flow_alert_page(self, params: dict[str, str]) -> Reply:
        items = list(self.flow_alert_dataset or [])
        if "newer_than" in params:
            items = [i for i in items if _created_ms(i) > int(params["newer_than"])]
        if "older_than" in params:
            items = [i for i in items if _created_ms(i) < int(params["older_than"])]
        items.sort(key=_created_ms, reverse=True)
        return Reply(body={"data": items[: int(params.get("limit", "50"))]})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                params = {k: v[-1] for k, v in parse_qs(url.query).items()}
                authorization = self.headers.get("Authorization", "")
                with standin._lock:
                    standin.requests.append(SeenRequest(url.path, params, authorization, time.monotonic()))
                if authorization != f"Bearer {standin.token}":
                    self._send(Reply(status=401, body={"msg": "Unauthorized"}))
                    return
                reply = standin._next(url.path)
                if reply is None and url.path == FLOW_ALERTS_PATH and standin.flow_alert_dataset is not None:
                    reply = standin._flow_alert_page(params)
                if reply is None:
                    reply = Reply(status=404, text="not found", content_type="text/plain")
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.echo_authorization:
                    reply = Reply(
                        status=reply.status,
                        body={"msg": "bad request", "authorization": authorization, "url": self.path},
                        headers=reply.headers,
                    )
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                raw = (reply.text if reply.text is not None else json.dumps(reply.body)).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(raw)))
                    for name, value in {**USAGE_HEADERS, **reply.headers}.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    # The client gave up (a timeout test): nothing left to answer.
                    return

        return Handler


def start_standin(token: str) -> RestStandin:
    standin = RestStandin(token=token)
    standin.start()
    return standin
