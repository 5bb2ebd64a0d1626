"""Interactive Brokers market data, stored the way the Unusual Whales data is: rows in a table, latest values in Redis.

The IB connection (``apps.execution.ib``) subscribes with ``reqMktData`` and hands over batches of ticks, one dict
per tick::

    {"key": "SPY250610C00600000", "sec_type": "OPT", "con_id": 123456, "field": "bid", "value": "1.25",
     "at": "2025-06-10T14:30:00.123456+00:00"}

``key`` is the OCC symbol of an option or the ticker of a stock; ``value`` a decimal string, where ``""`` (and IB's
own "no value" numbers, see ``NO_VALUE``) clears the field; ``at`` the aware platform time the tick arrived.

Each batch is folded per key (the newest value of each field wins) into one ``ib_quotes`` row per key, completed with
the previous values from the key's Redis hash for fields the batch did not carry.  After the commit the hashes
``latest:ib:quote:{OCC}`` and ``latest:ib:price:{TICKER}`` take the batch's fields, written with the same monotonic
writer as the ``latest:uw:*`` hashes (``redis_keys.latest_publish``): a batch older than what a hash holds does not
touch it.  Field names and formats are those of ``latest:uw:quote:{OCC}`` where they overlap (``bid``, ``ask``,
``last``, ``underlying_price``, ``delta``, ``ts`` in ISO with its offset, ``ts_ms``; decimals as plain strings, ``""``
for no value), so the paper broker's quote reader reads either.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import cast

from django.db import transaction

from apps.core import clock, occ
from apps.core.store import get_redis
from apps.ingestion import redis_keys
from apps.ingestion.feeds import IB_MARKET, feed_is_paused
from apps.ingestion.models import GREEK, PRICE, IBQuote
from apps.ops import metrics

logger = logging.getLogger(__name__)

OPTION = IBQuote.SecType.OPTION.value
STOCK = IBQuote.SecType.STOCK.value

PRICE_FIELDS = frozenset({"bid", "ask", "last", "und_price"})
SIZE_FIELDS = frozenset({"bid_size", "ask_size", "last_size"})
GREEK_FIELDS = frozenset({"implied_vol", "delta", "gamma"})
TICK_FIELDS = PRICE_FIELDS | SIZE_FIELDS | GREEK_FIELDS
# tickOptionComputation is sent for options only.
OPTION_ONLY_FIELDS = frozenset({"implied_vol", "delta", "gamma", "und_price"})

# Tick field -> IBQuote column, which is also the hash field (``underlying_price`` as in ``latest:uw:quote``).
COLUMN = {name: ("underlying_price" if name == "und_price" else name) for name in TICK_FIELDS}
QUOTE_HASH_FIELDS = (
    "bid",
    "ask",
    "last",
    "bid_size",
    "ask_size",
    "last_size",
    "implied_vol",
    "delta",
    "gamma",
    "underlying_price",
)
PRICE_HASH_FIELDS = ("bid", "ask", "last", "bid_size", "ask_size", "last_size")

# The numbers IB sends for "no value": -1 for prices, sizes and the implied volatility; -2 for a greek the model did
# not compute.  A delta of -1 is a real delta (a deep in-the-money put), so only -2 clears it; a gamma is never
# negative, so both clear it.
NO_VALUE: dict[str, frozenset[Decimal]] = {
    **{name: frozenset({Decimal(-1)}) for name in TICK_FIELDS},
    "delta": frozenset({Decimal(-2)}),
    "gamma": frozenset({Decimal(-1), Decimal(-2)}),
}

MAX_SIZE = 2**31 - 1  # an IntegerField
MAX_CON_ID = 2**63 - 1  # a BigIntegerField
TICKER_RE = re.compile(r"^[A-Z][A-Z.]{0,11}$")
FIRST_YEAR, LAST_YEAR = 2000, 2100


def latest_ib_quote_key(option_symbol: str) -> str:
    return f"latest:ib:quote:{option_symbol}"


def latest_ib_price_key(ticker: str) -> str:
    return f"latest:ib:price:{ticker}"


class BadTick(ValueError):
    """A tick that cannot be stored; ``kind`` is the reason class counted in the batch's warning."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Tick:
    key: str  # canonical: OCC symbol (upper case) or ticker
    sec_type: str
    con_id: int | None
    column: str
    value: Decimal | int | None  # None: IB said there is no value now
    at: datetime  # aware UTC


@dataclass
class _Folded:
    """The newest value of each field one batch carried for one key."""

    sec_type: str
    con_id: int | None = None
    values: dict[str, Decimal | int | None] = field(default_factory=dict)  # column -> value
    quoted_at: datetime | None = None


def _bounds(column: str) -> tuple[int, Decimal]:
    """(decimal places, exclusive magnitude limit) of a decimal column."""
    spec = GREEK if column in GREEK_FIELDS else PRICE
    return spec["decimal_places"], Decimal(10) ** (spec["max_digits"] - spec["decimal_places"])


