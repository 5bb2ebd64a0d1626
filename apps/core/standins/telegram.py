"""A local stand-in for the Telegram Bot API, on loopback, for the real python-telegram-bot client.

It serves ``/bot<token>/<method>`` for what the approvals bot uses (getMe, deleteWebhook, getUpdates with real long
polling, sendMessage, editMessageText, editMessageReplyMarkup, answerCallbackQuery, setMyCommands, deleteMyCommands,
getMyCommands, close, logOut), keeps every message it sent with its current text and inline keyboard, records every
call, and lets a test play the people in the chat: a text message or command from a user, a press on a button.
The next calls of a method can be scripted to answer 429 with ``parameters.retry_after`` (as Telegram's flood
control does) or any other error.  Bodies are read both as JSON and form-encoded (PTB sends form fields whose
non-string values are JSON).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from apps.core.standins.base import LoopbackStandin

TEXT_LIMIT = 4096
CALLBACK_DATA_LIMIT = 64
# Form fields that are plain strings even when they look like JSON ("123", "true").
_STRING_FIELDS = {"text", "callback_query_id", "parse_mode", "url", "inline_message_id", "description"}


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    status: int
    at: float


@dataclass
class SentMessage:
    """A message the bot sent, as it is now (after every edit)."""

    chat_id: int
    message_id: int
    text: str
    reply_markup: dict[str, Any] | None
    edits: int = 0
    history: list[str] = field(default_factory=list)

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """Every inline button, row after row (empty when the keyboard was removed)."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [button for row in rows for button in row]

    def as_dict(self, *, bot_user: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": self.message_id,
            "date": int(time.time()),
            "chat": _chat(self.chat_id),
            "from": bot_user,
            "text": self.text,
        }
        if self.reply_markup and self.reply_markup.get("inline_keyboard"):
            message["reply_markup"] = self.reply_markup
        return message


def _chat(chat_id: int) -> dict[str, Any]:
    # Telegram's convention: people have positive ids, groups negative ones.
    if chat_id < 0:
        return {"id": chat_id, "type": "supergroup", "title": f"group {chat_id}"}
    return {"id": chat_id, "type": "private", "first_name": f"user {chat_id}"}


def _user(user_id: int, username: str) -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": username or str(user_id), "username": username}


class TelegramError(Exception):
    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


