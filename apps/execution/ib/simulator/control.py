"""A small JSON HTTP control for a running simulator (loopback only): read its state, steer its behaviour.

GET /orders /executions /positions /account /health; POST /quote {key,bid,ask,last}, /drop, /drop_on_next_place
{accept}, /reject_next {reason,count}, /partial_fill_next {quantity}, /hold_fills {on}, /delay {seconds},
/error {code,message,req_id}, /closing_auction.  Decimals travel as strings, times as ISO 8601.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from apps.execution.ib.simulator.server import TWSSimulator, _is_loopback

logger = logging.getLogger(__name__)


class ControlError(ValueError):
    """A control request the simulator cannot act on (answered 400 with the reason)."""


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _decimal(body: dict[str, Any], name: str) -> Decimal | None:
    raw = body.get(name)
    if raw is None or raw == "":
        return None
    try:
        return Decimal(str(raw))
    except InvalidOperation as exc:
        raise ControlError(f"{name} is not a number: {raw!r}") from exc


def _required(body: dict[str, Any], name: str) -> Any:
    if name not in body:
        raise ControlError(f"missing {name}")
    return body[name]


def _flag(body: dict[str, Any], name: str) -> bool:
    """A JSON boolean (or 1/0, "true"/"false"): ``bool("false")`` must not read as True."""
    raw = _required(body, name)
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ControlError(f"{name} must be true or false, got {raw!r}")


def _post_quote(sim: TWSSimulator, body: dict[str, Any]) -> dict[str, Any]:
    key = str(_required(body, "key"))
    sim.set_quote(key, _decimal(body, "bid"), _decimal(body, "ask"), _decimal(body, "last"))
    return {"ok": True}


def _post_drop(sim: TWSSimulator, body: dict[str, Any]) -> dict[str, Any]:
    sim.drop_connections()
    return {"ok": True}


def _post_drop_on_next_place(sim: TWSSimulator, body: dict[str, Any]) -> dict[str, Any]:
    sim.drop_on_next_place(_flag(body, "accept"))
    return {"ok": True}


def _post_reject_next(sim: TWSSimulator, body: dict[str, Any]) -> dict[str, Any]:
    sim.reject_next(str(_required(body, "reason")), int(body.get("count", 1)))
    return {"ok": True}


def _post_partial_fill_next(sim: TWSSimulator, body: dict[str, Any]) -> dict[str, Any]:
    sim.partial_fill_next(int(_required(body, "quantity")))
    return {"ok": True}


def _post_hold_fills(sim: TWSSimulator, body: dict[str, Any]) -> dict[str, Any]:
    sim.hold_fills(_flag(body, "on"))
    return {"ok": True}


def _post_delay(sim: TWSSimulator, body: dict[str, Any]) -> dict[str, Any]:
    sim.set_delay(float(_required(body, "seconds")))
    return {"ok": True}


def _post_error(sim: TWSSimulator, body: dict[str, Any]) -> dict[str, Any]:
    sim.send_error(int(_required(body, "code")), str(_required(body, "message")), int(body.get("req_id", -1)))
    return {"ok": True}


def _post_closing_auction(sim: TWSSimulator, body: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "filled": sim.closing_auction()}


_GETS: dict[str, Callable[[TWSSimulator], Any]] = {
    "/orders": lambda sim: sim.orders(),
    "/executions": lambda sim: sim.executions(),
    "/positions": lambda sim: sim.positions(),
    "/account": lambda sim: sim.account_values(),
    "/health": lambda sim: {"ok": True, "port": sim.port, "account": sim.account, "connections": sim.connections()},
}
_POSTS: dict[str, Callable[[TWSSimulator, dict[str, Any]], dict[str, Any]]] = {
    "/quote": _post_quote,
    "/drop": _post_drop,
    "/drop_on_next_place": _post_drop_on_next_place,
    "/reject_next": _post_reject_next,
    "/partial_fill_next": _post_partial_fill_next,
    "/hold_fills": _post_hold_fills,
    "/delay": _post_delay,
    "/error": _post_error,
    "/closing_auction": _post_closing_auction,
}


class _ControlHandler(BaseHTTPRequestHandler):
    server: _ControlServer

    def _answer(self, status: HTTPStatus, payload: Any) -> None:
        body = json.dumps(_jsonable(payload)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        handler = _GETS.get(self.path.split("?", 1)[0])
        if handler is None:
            self._answer(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {self.path}"})
            return
        self._answer(HTTPStatus.OK, handler(self.server.simulator))

    def do_POST(self) -> None:
        handler = _POSTS.get(self.path.split("?", 1)[0])
        if handler is None:
            self._answer(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {self.path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}") if length else {}
            if not isinstance(body, dict):
                raise ControlError("the body must be a JSON object")
            result = handler(self.server.simulator, body)
        except (ControlError, ValueError, TypeError) as exc:
            self._answer(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return
        self._answer(HTTPStatus.OK, result)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("tws_sim control: " + format, *args)


class _ControlServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], simulator: TWSSimulator) -> None:
        self.simulator = simulator
        super().__init__(address, _ControlHandler)


class ControlServer:
    """The HTTP control of one simulator, served from a background thread."""

    def __init__(self, simulator: TWSSimulator, host: str = "127.0.0.1", port: int = 0) -> None:
        if not _is_loopback(host):
            raise ValueError(f"the control server only listens on loopback, not {host!r}")
        self._server = _ControlServer((host, port), simulator)
        self.host = host
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> ControlServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="tws-sim-control", daemon=True)
        self._thread.start()
        logger.info("tws_sim control on http://%s:%s", self.host, self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
