"""The REST side of the stand-in: bearer auth, UW's usage headers and rate limit, injected failures, routing.

Everything here runs on the stand-in's event loop thread (websockets' ``process_request`` hook), so it needs no
locks; the test thread only reads the request log.
"""

from __future__ import annotations

import collections
import email.utils
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.datastructures import Headers
from websockets.http11 import Response

from apps.ingestion.uw.channels import TICKER_RE

from .market import CANDLE_MS, NEW_YORK, MarketState, decimal_of

WINDOW_S = 60.0
ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^/api/option-trades/flow-alerts$"), "flow_alerts"),
    (re.compile(r"^/api/stock/(?P<ticker>[^/]+)/spot-exposures$"), "spot_exposures"),
    (re.compile(r"^/api/stock/(?P<ticker>[^/]+)/greek-exposure$"), "greek_exposure"),
    (re.compile(r"^/api/stock/(?P<ticker>[^/]+)/stock-state$"), "stock_state"),
    (re.compile(r"^/api/stock/(?P<ticker>[^/]+)/ohlc/(?P<size>[^/]+)$"), "ohlc"),
    (re.compile(r"^/api/stock/(?P<ticker>[^/]+)/net-prem-ticks$"), "net_prem_ticks"),
    (re.compile(r"^/api/stock/(?P<ticker>[^/]+)/option-contracts$"), "option_contracts"),
    (re.compile(r"^/api/news/headlines$"), "news"),
    (re.compile(r"^/api/market/market-tide$"), "market_tide"),
]


class BadParameter(ValueError):
    """A query parameter UW would answer with 422."""


def response(status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> Response:
    """An HTTP response that closes the connection (the websockets handshake path serves one request each)."""
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(body))),
            ("Content-Type", content_type),
        ]
    )
    for key, value in (extra or {}).items():
        headers[key] = value
    return Response(status, HTTPStatus(status).phrase, headers, body)


def json_response(status: int, document: Any, extra: dict[str, str] | None = None) -> Response:
    return response(status, orjson.dumps(document), "application/json", extra)


def parse_instant_ms(text: str) -> int:
    """Epoch ms from unix ms, unix seconds (both possibly fractional) or an ISO date/datetime (naive = UTC; a bare
    date is New York midnight); ``BadParameter`` otherwise."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        number = Decimal(text)
        # 10^11 ms is 1973 and 10^11 s is the year 5138: anything this large is milliseconds
        return int(number) if number >= 10**11 else int(number * 1000)
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
            return int(datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).timestamp() * 1000)
        instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadParameter(f"{text!r} is neither unix time nor an ISO date") from exc
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return int(instant.timestamp() * 1000)


class Query:
    """The request's query parameters, read the way UW validates them (bad values raise ``BadParameter``)."""

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self.values = {key: values[-1] for key, values in parse_qs(raw, keep_blank_values=True).items()}

    def text(self, key: str) -> str | None:
        value = self.values.get(key)
        return value if value else None

    def integer(self, key: str, *, default: int, low: int, high: int) -> int:
        value = self.text(key)
        if value is None:
            return default
        if not re.fullmatch(r"\d+", value) or not low <= int(value) <= high:
            raise BadParameter(f"{key} must be an integer from {low} to {high}, got {value!r}")
        return int(value)

    def instant(self, key: str) -> int | None:
        value = self.text(key)
        return None if value is None else parse_instant_ms(value)

    def day(self, key: str = "date") -> date | None:
        value = self.text(key)
        if value is None:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise BadParameter(f"{key} must be a date YYYY-MM-DD, got {value!r}") from exc

    def boolean(self, key: str) -> bool | None:
        value = self.text(key)
        if value is None:
            return None
        if value.lower() not in ("true", "false", "1", "0"):
            raise BadParameter(f"{key} must be true or false, got {value!r}")
        return value.lower() in ("true", "1")

    def decimal(self, key: str) -> Decimal | None:
        value = self.text(key)
        if value is None:
            return None
        try:
            number = decimal_of(value)
        except ValueError as exc:
            raise BadParameter(f"{key} must be a number, got {value!r}") from exc
        if number < 0:
            raise BadParameter(f"{key} must not be negative, got {value!r}")
        return number


def _ticker(text: str) -> str:
    ticker = text.upper()
    if not TICKER_RE.match(ticker):
        raise BadParameter(f"{text!r} is not a ticker")
    return ticker


@dataclass
class Failure:
    status: int
    retry_after: float | None


class RequestBudget:
    """UW's per-token limits: ``per_minute`` in any rolling minute and ``per_day`` in total."""

    def __init__(self, per_minute: int, per_day: int) -> None:
        self.per_minute = per_minute
        self.per_day = per_day
        self.window: collections.deque[float] = collections.deque()
        self.daily = 0

    def _expire(self, now: float) -> None:
        while self.window and now - self.window[0] >= WINDOW_S:
            self.window.popleft()

    def take(self, now: float) -> float | None:
        """Count one request; ``None`` when allowed, else the seconds until one would be."""
        self._expire(now)
        if self.daily >= self.per_day:
            return WINDOW_S * 60  # the day resets at 20:00 New York; an hour is as good a hint as any
        if len(self.window) >= self.per_minute:
            return max(WINDOW_S - (now - self.window[0]), 0.001)
        self.window.append(now)
        self.daily += 1
        return None

    def headers(self, now: float) -> dict[str, str]:
        self._expire(now)
        reset_ms = int((WINDOW_S - (now - self.window[0])) * 1000) if self.window else 0
        return {
            "x-uw-daily-req-count": str(self.daily),
            "x-uw-token-req-limit": str(self.per_day),
            "x-uw-minute-req-counter": str(len(self.window)),
            "x-uw-req-per-minute-remaining": str(max(self.per_minute - len(self.window), 0)),
            "x-uw-req-per-minute-reset": str(reset_ms),
        }


