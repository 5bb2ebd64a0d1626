"""The option tape: ``option_trades`` frames, the feed's high-volume channel, ingested in bulk.

The whole US option tape is millions of prints a day, so this path does per frame only what correctness needs: the
frame's fields are checked against the same rules as ``uw.normalize`` but without building ``Decimal`` or datetime
objects for well-formed values (decimal strings are checked with a pattern and written as text; PostgreSQL's numeric
input rounds them to the column exactly as the slow path's quantize would).  Anything unusual (a number where a
string is usual, an ISO time, a malformed value) goes through the full normalizer, so accepted rows and quarantine
reasons are the same whichever way a frame took.

Rows reach PostgreSQL with one ``COPY`` into a temporary staging table and one ``INSERT … SELECT … ON CONFLICT
(uw_id) DO NOTHING RETURNING uw_id``: the returned ids are exactly the new trades (a redelivered batch, a reconnect
overlap or a concurrent worker's copy are duplicates).  The raw frames of the new trades are archived as one
compressed block per call (``uw_raw_batches``) instead of a row each.
"""

from __future__ import annotations

import concurrent.futures
import io
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import psycopg2.errors
from django.db import connection, transaction

from apps.core import occ
from apps.ingestion import bulk, redis_keys
from apps.ingestion.models import GREEK, MONEY, PRICE, OptionTrade, RawBatch
from apps.ingestion.uw.channels import TICKER_RE, Channel
from apps.ingestion.uw.normalize import (
    EPOCH,
    INT32,
    NormalizationError,
    _check_contract,
    normalize_frame,
)

EARLIEST_MS = 946_684_800_000  # 2000-01-01, the normalizers' bound
LATEST_MS = 4_102_444_800_000  # 2100-01-01


def _decimal_pattern(spec: Mapping[str, int]) -> re.Pattern[str]:
    whole = spec["max_digits"] - spec["decimal_places"]
    return re.compile(rf"-?\d{{1,{whole}}}(?:\.\d{{1,30}})?")


_PRICE_RE = _decimal_pattern(PRICE)
_MONEY_RE = _decimal_pattern(MONEY)
_GREEK_RE = _decimal_pattern(GREEK)
# Text that needs no escaping in COPY's text format.
_PLAIN_RE = re.compile(r"[^\t\n\r\\]*")

# Columns of uw_option_trades in the order the staging table holds them (times as epoch ms until the INSERT).
COLUMNS = (
    "uw_id",
    "ticker",
    "option_symbol",
    "expiry",
    "right",
    "strike",
    "price",
    "size",
    "premium",
    "nbbo_bid",
    "nbbo_ask",
    "underlying_price",
    "volume",
    "open_interest",
    "implied_volatility",
    "delta",
    "gamma",
    "theta",
    "vega",
    "side",
    "tags",
    "exchange",
    "executed_ms",
    "created_ms",
)
_STAGE_TYPES = (
    "text",
    "text",
    "text",
    "date",
    "text",
    "numeric",
    "numeric",
    "integer",
    "numeric",
    "numeric",
    "numeric",
    "numeric",
    "bigint",
    "bigint",
    "numeric",
    "numeric",
    "numeric",
    "numeric",
    "numeric",
    "text",
    "jsonb",
    "text",
    "timestamptz",
    "timestamptz",
)
# The table's columns in the same order (the times as timestamps).
TARGET_COLUMNS = (*COLUMNS[:-2], "executed_at", "uw_created_at")
_I_ID, _I_TICKER, _I_SYMBOL = 0, 1, 2
_I_PRICE, _I_SIZE, _I_BID, _I_ASK, _I_UNDERLYING, _I_IV, _I_DELTA = 6, 7, 9, 10, 11, 14, 15
_I_EXECUTED, _I_CREATED = 22, 23
STAGE_TABLE = "tp_option_tape_stage"


class _SlowPath(Exception):  # noqa: N818 - a control-flow signal, not an error the caller sees
    """This frame has something the fast checks do not cover; the full normalizer decides."""


@dataclass(slots=True)
class TapeFrame:
    """One option-trade line as the ingestion loop saw it."""

    line: str
    received_ms: int
    channel: Channel
    payload: dict[str, Any]


@dataclass
class TapeResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[TapeFrame, NormalizationError]] = field(default_factory=list)
    by_channel: dict[str, int] = field(default_factory=dict)
    as_of_ms: dict[str, int] = field(default_factory=dict)  # ticker -> latest received_at of its new trades
    rows: int = 0
    created_ms: list[int] = field(default_factory=list)  # UW created_at of the new trades (feed latency)