class TelegramStandin(LoopbackStandin):
    def __init__(
        self,
        *,
        token: str = "123456:TEST-TOKEN",  # noqa: S107 (a made-up token for a local fake)
        bot_id: int = 123456,
        bot_username: str = "tp_bot",
    ):
        self.token = token
        self.bot_user = {"id": bot_id, "is_bot": True, "first_name": "Trading platform", "username": bot_username}
        self.calls: list[Call] = []
        self.messages: dict[tuple[int, int], SentMessage] = {}
        self.commands: list[dict[str, Any]] = []
        self._updates: list[dict[str, Any]] = []
        self._scripts: dict[str, deque[TelegramError]] = {}
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1000)
        self._callback_ids = itertools.count(1)
        self._stopping = False
        super().__init__()
        self._changed = threading.Condition(self._lock)

    # -- control -------------------------------------------------------------------------------------------------
    @property
    def api_root(self) -> str:
        """What TELEGRAM_BASE_URL is set to (the bot appends ``/bot``)."""
        return self.base_url

    def script(self, method: str, *errors: TelegramError) -> None:
        """The next calls of ``method`` get these errors, in order; then normal service resumes."""
        with self._lock:
            self._scripts.setdefault(method, deque()).extend(errors)

    def script_flood(self, method: str, *, retry_after: int = 1, times: int = 1) -> None:
        """Telegram's flood control: 429 with ``parameters.retry_after`` for the next ``times`` calls."""
        error = TelegramError(429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after})
        self.script(method, *([error] * times))

    def script_error(self, method: str, *, status: int = 500, description: str = "Internal Server Error") -> None:
        self.script(method, TelegramError(status, description))

    def send_text(self, *, user_id: int, chat_id: int, text: str, username: str = "") -> int:
        """A person writes ``text`` in ``chat_id`` (a ``/command`` gets its bot_command entity); returns the
        message id."""
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": _chat(chat_id),
            "from": _user(user_id, username),
            "text": text,
        }
        if text.startswith("/"):
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
        self._push({"message": message})
        return int(message["message_id"])

    def press(self, *, user_id: int, message: SentMessage, data: str, username: str = "") -> str:
        """A person presses the button carrying ``data`` on ``message``; returns the callback query id."""
        query_id = str(next(self._callback_ids))
        self._push(
            {
                "callback_query": {
                    "id": query_id,
                    "from": _user(user_id, username),
                    "message": message.as_dict(bot_user=self.bot_user),
                    "chat_instance": str(message.chat_id),
                    "data": data,
                }
            }
        )
        return query_id

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def messages_in(self, chat_id: int) -> list[SentMessage]:
        """The bot's messages in ``chat_id``, oldest first."""
        with self._lock:
            return sorted((m for (chat, _), m in self.messages.items() if chat == chat_id), key=lambda m: m.message_id)

    def answers_to(self, query_id: str) -> list[dict[str, Any]]:
        return [
            call.params
            for call in self.calls_to("answerCallbackQuery")
            if call.params.get("callback_query_id") == query_id
        ]

    def pending_updates(self) -> int:
        with self._lock:
            return len(self._updates)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._changed.notify_all()
        super().stop()

    # -- the API ---------------------------------------------------------------------------------------------------
    def _push(self, update: dict[str, Any]) -> None:
        with self._lock:
            update["update_id"] = next(self._update_ids)
            self._updates.append(update)
            self._changed.notify_all()

    def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        with self._lock:
            # Updates below the offset are confirmed: Telegram forgets them.
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while not self._updates and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return list(self._updates[:limit])

    def _message(self, params: dict[str, Any]) -> SentMessage:
        key = (int(params.get("chat_id") or 0), int(params.get("message_id") or 0))
        message = self.messages.get(key)
        if message is None:
            raise TelegramError(400, "Bad Request: message to edit not found")
        return message

    @staticmethod
    def _check_text(text: str) -> None:
        if not text.strip():
            raise TelegramError(400, "Bad Request: message text is empty")
        if len(text) > TEXT_LIMIT:
            raise TelegramError(400, "Bad Request: message is too long")

    @staticmethod
    def _check_markup(markup: dict[str, Any] | None) -> None:
        for row in (markup or {}).get("inline_keyboard") or []:
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= CALLBACK_DATA_LIMIT:
                    raise TelegramError(400, "Bad Request: BUTTON_DATA_INVALID")

    def _call(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return self.bot_user
        if method in ("deleteWebhook", "close", "logOut", "deleteMyCommands"):
            return True
        if method == "setMyCommands":
            with self._lock:
                self.commands = list(params.get("commands") or [])
            return True
        if method == "getMyCommands":
            return self.commands
        if method == "getUpdates":
            return self._get_updates(params)
        if method == "answerCallbackQuery":
            if not params.get("callback_query_id"):
                raise TelegramError(
                    400, "Bad Request: query is too old and response timeout expired or query ID is invalid"
                )
            return True
        if method == "sendMessage":
            text = str(params.get("text") or "")
            self._check_text(text)
            markup = params.get("reply_markup")
            self._check_markup(markup)
            with self._lock:
                message = SentMessage(int(params["chat_id"]), next(self._message_ids), text, markup)
                self.messages[(message.chat_id, message.message_id)] = message
            return message.as_dict(bot_user=self.bot_user)
        if method in ("editMessageText", "editMessageReplyMarkup"):
            markup = params.get("reply_markup")
            self._check_markup(markup)
            with self._lock:
                message = self._message(params)
                text = str(params["text"]) if method == "editMessageText" else message.text
                self._check_text(text)
                if text == message.text and markup == message.reply_markup:
                    raise TelegramError(
                        400,
                        "Bad Request: message is not modified: specified new message content and reply markup "
                        "are exactly the same as a current content and reply markup of the message",
                    )
                message.history.append(message.text)
                message.text, message.reply_markup = text, markup
                message.edits += 1
                return message.as_dict(bot_user=self.bot_user)
        raise TelegramError(404, "Not Found: method not found")

    def _answer(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            queue = self._scripts.get(method)
            scripted = queue.popleft() if queue else None
        try:
            if scripted is not None:
                raise scripted
            return 200, {"ok": True, "result": self._call(method, params)}
        except TelegramError as error:
            body: dict[str, Any] = {"ok": False, "error_code": error.status, "description": error.description}
            if error.parameters:
                body["parameters"] = error.parameters
            return error.status, body

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                parts = urlsplit(self.path)
                prefix, _, method = parts.path.lstrip("/").partition("/")
                params = _params(self, parts.query)
                if prefix != f"bot{standin.token}":
                    status, body = 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
                else:
                    status, body = standin._answer(method, params)
                with standin._lock:
                    standin.calls.append(Call(method, params, status, time.time()))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self._serve()

            def do_GET(self) -> None:  # noqa: N802
                self._serve()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
                return

        return Handler


def _params(handler: BaseHTTPRequestHandler, query: str) -> dict[str, Any]:
    """The call's parameters from the query string and the body (JSON or form-encoded)."""
    fields: dict[str, str] = {key: values[-1] for key, values in parse_qs(query).items()}
    length = int(handler.headers.get("Content-Length") or 0)
    raw = handler.rfile.read(length) if length else b""
    content_type = handler.headers.get("Content-Type") or ""
    if raw and "json" in content_type:
        body = json.loads(raw)
        return {**fields, **body} if isinstance(body, dict) else fields
    if raw and "multipart" in content_type:
        raise ValueError("multipart bodies (file uploads) are not served by this stand-in")
    if raw:
        fields.update({key: values[-1] for key, values in parse_qs(raw.decode()).items()})
    params: dict[str, Any] = {}
    for key, value in fields.items():
        if key in _STRING_FIELDS:
            params[key] = value
            continue
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    return params
