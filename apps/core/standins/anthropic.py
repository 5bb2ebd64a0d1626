"""A local stand-in for Anthropic's Messages API (``POST /v1/messages``), on loopback, for the real ``anthropic`` SDK.

It records every request (headers and body), answers with a valid Messages response including ``usage``, and can be
scripted: ``fail`` queues error statuses (429 rate limited, 529 overloaded, 500, 400, 401...) answered with
Anthropic's error body, ``reply`` queues the texts of the next successful answers, and ``delay_seconds`` holds every
answer back (a slow API, to exercise the client's timeout).  Error answers carry ``retry-after-ms`` so the SDK's
retries are quick, and ``x-should-retry`` as Anthropic sends it (true for 408/409/429/5xx, false otherwise).
"""

from __future__ import annotations

import itertools
import json
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from apps.core.standins.base import LoopbackStandin

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
RETRYABLE_STATUSES = frozenset({408, 409, 429})


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int

    @property
    def prompt(self) -> str:
        """The text of the first user message (what the platform asked)."""
        content = self.body["messages"][0]["content"]
        if isinstance(content, str):
            return content
        return "".join(block.get("text", "") for block in content)


class AnthropicStandin(LoopbackStandin):
    def __init__(self, *, text: str = "SPY closed green.", input_tokens: int = 1200, output_tokens: int = 350):
        self.text = text  # the answer when nothing is queued with ``reply``
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.model = "claude-haiku-4-5-20251001"
        self.delay_seconds = 0.0
        self.requests: list[Request] = []
        self._errors: deque[int] = deque()
        self._replies: deque[str] = deque()
        self._ids = itertools.count(1)
        super().__init__()

    def fail(self, *statuses: int) -> None:
        """The next requests get these error statuses, in order; then normal answers resume."""
        with self._lock:
            self._errors.extend(statuses)

    def reply(self, *texts: str) -> None:
        """The next successful answers carry these texts, in order; then ``text`` again."""
        with self._lock:
            self._replies.extend(texts)

    def _answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            status = self._errors.popleft() if self._errors else 200
        if status != 200:
            error = {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": "stand-in"}}
            retryable = status in RETRYABLE_STATUSES or status >= 500
            return status, error, {"retry-after-ms": "10", "x-should-retry": "true" if retryable else "false"}
        if not body.get("messages") or not body.get("max_tokens") or not body.get("model"):
            error = {"type": "error", "error": {"type": "invalid_request_error", "message": "missing field"}}
            return 400, error, {}
        with self._lock:
            text = self._replies.popleft() if self._replies else self.text
        message = {
            "id": f"msg_standin_{next(self._ids)}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
        }
        return 200, message, {"request-id": f"req_{next(self._ids)}"}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
                body = json.loads(raw or b"{}")
                headers: dict[str, str] = {}
                if self.path.split("?")[0] != "/v1/messages":
                    status, answer = 404, {"type": "error", "error": {"type": "not_found_error"}}
                else:
                    status, answer, headers = standin._answer(body)
                with standin._lock:
                    headers_seen = {k.lower(): v for k, v in self.headers.items()}
                    standin.requests.append(Request(self.path, headers_seen, body, status))
                if standin.delay_seconds:
                    time.sleep(standin.delay_seconds)
                data = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client gave up waiting (its timeout): nothing left to answer

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
                return

        return Handler