def tick_value(name: str, raw: object) -> Decimal | int | None:
    """The value of a tick of field ``name``: ``None`` for no value, an ``int`` for sizes, else a ``Decimal`` rounded
    to its column.  Raises :class:`BadTick` for anything else (not a decimal string, out of range, a fractional
    size, a negative price, a delta outside [-1, 1])."""
    if not isinstance(raw, str):
        raise BadTick("bad_value", f"{name} value must be a decimal string, got {raw!r}")
    text = raw.strip()
    if not text:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation as exc:
        raise BadTick("bad_value", f"{name} value is not a number: {raw!r}") from exc
    if not number.is_finite():
        raise BadTick("bad_value", f"{name} value is not finite: {raw!r}")
    if number in NO_VALUE[name]:
        return None
    if name in SIZE_FIELDS:
        if number != number.to_integral_value() or not 0 <= number <= MAX_SIZE:
            raise BadTick("bad_value", f"{name} must be a whole number of contracts or shares, got {raw!r}")
        return int(number)
    lowest = Decimal(-1) if name == "delta" else Decimal(0)
    highest = Decimal(1) if name == "delta" else None
    places, limit = _bounds(COLUMN[name])
    if number < lowest or (highest is not None and number > highest) or abs(number) >= limit:
        raise BadTick("bad_value", f"{name} value out of range: {raw!r}")
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -places:
        number = number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    # "-0" and "0E-7" both mean 0; written back as "0".
    return Decimal(0) if number.is_zero() else number


def _tick_time(raw: object) -> datetime:
    if not isinstance(raw, str):
        raise BadTick("bad_at", f"at must be an ISO timestamp, got {raw!r}")
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise BadTick("bad_at", f"at is not an ISO timestamp: {raw!r}") from exc
    if moment.tzinfo is None:
        raise BadTick("bad_at", f"at has no UTC offset: {raw!r}")
    moment = moment.astimezone(UTC)
    if not FIRST_YEAR <= moment.year < LAST_YEAR:
        raise BadTick("bad_at", f"at is outside {FIRST_YEAR}-{LAST_YEAR}: {raw!r}")
    return moment


def _tick_key(sec_type: object, raw: object) -> str:
    if not isinstance(raw, str):
        raise BadTick("bad_key", f"key must be a string, got {raw!r}")
    if sec_type == OPTION:
        try:
            return occ.parse(raw).occ
        except occ.InvalidOptionSymbol as exc:
            raise BadTick("bad_key", str(exc)) from exc
    ticker = raw.strip().upper()
    if not TICKER_RE.match(ticker):
        raise BadTick("bad_key", f"not a stock ticker: {raw!r}")
    return ticker


def tick_parse(raw: object) -> Tick:
    """One tick dict as a :class:`Tick`, or :class:`BadTick` saying why it cannot be stored."""
    if not isinstance(raw, Mapping):
        raise BadTick("not_an_object", f"a tick must be a dict, got {type(raw).__name__}")
    sec_type = raw.get("sec_type")
    if sec_type not in (OPTION, STOCK):
        raise BadTick("bad_sec_type", f"sec_type must be OPT or STK, got {sec_type!r}")
    key = _tick_key(sec_type, raw.get("key"))
    name = raw.get("field")
    if name not in TICK_FIELDS:
        raise BadTick("unknown_field", f"unknown field {name!r} for {key}")
    if sec_type == STOCK and name in OPTION_ONLY_FIELDS:
        raise BadTick("unknown_field", f"{name} is an option field, sent for the stock {key}")
    con_id = raw.get("con_id")
    if con_id is not None and (type(con_id) is not int or not 0 < con_id <= MAX_CON_ID):
        raise BadTick("bad_con_id", f"con_id must be a positive integer or null, got {con_id!r} for {key}")
    return Tick(
        key=key,
        sec_type=sec_type,
        con_id=con_id,
        column=COLUMN[name],
        value=tick_value(name, raw.get("value")),
        at=_tick_time(raw.get("at")),
    )


def _text(value: Decimal | int | None) -> str:
    if value is None:
        return ""
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def _hash_key(sec_type: str, key: str) -> str:
    return latest_ib_quote_key(key) if sec_type == OPTION else latest_ib_price_key(key)


def _hash_fields(sec_type: str) -> tuple[str, ...]:
    return QUOTE_HASH_FIELDS if sec_type == OPTION else PRICE_HASH_FIELDS


def _stored_time(data: Mapping[str, str]) -> datetime | None:
    try:
        moment = datetime.fromisoformat(data.get("ts", ""))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _stored_values(sec_type: str, data: Mapping[str, str]) -> dict[str, Decimal | int | None]:
    """The typed values of a stored hash; a field that does not read back (written by hand) is left out."""
    values: dict[str, Decimal | int | None] = {}
    for column in _hash_fields(sec_type):
        text = data.get(column)
        if text is None:
            continue
        if text == "":
            values[column] = None
            continue
        try:
            number = Decimal(text)
        except InvalidOperation:
            continue
        if column in SIZE_FIELDS:
            if number == number.to_integral_value() and 0 <= number <= MAX_SIZE:
                values[column] = int(number)
        elif number.is_finite() and abs(number) < _bounds(column)[1]:
            values[column] = number
    return values


