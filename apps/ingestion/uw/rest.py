"""The Unusual Whales REST client: one ``requests.Session``, a shared request budget, retries, and an archive.

Every response -- successes, errors and requests that got no answer (status 0) -- is written to
``uw_rest_payloads`` before anything else looks at it, so what UW said is never lost, whatever the normalizers make
of it.  The token travels only in the ``Authorization`` header; it is scrubbed from anything archived or logged.

Rate limiting has three layers, because several workers share one token:

* a per-minute budget of ``UW_REST_REQUESTS_PER_MINUTE`` counted in Redis (one ``INCR`` per request on a key named
  after the current minute), so all processes together stay under the plan;
* UW's own usage headers: ``x-uw-req-per-minute-remaining: 0`` pauses every process until
  ``x-uw-req-per-minute-reset``; a daily count at ``x-uw-token-req-limit`` stops REST polling until the daily reset
  (20:00 New York);
* 429 honours ``retry-after`` (seconds), else exponential backoff with full jitter; 5xx and timeouts are retried the
  same way a bounded number of times; any other 4xx is permanent (retrying cannot fix a bad request or token).

A wait longer than ``max_wait_seconds`` is not slept through: it raises a transient :class:`UWRestError` carrying
``retry_after``, and the Celery task retries later instead of holding a worker.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, cast
from urllib.parse import quote

import orjson
import requests
from django.conf import settings

from apps.core import calendar, clock
from apps.core.store import get_redis
from apps.ingestion.models import RestPayload
from apps.ingestion.uw.lines import storable_text

logger = logging.getLogger(__name__)

FLOW_ALERTS_MAX_LIMIT = 200
DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_MAX_WAIT_SECONDS = 30.0
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 20.0
DAILY_RESET_HOUR = 20  # the daily request count resets at 20:00 New York

# Redis keys shared by every process using the token.
BUDGET_KEY_PREFIX = "uw:rest:budget:"  # + epoch minute -> requests sent in that minute
PAUSE_KEY = "uw:rest:pause_until_ms"  # UW said the minute is used up: nobody sends before this epoch ms
DAILY_STOP_KEY = "uw:rest:daily_stop"  # the daily limit is reached: ISO time of the reset, expires at it

# The response headers worth keeping with each archived payload (the x-uw-* family and retry-after).
RATE_HEADERS = ("retry-after",)
REMAINING = "x-uw-req-per-minute-remaining"
RESET = "x-uw-req-per-minute-reset"
DAILY_COUNT = "x-uw-daily-req-count"
DAILY_LIMIT = "x-uw-token-req-limit"
_EPOCH_MS_ABOVE = 100_000_000_000  # a reset value this large is an epoch time, not a duration


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    path: str  # with ``{ticker}`` where the endpoint is per ticker

    @property
    def per_ticker(self) -> bool:
        return "{ticker}" in self.path


ENDPOINTS: dict[str, Endpoint] = {
    e.name: e
    for e in (
        Endpoint("flow_alerts", "/api/option-trades/flow-alerts"),
        Endpoint("spot_exposures", "/api/stock/{ticker}/spot-exposures"),
        Endpoint("greek_exposure", "/api/stock/{ticker}/greek-exposure"),
        Endpoint("stock_state", "/api/stock/{ticker}/stock-state"),  # ``data`` is one object
        Endpoint("candles_1m", "/api/stock/{ticker}/ohlc/1m"),
        Endpoint("news", "/api/news/headlines"),
        Endpoint("market_tide", "/api/market/market-tide"),
        Endpoint("net_prem_ticks", "/api/stock/{ticker}/net-prem-ticks"),
        Endpoint("option_contracts", "/api/stock/{ticker}/option-contracts"),
    )
}


class UWRestError(Exception):
    """A request that did not produce a usable answer.

    ``permanent`` errors (4xx other than 429, the daily limit) must not be retried as they are; transient ones
    (429, 5xx, timeouts, an exhausted minute budget) may be, after ``retry_after`` seconds when it is known.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        body: str = "",
        permanent: bool = False,
        retry_after: float | None = None,
        endpoint: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.permanent = permanent
        self.retry_after = retry_after
        self.endpoint = endpoint


class UWDailyLimitReached(UWRestError):
    """The token's daily request limit is used up; nothing is sent until the reset at 20:00 New York."""