class RestApi:
    """Answers one GET: 401 without the bearer token, then injected failures, then the rate limit, then the route
    (404 unknown, 422 bad parameters, 200 ``{"data": ...}`` with the usage headers)."""

    def __init__(self, *, market: MarketState, token: str, per_minute: int, per_day: int) -> None:
        self.market = market
        self.token = token
        self.budget = RequestBudget(per_minute, per_day)
        self.failures: collections.deque[Failure] = collections.deque()
        self.requests: list[tuple[str, dict[str, str], int]] = []
        self._handlers: dict[str, Callable[[Query, dict[str, str]], Any]] = {
            "flow_alerts": self._flow_alerts,
            "spot_exposures": lambda q, p: self.market.spot_exposure_rows(_ticker(p["ticker"]), q.day()),
            "greek_exposure": lambda q, p: self.market.greek_exposure_rows(_ticker(p["ticker"])),
            "stock_state": lambda q, p: self.market.stock_state(_ticker(p["ticker"])),
            "ohlc": self._ohlc,
            "net_prem_ticks": lambda q, p: self.market.net_prem_tick_rows(_ticker(p["ticker"]), q.day()),
            "option_contracts": lambda q, p: self.market.option_contract_rows(
                _ticker(p["ticker"]), q.integer("limit", default=500, low=1, high=500)
            ),
            "news": self._news,
            "market_tide": lambda q, p: self.market.market_tide_rows(q.day()),
        }

    def answer(self, target: str, headers: Headers, now: float | None = None) -> Response:
        """The response to ``GET target``; logged in ``requests`` as (path, query, status)."""
        now = time.monotonic() if now is None else now
        parts = urlsplit(target)
        query = Query(parts.query)
        reply = self._answer(parts.path, query, headers, now)
        self.requests.append((parts.path, dict(query.values), reply.status_code))
        return reply

    def _answer(self, path: str, query: Query, headers: Headers, now: float) -> Response:
        if headers.get("Authorization", "") != f"Bearer {self.token}":
            return json_response(401, {"message": "Unauthorized: a valid 'Authorization: Bearer <token>' is required"})
        if self.failures:
            return self._failure(self.failures.popleft())
        wait = self.budget.take(now)
        if wait is not None:
            return json_response(
                429,
                {"code": "too_many_requests", "message": "Rate limit reached; retry after the time in retry-after"},
                {"retry-after": f"{wait:.0f}" if wait >= 1 else "1"},
            )
        usage = self.budget.headers(now)
        for pattern, name in ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            try:
                data = self._handlers[name](query, match.groupdict())
            except BadParameter as exc:
                url = f"{path}?{query.raw}" if query.raw else path
                document = {"msg": str(exc), "path": path, "query": query.values, "url": url}
                return json_response(422, document, usage)
            return json_response(200, {"data": data}, usage)
        return json_response(404, {"message": f"Not found: {path}"}, usage)

    def _failure(self, failure: Failure) -> Response:
        if failure.status == 429:
            extra = {} if failure.retry_after is None else {"retry-after": f"{failure.retry_after:g}"}
            return json_response(429, {"code": "too_many_requests", "message": "Rate limit reached"}, extra)
        if failure.status >= 500:
            return response(failure.status, b"Internal Server Error", "text/plain; charset=utf-8")
        return json_response(failure.status, {"message": HTTPStatus(failure.status).phrase})

    def _flow_alerts(self, query: Query, params: dict[str, str]) -> list[dict[str, Any]]:
        symbols = query.text("ticker_symbol")
        tickers = {_ticker(t) for t in symbols.split(",") if t.strip()} if symbols else None
        is_call = query.boolean("is_call")
        is_put = query.boolean("is_put")
        if is_call is None and is_put is not None:
            is_call = not is_put
        return self.market.flow_alert_rows(
            tickers=tickers,
            newer_than=query.instant("newer_than"),
            older_than=query.instant("older_than"),
            min_premium=query.decimal("min_premium"),
            is_call=is_call,
            limit=query.integer("limit", default=50, low=1, high=200),
        )

    def _news(self, query: Query, params: dict[str, str]) -> list[dict[str, Any]]:
        ticker = query.text("ticker")
        return self.market.news_rows(
            ticker=_ticker(ticker) if ticker else None,
            major_only=bool(query.boolean("major_only")),
            limit=query.integer("limit", default=50, low=1, high=100),
        )

    def _ohlc(self, query: Query, params: dict[str, str]) -> list[dict[str, Any]]:
        size = params["size"]
        if size not in CANDLE_MS and size != "1d":
            raise BadParameter(f"candle size must be one of {', '.join([*CANDLE_MS, '1d'])}, got {size!r}")
        limit = query.integer("limit", default=2500, low=1, high=2500)
        return self.market.candle_rows(_ticker(params["ticker"]), size, query.day(), limit)