# Contract checks (OCC parse, strike/expiry/type agreement) repeat for every print of a contract: remember them.
_CONTRACTS: dict[tuple[Any, ...], tuple[str, str, str, str, occ.OptionSymbol]] = {}
_CONTRACTS_MAX = 200_000
_TICKERS: set[str] = set()


def _contract(p: Mapping[str, Any], name: str) -> tuple[str, str, str, str, occ.OptionSymbol]:
    """(OCC symbol, expiry text, right, strike text, parsed symbol) of a checked contract, remembered per contract."""
    key = (p.get("option_symbol"), p.get("strike"), p.get("expiry"), p.get("option_type"))
    try:
        known = _CONTRACTS.get(key)
    except TypeError as exc:  # a list or an object where a string belongs
        raise _SlowPath from exc
    if known is not None:
        return known
    symbol_text = key[0]
    if not isinstance(symbol_text, str):
        raise _SlowPath
    try:
        symbol = occ.parse(symbol_text)
        _check_contract(p, name, symbol)
    except (occ.InvalidOptionSymbol, NormalizationError, TypeError, AttributeError) as exc:
        raise _SlowPath from exc
    if symbol.occ != symbol_text:
        raise _SlowPath  # lower case or padding: the slow path writes the canonical form
    if len(_CONTRACTS) >= _CONTRACTS_MAX:
        _CONTRACTS.clear()
    entry = (symbol.occ, symbol.expiry.isoformat(), symbol.right, format(symbol.strike, "f"), symbol)
    _CONTRACTS[key] = entry
    return entry


def _absent(value: object) -> str | None:
    """A decimal field that is not a well-formed string: absent is fine, anything else is the slow path's call."""
    if value is None or value == "":
        return None
    raise _SlowPath


_DECIMALS = (
    ("price", _PRICE_RE.fullmatch),
    ("premium", _MONEY_RE.fullmatch),
    ("nbbo_bid", _PRICE_RE.fullmatch),
    ("nbbo_ask", _PRICE_RE.fullmatch),
    ("underlying_price", _PRICE_RE.fullmatch),
    ("implied_volatility", _GREEK_RE.fullmatch),
    ("delta", _GREEK_RE.fullmatch),
    ("gamma", _GREEK_RE.fullmatch),
    ("theta", _GREEK_RE.fullmatch),
    ("vega", _GREEK_RE.fullmatch),
)
_DECIMAL_KEYS = tuple(key for key, _ in _DECIMALS)
_DECIMAL_MATCHERS = tuple(match for _, match in _DECIMALS)
_INT_KEYS = ("volume", "open_interest", "ask_vol", "bid_vol", "mid_vol", "no_side_vol")
_INT64 = (-(2**63), 2**63)
_SIDES = ("ask", "bid", "mid", "no_side")


def _row_fast(frame: TapeFrame) -> tuple[Any, ...]:
    """The staging row of a well-formed frame, checked to the same rules as the normalizer; ``_SlowPath`` otherwise.

    Decimal strings are checked against the column's pattern and kept as text (PostgreSQL's numeric input rounds
    them to the column exactly as the normalizer's quantize does), times stay epoch milliseconds.
    """
    p: dict[str, Any] = frame.payload
    get = p.get
    uw_id = get("id")
    if type(uw_id) is not str or not 0 < len(uw_id) <= 64 or not _PLAIN_RE.fullmatch(uw_id):
        raise _SlowPath
    occ_text, expiry, right, strike, symbol = _contract(p, frame.channel.name)
    channel_ticker = frame.channel.ticker
    ticker = get("underlying_symbol") or channel_ticker or symbol.root
    if ticker not in _TICKERS:
        if type(ticker) is not str or not TICKER_RE.match(ticker):
            raise _SlowPath
        _TICKERS.add(ticker)
    if channel_ticker is not None and ticker != channel_ticker:
        raise _SlowPath
    price, premium, bid, ask, underlying, iv, delta, gamma, theta, vega = [
        value if type(value) is str and match(value) else _absent(value)
        for value, match in zip(map(get, _DECIMAL_KEYS), _DECIMAL_MATCHERS, strict=True)
    ]
    size = get("size")
    if price is None or premium is None or type(size) is not int or not 0 <= size <= INT32[1]:
        raise _SlowPath
    ints = [0 if value is None else value for value in map(get, _INT_KEYS)]
    for value in ints:
        if type(value) is not int or not _INT64[0] <= value < _INT64[1]:
            raise _SlowPath
    executed = get("executed_at")
    if type(executed) is not int or not EARLIEST_MS <= executed < LATEST_MS:
        raise _SlowPath
    created = get("created_at")
    if type(created) is not int or not EARLIEST_MS <= created < LATEST_MS:
        created = None
    tags = get("tags")
    if tags is None:
        tags = []
    elif type(tags) is not list or any(type(tag) is not str for tag in tags):
        raise _SlowPath
    exchange = get("exchange") or ""
    if type(exchange) is not str or not _PLAIN_RE.fullmatch(exchange):
        raise _SlowPath
    # Which side the trade took: the volume split when one side leads, else the price against the NBBO.
    split = ints[2:]
    top = max(split)
    if top > 0 and split.count(top) == 1:
        side = _SIDES[split.index(top)]
    elif bid is not None and ask is not None and float(bid) <= float(ask):
        # Pattern-checked decimal strings of at most ~20 significant digits: float order is decimal order here.
        x = float(price)
        side = "ask" if x >= float(ask) else "bid" if x <= float(bid) else "mid"
    else:
        side = "no_side"
    return (
        uw_id,
        ticker,
        occ_text,
        expiry,
        right,
        strike,
        price,
        size,
        premium,
        bid,
        ask,
        underlying,
        ints[0],
        ints[1],
        iv,
        delta,
        gamma,
        theta,
        vega,
        side,
        tags,
        exchange[:16],
        executed,
        created,
    )