class UWBudgetExhausted(UWRestError):
    """This minute's shared request budget (ours or UW's) is spent and the wait is longer than the caller allows."""


@dataclass
class RestResponse:
    """One archived, successful response."""

    endpoint: str
    path: str
    params: dict[str, Any]
    status: int
    body: Any
    rate: dict[str, str]
    payload_id: int  # the RestPayload row
    requested_at: datetime
    attempts: int = 1
    items: list[Any] = field(default_factory=list)


def _now_ms() -> int:
    return int(clock.now().timestamp() * 1000)


def next_daily_reset(moment: datetime) -> datetime:
    """The next 20:00 New York after ``moment`` (aware UTC)."""
    local = moment.astimezone(calendar.NEW_YORK)
    reset_day: date = local.date()
    if local.hour >= DAILY_RESET_HOUR:
        reset_day += timedelta(days=1)
    wall = datetime(reset_day.year, reset_day.month, reset_day.day, DAILY_RESET_HOUR, tzinfo=calendar.NEW_YORK)
    return wall.astimezone(moment.tzinfo or calendar.NEW_YORK)


class UWRestClient:
    """A method per endpoint the strategies need; each returns the archived :class:`RestResponse` or raises
    :class:`UWRestError`.  Safe to share within a process (``requests.Session`` pools connections per thread)."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        token: str | None = None,
        timeout: float | None = None,
        requests_per_minute: int | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = (base_url if base_url is not None else settings.UW_API_URL).rstrip("/")
        self._token = token if token is not None else settings.UW_API_TOKEN
        self.timeout = timeout if timeout is not None else settings.UW_REST_TIMEOUT_SECONDS
        self.requests_per_minute = (
            requests_per_minute if requests_per_minute is not None else settings.UW_REST_REQUESTS_PER_MINUTE
        )
        self.max_attempts = max(1, max_attempts)
        self.max_wait_seconds = max_wait_seconds
        self._sleep = sleep
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/json", "User-Agent": "tradingplatform-ingestion"})
        if self._token:
            self.session.headers["Authorization"] = f"Bearer {self._token}"

    def __repr__(self) -> str:  # never the token
        return f"UWRestClient({self.base_url!r})"

    def close(self) -> None:
        self.session.close()

    # --- one method per endpoint -----------------------------------------------------------------------------------

    def flow_alerts(
        self,
        *,
        ticker: str | None = None,
        newer_than: int | None = None,
        older_than: int | None = None,
        limit: int = FLOW_ALERTS_MAX_LIMIT,
        min_premium: int | None = None,
    ) -> RestResponse:
        """Flow alerts, newest first; ``newer_than``/``older_than`` are epoch milliseconds (exclusive bounds)."""
        params: dict[str, Any] = {"limit": max(1, min(limit, FLOW_ALERTS_MAX_LIMIT))}
        if ticker:
            params["ticker_symbol"] = ticker
        if newer_than is not None:
            params["newer_than"] = newer_than
        if older_than is not None:
            params["older_than"] = older_than
        if min_premium is not None:
            params["min_premium"] = min_premium
        return self.get("flow_alerts", params=params)

    def spot_exposures(self, *, ticker: str) -> RestResponse:
        return self.get("spot_exposures", ticker=ticker)

    def greek_exposure(self, *, ticker: str) -> RestResponse:
        return self.get("greek_exposure", ticker=ticker)

    def stock_state(self, *, ticker: str) -> RestResponse:
        return self.get("stock_state", ticker=ticker)

    def candles_1m(self, *, ticker: str) -> RestResponse:
        return self.get("candles_1m", ticker=ticker)

    def news(self) -> RestResponse:
        return self.get("news")

    def market_tide(self) -> RestResponse:
        return self.get("market_tide")

    def net_prem_ticks(self, *, ticker: str) -> RestResponse:
        return self.get("net_prem_ticks", ticker=ticker)

    def option_contracts(self, *, ticker: str) -> RestResponse:
        return self.get("option_contracts", ticker=ticker)

    # --- the one request path ---------------------------------------------------------------------------------------

    def get(self, endpoint: str, *, ticker: str | None = None, params: Mapping[str, Any] | None = None) -> RestResponse:
        """GET ``endpoint`` (a key of :data:`ENDPOINTS`) within the budget, retrying what is transient."""
        spec = ENDPOINTS[endpoint]
        if spec.per_ticker and not ticker:
            raise ValueError(f"{endpoint} needs a ticker")
        path = spec.path.format(ticker=quote(ticker or "", safe=""))
        query = dict(params or {})
        for attempt in range(1, self.max_attempts + 1):
            self._acquire(endpoint)
            outcome = self._send(endpoint, path, query)
            if isinstance(outcome, RestResponse):
                outcome.attempts = attempt
                outcome.items = _items(outcome.body)
                return outcome
            error = outcome
            if error.permanent or attempt == self.max_attempts:
                raise error
            wait = error.retry_after if error.retry_after is not None else self._backoff(attempt)
            if wait > self.max_wait_seconds:
                # Holding a worker for minutes helps nobody: the task retries after this long instead.
                raise UWRestError(
                    f"{endpoint}: asked to wait {wait:.1f}s, more than {self.max_wait_seconds:.1f}s",
                    status=error.status,
                    body=error.body,
                    retry_after=wait,
                    endpoint=endpoint,
                )
            logger.warning(
                "UW REST %s: %s (attempt %d of %d), retrying in %.2fs",
                endpoint,
                error,
                attempt,
                self.max_attempts,
                wait,
            )
            self._sleep(wait)
        raise AssertionError("unreachable: the loop returns or raises")

    def _backoff(self, attempt: int) -> float:
        # Full jitter: workers that failed together do not come back together.
        return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt))

    def _acquire(self, endpoint: str) -> None:
        """Wait for (or refuse) a slot: the daily stop, UW's minute pause, then our shared per-minute counter."""
        redis = get_redis()
        stop = cast(str | None, redis.get(DAILY_STOP_KEY))
        if stop:
            raise UWDailyLimitReached(
                f"UW daily request limit reached; REST polling stopped until {stop}",
                permanent=True,
                endpoint=endpoint,
            )
        paused = cast(str | None, redis.get(PAUSE_KEY))
        if paused:
            self._wait_or_raise(endpoint, (int(paused) - _now_ms()) / 1000, "UW says this minute is used up")
        waited_in: int | None = None
        while True:
            now_ms = _now_ms()
            minute = now_ms // 60_000
            if minute == waited_in:
                # Still the minute we waited out: the clock is simulated (a replay) and will not move by sleeping.
                raise UWBudgetExhausted(
                    f"{endpoint}: the request budget is spent and the clock does not advance", endpoint=endpoint
                )
            key = f"{BUDGET_KEY_PREFIX}{minute}"
            pipe = redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, 120)
            count = int(pipe.execute()[0])
            if count <= self.requests_per_minute:
                return
            wait = ((minute + 1) * 60_000 - now_ms) / 1000
            self._wait_or_raise(
                endpoint, wait, f"the shared budget of {self.requests_per_minute} requests/minute is spent"
            )
            waited_in = minute

    def _wait_or_raise(self, endpoint: str, wait: float, why: str) -> None:
        if wait <= 0:
            return
        if wait > self.max_wait_seconds:
            raise UWBudgetExhausted(
                f"{endpoint}: {why} (next slot in {wait:.1f}s)", retry_after=wait, endpoint=endpoint
            )
        logger.info("UW REST %s: %s; waiting %.2fs", endpoint, why, wait)
        self._sleep(wait)

    def _send(self, endpoint: str, path: str, params: dict[str, Any]) -> RestResponse | UWRestError:
        requested_at = clock.now()
        started = time.monotonic()
        try:
            response = self.session.get(self.base_url + path, params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            elapsed_ms = int((time.monotonic() - started) * 1000)
            message = self._scrub(f"{type(exc).__name__}: {exc}")
            self._archive(endpoint, path, params, 0, elapsed_ms, None, message, {}, requested_at)
            return UWRestError(f"{endpoint}: no response ({message})", status=0, body=message, endpoint=endpoint)
        elapsed_ms = int((time.monotonic() - started) * 1000)
        rate = {name: value for name, value in response.headers.items() if _is_rate_header(name.lower())}
        rate = {name.lower(): value for name, value in rate.items()}
        text = self._scrub(response.text)
        body: Any = None
        try:
            body = orjson.loads(text) if text else None
        except orjson.JSONDecodeError:
            body = None
        if body is not None and "\\u0000" in text:
            # PostgreSQL's jsonb cannot hold NUL; the text column keeps the body (NUL replaced) instead.
            body = None
        body_text = "" if body is not None else storable_text(text)
        payload = self._archive(
            endpoint, path, params, response.status_code, elapsed_ms, body, body_text, rate, requested_at
        )
        self._observe_usage(rate)
        status = response.status_code
        if 200 <= status < 300 and body is None and text:
            return UWRestError(f"{endpoint}: {status} but the body is not JSON", status=status, body=body_text[:500])
        if 200 <= status < 300:
            return RestResponse(
                endpoint=endpoint,
                path=path,
                params=params,
                status=status,
                body=body,
                rate=rate,
                payload_id=payload.pk,
                requested_at=requested_at,
            )
        short = (body_text or orjson.dumps(body).decode())[:500]
        if status == 429:
            return UWRestError(
                f"{endpoint}: 429 rate limited",
                status=status,
                body=short,
                retry_after=_seconds(rate.get("retry-after")),
                endpoint=endpoint,
            )
        if status >= 500:
            return UWRestError(
                f"{endpoint}: {status} server error: {short[:200]}", status=status, body=short, endpoint=endpoint
            )
        return UWRestError(
            f"{endpoint}: {status} {short[:200]}", status=status, body=short, permanent=True, endpoint=endpoint
        )

    def _observe_usage(self, rate: Mapping[str, str]) -> None:
        """Share what UW's usage headers say with every process: a minute pause, or the daily stop."""
        redis = get_redis()
        if _int(rate.get(REMAINING)) == 0:
            reset = _int(rate.get(RESET))
            if reset is not None:
                until_ms = reset if reset > _EPOCH_MS_ABOVE else _now_ms() + reset
                ttl_ms = until_ms - _now_ms()
                if ttl_ms > 0:
                    redis.set(PAUSE_KEY, str(until_ms), px=ttl_ms)
        count, limit = _int(rate.get(DAILY_COUNT)), _int(rate.get(DAILY_LIMIT))
        if count is not None and limit is not None and limit > 0 and count >= limit:
            now = clock.now()
            reset_at = next_daily_reset(now)
            seconds = max(1, int((reset_at - now).total_seconds()))
            if redis.set(DAILY_STOP_KEY, reset_at.isoformat(), ex=seconds, nx=True):
                logger.error(
                    "UW daily request limit reached (%d of %d): REST polling stops until %s New York",
                    count,
                    limit,
                    reset_at.astimezone(calendar.NEW_YORK).strftime("%Y-%m-%d %H:%M"),
                )

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _archive(
        self,
        endpoint: str,
        path: str,
        params: dict[str, Any],
        status: int,
        elapsed_ms: int,
        body: Any,
        body_text: str,
        rate: dict[str, str],
        requested_at: datetime,
    ) -> RestPayload:
        return RestPayload.objects.create(
            endpoint=endpoint,
            path=path[:300],
            params=params,
            status=status,
            elapsed_ms=elapsed_ms,
            body=body,
            body_text=body_text,
            rate=rate,
            rows=0,
            requested_at=requested_at,
        )


def _is_rate_header(name: str) -> bool:
    return name.startswith("x-uw-") or name in RATE_HEADERS


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def _seconds(value: str | None) -> float | None:
    """``retry-after`` in seconds (an HTTP date form is not used by UW and is treated as absent)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds)


def _items(body: Any) -> list[Any]:
    """The page's items: ``data`` as a list (an object for stock-state becomes a one-item list)."""
    data = body.get("data") if isinstance(body, dict) else body
    if data is None:
        return []
    # Anything else (stock-state's object, or junk) is one item: the normalizer accepts or quarantines it.
    return data if isinstance(data, list) else [data]


_client: UWRestClient | None = None
_client_key: tuple[Any, ...] | None = None


def rest_client() -> UWRestClient:
    """This process's client (one session, reused), rebuilt when the UW settings change."""
    global _client, _client_key
    key = (
        settings.UW_API_URL,
        settings.UW_API_TOKEN,
        settings.UW_REST_TIMEOUT_SECONDS,
        settings.UW_REST_REQUESTS_PER_MINUTE,
    )
    if _client is None or _client_key != key:
        if _client is not None:
            _client.close()
        _client = UWRestClient()
        _client_key = key
    return _client