def _fold(ticks: Iterable[Tick]) -> dict[str, _Folded]:
    """Per key, the newest value of each field (by ``at``; equal times: the later tick in the batch)."""
    folded: dict[str, _Folded] = {}
    for tick in sorted(ticks, key=lambda item: item.at):  # stable: arrival order among equal times
        entry = folded.setdefault(tick.key, _Folded(sec_type=tick.sec_type))
        entry.values[tick.column] = tick.value
        if tick.con_id is not None:
            entry.con_id = tick.con_id
        entry.quoted_at = tick.at
    return folded


def ib_ticks_ingest(*, ticks: list[dict[str, object]]) -> int:
    """Store a batch of IB ticks: one ``ib_quotes`` row per key, the latest hashes after the commit.

    Guarantees: each row holds the newest value of every field the batch carried for its key, completed with the
    key's previous values (from its hash) unless the hash is newer than the batch, so a row never holds a value newer
    than its ``quoted_at``; every row is written by one ``bulk_create`` in one transaction; a tick that cannot be
    stored (bad key, field, number or time) is skipped and counted in one WARNING per batch; a hash only takes a
    batch whose newest tick for it is at least as new as the hash's ``ts``, so a late batch never rewinds it (its
    values stay in its rows).  Returns the number of rows written.

    While the ``ib_market`` feed is paused (``apps.ingestion.feeds``) the batch is dropped whole and 0 returned: an
    operator pauses it because the broker's data is wrong, and stale-but-right hashes are better than fresh wrong ones.
    """
    if feed_is_paused(IB_MARKET):
        logger.info("IB ticks: dropped a batch of %d, the ib_market feed is paused", len(ticks))
        return 0
    parsed: list[Tick] = []
    skipped: Counter[str] = Counter()
    first_reason = ""
    for raw in ticks:
        try:
            parsed.append(tick_parse(raw))
        except BadTick as exc:
            skipped[exc.kind] += 1
            first_reason = first_reason or str(exc)
    metrics.frames_in(source="ib", channel="ib_ticks", n=len(ticks))
    metrics.frames_quarantined(source="ib", channel="ib_ticks", n=sum(skipped.values()))
    if skipped:
        logger.warning(
            "IB ticks: skipped %d of %d: %s (first: %s)",
            sum(skipped.values()),
            len(ticks),
            dict(skipped),
            first_reason,
        )
    folded = _fold(parsed)
    if not folded:
        return 0

    client = get_redis()
    reader = client.pipeline(transaction=False)
    for key, entry in folded.items():
        reader.hgetall(_hash_key(entry.sec_type, key))
    stored = cast(list[dict[str, str]], reader.execute())  # decode_responses

    received_at = clock.now()
    rows: list[IBQuote] = []
    updates = redis_keys.LatestUpdates()
    for (key, entry), data in zip(folded.items(), stored, strict=True):
        quoted_at = cast(datetime, entry.quoted_at)  # every folded entry saw at least one tick
        stored_at = _stored_time(data)
        previous = _stored_values(entry.sec_type, data) if stored_at is None or stored_at <= quoted_at else {}
        values = {**previous, **entry.values}
        rows.append(
            IBQuote(
                key=key,
                sec_type=entry.sec_type,
                con_id=entry.con_id,
                quoted_at=quoted_at,
                received_at=received_at,
                **values,
            )
        )
        fields = {
            column: _text(value) for column, value in entry.values.items() if column in _hash_fields(entry.sec_type)
        }
        if entry.con_id is not None:
            fields["con_id"] = str(entry.con_id)
        fields["ts"] = quoted_at.isoformat()
        updates.offer_hash(_hash_key(entry.sec_type, key), redis_keys.epoch_ms(quoted_at), fields)

    with transaction.atomic():
        IBQuote.objects.bulk_create(rows, batch_size=1000)
        # After the commit: a hash never shows values whose rows rolled back.  If Redis fails here the task fails
        # and its retry stores the batch again (more rows, the same hash).
        transaction.on_commit(lambda: redis_keys.latest_publish(updates=updates))
        transaction.on_commit(lambda: redis_keys.feed_frame_stamp(IB_MARKET))
    return len(rows)


def latest_ib_quote(key: str) -> dict[str, str] | None:
    """The latest IB hash of ``key`` (an OCC symbol: ``latest:ib:quote:{OCC}``; a ticker: ``latest:ib:price:{T}``),
    all values strings as stored, or ``None`` when IB has sent nothing for it."""
    try:
        redis_key = latest_ib_quote_key(occ.parse(key).occ)
    except occ.InvalidOptionSymbol:
        redis_key = latest_ib_price_key(key.strip().upper())
    data = cast(dict[str, str], get_redis().hgetall(redis_key))  # decode_responses
    return data or None