def _ms(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def _row_slow(frame: TapeFrame) -> tuple[Any, ...]:
    """The full normalizer's row (raises ``NormalizationError`` with the precise reason)."""
    normalized = normalize_frame(frame.channel, frame.payload)
    trade = normalized.record
    assert isinstance(trade, OptionTrade)  # the option-trade normalizer always builds one
    created = frame.payload.get("created_at")
    created_ms = created if type(created) is int and EARLIEST_MS <= created < LATEST_MS else None
    return (
        trade.uw_id,
        trade.ticker,
        trade.option_symbol,
        trade.expiry,
        trade.right,
        trade.strike,
        trade.price,
        trade.size,
        trade.premium,
        trade.nbbo_bid,
        trade.nbbo_ask,
        trade.underlying_price,
        trade.volume,
        trade.open_interest,
        trade.implied_volatility,
        trade.delta,
        trade.gamma,
        trade.theta,
        trade.vega,
        trade.side,
        trade.tags,
        trade.exchange,
        _ms(trade.executed_at),
        created_ms,
    )


def utc_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return _ms(moment)


def _copy_value(value: Any) -> str:
    """COPY text for what is not already a plain string (None, numbers, dates, tag lists, text needing escapes)."""
    if value is None:
        return "\\N"
    if type(value) is str:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    if type(value) is list:
        return _copy_value(orjson.dumps(value).decode())
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _copy_line(row: tuple[Any, ...]) -> str:
    """One row in COPY's text format, times as UTC timestamps.  Strings are plain by construction (patterns, OCC
    symbols, the tickers' alphabet) except the two free-text fields, which are checked here."""
    fields = [
        value if type(value) is str else str(value) if type(value) is int else _copy_value(value)
        for value in row[:_I_EXECUTED]
    ]
    for index in _FREE_TEXT:
        if not _PLAIN_RE.fullmatch(fields[index]):
            fields[index] = _copy_value(row[index])
    created = row[_I_CREATED]
    fields.append(_timestamp_text(row[_I_EXECUTED]))
    fields.append("\\N" if created is None else _timestamp_text(created))
    return "\t".join(fields)


_SECOND_TEXT: dict[int, str] = {}


def _timestamp_text(ms: int) -> str:
    """``2026-11-20 14:30:59.500+00`` for epoch milliseconds; the prints of one second share the formatted prefix."""
    second, millis = divmod(ms, 1000)
    prefix = _SECOND_TEXT.get(second)
    if prefix is None:
        if len(_SECOND_TEXT) > 100_000:
            _SECOND_TEXT.clear()
        prefix = _SECOND_TEXT[second] = (EPOCH + timedelta(seconds=second)).strftime("%Y-%m-%d %H:%M:%S")
    return f"{prefix}.{millis:03d}+00"


_FREE_TEXT = (0, 21)  # uw_id, exchange


def ingest_tape(
    frames: Sequence[TapeFrame],
    *,
    source: str,
    archive: bool = True,
    updates: redis_keys.LatestUpdates | None = None,
) -> TapeResult:
    """Normalize and insert option-trade frames (inside the caller's transaction); archive the new ones raw.

    The newest print of each contract goes to ``latest:uw:quote:*``: into the caller's ``updates`` when given (one
    Redis transaction for the whole batch), else published here.

    Guarantees: every frame is exactly one of accepted (its ``uw_id`` is new), duplicate (its ``uw_id`` is stored
    already or repeated in ``frames``) or rejected (returned with the reason, for the caller's quarantine).
    """
    result = TapeResult()
    rows: dict[str, tuple[Any, ...]] = {}
    owners: dict[str, TapeFrame] = {}
    for frame in frames:
        try:
            try:
                row = _row_fast(frame)
            except _SlowPath:
                row = _row_slow(frame)
        except NormalizationError as exc:
            result.rejected.append((frame, exc))
            continue
        uw_id = row[_I_ID]
        if uw_id in rows:
            result.duplicates += 1
            continue
        rows[uw_id] = row
        owners[uw_id] = frame
    if not rows:
        return result
    ordered = [rows[key] for key in sorted(rows)]
    # The archive block of every candidate line is compressed while the database takes the COPY (zlib releases the
    # GIL): when all of them turn out new, the live case, the block is ready when the COPY returns.
    compressing = _COMPRESSOR.submit(_compress, [owners[row[_I_ID]].line for row in ordered]) if archive else None
    new_ids = _insert(ordered)
    result.duplicates += len(rows) - len(new_ids)
    result.accepted = len(new_ids)
    result.rows = len(rows)
    if not new_ids:
        return result

    publish = updates is None
    if updates is None:
        updates = redis_keys.LatestUpdates()
    newest: dict[str, tuple[Any, ...]] = {}
    by_channel: dict[str, int] = {}
    kept_lines: list[str] = []
    first_ms = last_ms = None
    for uw_id in new_ids:
        frame = owners[uw_id]
        row = rows[uw_id]
        by_channel[frame.channel.name] = by_channel.get(frame.channel.name, 0) + 1
        ticker = row[_I_TICKER]
        if frame.received_ms > result.as_of_ms.get(ticker, -1):
            result.as_of_ms[ticker] = frame.received_ms
        symbol = row[_I_SYMBOL]
        held = newest.get(symbol)
        if held is None or row[_I_EXECUTED] >= held[_I_EXECUTED]:
            newest[symbol] = row
        if row[_I_CREATED] is not None:
            result.created_ms.append(row[_I_CREATED])
        kept_lines.append(frame.line)
        first_ms = frame.received_ms if first_ms is None else min(first_ms, frame.received_ms)
        last_ms = frame.received_ms if last_ms is None else max(last_ms, frame.received_ms)
    result.by_channel = by_channel
    for symbol, row in newest.items():
        updates.offer_hash(redis_keys.latest_quote_key(symbol), row[_I_EXECUTED], _quote_fields(row))
    if publish:
        redis_keys.latest_publish(updates=updates)
    if compressing is not None and first_ms is not None and last_ms is not None:
        blob = compressing.result() if len(new_ids) == len(ordered) else _compress(kept_lines)
        _archive(blob, frames=len(kept_lines), source=source, first_ms=first_ms, last_ms=last_ms)
    return result


def _text(value: Any) -> str:
    """A decimal as the Redis hashes hold it: no trailing zeros (``3.90`` -> ``3.9``, ``600.000`` -> ``600``)."""
    if value is None:
        return ""
    if type(value) is str:
        if "." not in value or value[-1] not in "0.":
            return value  # already in that form: the common case, no Decimal needed
        value = Decimal(value)
    return format(value.normalize(), "f") if isinstance(value, Decimal) else str(value)


def _quote_fields(row: tuple[Any, ...]) -> dict[str, str]:
    executed = EPOCH + timedelta(milliseconds=row[_I_EXECUTED])
    return {
        "bid": _text(row[_I_BID]),
        "ask": _text(row[_I_ASK]),
        "last": _text(row[_I_PRICE]),
        "size": str(row[_I_SIZE]),
        "underlying_price": _text(row[_I_UNDERLYING]),
        "iv": _text(row[_I_IV]),
        "delta": _text(row[_I_DELTA]),
        "ticker": row[_I_TICKER],
        "trade_id": row[_I_ID],
        "ts": executed.isoformat(),
    }


def _insert(rows: list[tuple[Any, ...]]) -> list[str]:
    """Insert ``rows`` (sorted by uw_id, so overlapping batches queue rather than deadlock); return the new ids."""
    if connection.vendor == "postgresql":
        return _insert_copy(rows)
    return _insert_values(rows)


def _insert_copy(rows: list[tuple[Any, ...]]) -> list[str]:
    """COPY straight into the table when none of the trades is stored yet (the live case); when one is (a redelivered
    batch, a reconnect overlap, a concurrent worker), the COPY fails on the unique key, rolls back to its savepoint,
    and the rows go through the staging table and ``ON CONFLICT DO NOTHING RETURNING`` instead."""
    buffer = io.StringIO()
    write = buffer.write
    for row in rows:
        write(_copy_line(row))
        write("\n")
    quoted = ", ".join(f'"{c}"' for c in TARGET_COLUMNS)
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg2's own cursor: COPY is not part of the DB-API
        if _copy_new(raw, buffer, quoted):
            return [row[_I_ID] for row in rows]
        stage_columns = ", ".join(f'"{c}" {t}' for c, t in zip(TARGET_COLUMNS, _STAGE_TYPES, strict=True))
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {STAGE_TABLE} ({stage_columns}) ON COMMIT DELETE ROWS")
        # Empty at the start of a transaction (ON COMMIT DELETE ROWS); emptied again for a second call in one.
        cursor.execute(f"TRUNCATE {STAGE_TABLE}")
        buffer.seek(0)
        raw.copy_expert(f"COPY {STAGE_TABLE} FROM STDIN", buffer)
        cursor.execute(
            f"INSERT INTO {OptionTrade._meta.db_table} ({quoted}) "  # noqa: S608 - identifiers only
            f"SELECT {quoted} FROM {STAGE_TABLE} ORDER BY uw_id "
            "ON CONFLICT (uw_id) DO NOTHING RETURNING uw_id"
        )
        new_ids = [uw_id for (uw_id,) in cursor.fetchall()]
    return sorted(new_ids)


def _copy_new(raw: Any, buffer: io.StringIO, quoted: str) -> bool:
    """COPY ``buffer`` straight into the table under a savepoint; ``False`` (rolled back) when a trade is stored."""
    try:
        with transaction.atomic():
            buffer.seek(0)
            raw.copy_expert(f"COPY {OptionTrade._meta.db_table} ({quoted}) FROM STDIN", buffer)
    except (psycopg2.errors.UniqueViolation, psycopg2.errors.DeadlockDetected):
        return False
    return True


def _insert_values(rows: list[tuple[Any, ...]]) -> list[str]:
    """The embedded default (SQLite): a multi-row INSERT with the values adapted by the backend."""
    ops = connection.ops
    adapted = []
    for row in rows:
        values = list(row[:-2])
        values[3] = ops.adapt_datefield_value(values[3])
        for index in (5, 6, 8, 9, 10, 11, 14, 15, 16, 17, 18):
            if values[index] is not None:
                values[index] = str(values[index])
        values[20] = orjson.dumps(values[20]).decode()
        values.append(ops.adapt_datetimefield_value(EPOCH + timedelta(milliseconds=row[_I_EXECUTED])))
        created = row[_I_CREATED]
        values.append(
            None if created is None else ops.adapt_datetimefield_value(EPOCH + timedelta(milliseconds=created))
        )
        adapted.append(values)
    columns = [*COLUMNS[:-2], "executed_at", "uw_created_at"]
    returned = bulk.insert_values(OptionTrade._meta.db_table, columns, adapted, returning=("uw_id",))
    return sorted(uw_id for (uw_id,) in returned)


# One thread per process compresses archive blocks beside the database's work on the rows.
_COMPRESSOR = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="tape-archive")


def _compress(lines: list[str]) -> bytes:
    return zlib.compress("\n".join(lines).encode(), 1)


def _archive(blob: bytes, *, frames: int, source: str, first_ms: int, last_ms: int) -> None:
    RawBatch.objects.create(
        source=source,
        channel="option_trades",
        first_received_at=EPOCH + timedelta(milliseconds=first_ms),
        last_received_at=EPOCH + timedelta(milliseconds=last_ms),
        frames=frames,
        lines_zlib=blob,
    )


def archived_lines(batch: RawBatch) -> list[str]:
    """The session lines a ``RawBatch`` holds, as received."""
    return zlib.decompress(bytes(batch.lines_zlib)).decode().split("\n")
