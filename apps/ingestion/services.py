"""Ingestion writes: socket lines in, normalized rows, the raw archive, the quarantine and the Redis keys out."""

from __future__ import annotations

import bisect
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import orjson
import redis
from celery import Task, current_app
from django.conf import settings
from django.db import connection, models, transaction

from apps.core import clock
from apps.core.events import dumps
from apps.core.pipeline import enqueue_after_commit
from apps.core.store import get_redis
from apps.ingestion import bulk, drift, redis_keys, tape
from apps.ingestion.models import (
    FlowAlert,
    GexSnapshot,
    GexStrike,
    NewsItem,
    OptionTrade,
    PriceTick,
    QuarantinedFrame,
    RawFrame,
)
from apps.ingestion.uw.channels import Channel, ChannelKind, UnknownChannel, channel_resolve
from apps.ingestion.uw.lines import ParsedLine, digest, line_bytes, parse_line, storable_text
from apps.ingestion.uw.normalize import (
    NormalizationError,
    Normalized,
    RejectKind,
    is_join_ack,
    normalize_frame,
    parse_time,
)
from apps.ops import metrics

logger = logging.getLogger(__name__)

NEXT_STAGE_TASK = "analytics.update_ticker"
LOOKUP_CHUNK = 5000


@dataclass
class IngestResult:
    """The account of one call: every line is exactly one of accepted, duplicate or quarantined."""

    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    by_channel: dict[str, int] = field(default_factory=dict)  # full channel name -> accepted frames
    quarantine_reasons: dict[str, int] = field(default_factory=dict)  # RejectKind value -> lines
    tickers: set[str] = field(default_factory=set)  # underlyings whose market data changed
    as_of: dict[str, datetime] = field(default_factory=dict)  # ticker -> latest received_at of its frames
    rows: dict[str, int] = field(default_factory=dict)  # table -> normalized rows offered (existing ones ignored)
    first_received_at: datetime | None = None
    last_received_at: datetime | None = None
    enqueued: list[str] = field(default_factory=list)  # tickers handed to analytics

    @property
    def total(self) -> int:
        return self.accepted + self.duplicates + self.quarantined

    def summary(self) -> dict[str, Any]:
        """JSON-friendly form (task results, logs, the replay's progress line)."""
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "by_channel": dict(self.by_channel),
            "quarantine_reasons": dict(self.quarantine_reasons),
            "tickers": sorted(self.tickers),
            "rows": dict(self.rows),
            "first_received_at": self.first_received_at.isoformat() if self.first_received_at else None,
            "last_received_at": self.last_received_at.isoformat() if self.last_received_at else None,
        }

    def merge(self, other: IngestResult) -> None:
        """Add ``other``'s counts to these (a file or a retry ingested in several calls)."""
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.quarantined += other.quarantined
        for channel, count in other.by_channel.items():
            self.by_channel[channel] = self.by_channel.get(channel, 0) + count
        for reason, count in other.quarantine_reasons.items():
            self.quarantine_reasons[reason] = self.quarantine_reasons.get(reason, 0) + count
        for table, count in other.rows.items():
            self.rows[table] = self.rows.get(table, 0) + count
        self.tickers |= other.tickers
        for ticker, moment in other.as_of.items():
            if ticker not in self.as_of or moment > self.as_of[ticker]:
                self.as_of[ticker] = moment
        self.enqueued.extend(other.enqueued)
        for received_at in (other.first_received_at, other.last_received_at):
            if received_at is not None:
                self._saw(received_at)

    def _saw(self, received_at: datetime) -> None:
        if self.first_received_at is None or received_at < self.first_received_at:
            self.first_received_at = received_at
        if self.last_received_at is None or received_at > self.last_received_at:
            self.last_received_at = received_at


@dataclass(frozen=True, slots=True)
class _Rejected:
    line_hash: str
    raw: str
    kind: RejectKind
    reason: str
    channel: str
    received_at: datetime | None


@dataclass(frozen=True, slots=True)
class _Accepted:
    line: ParsedLine
    normalized: Normalized


def ingest_lines(*, lines: Sequence[str], source: str) -> IngestResult:
    """Archive, normalize and persist a batch of socket lines; publish the latest values; hand tickers to analytics.

    Guarantees: ``accepted + duplicates + quarantined == len(lines)`` for any input; one database transaction; a
    frame already archived (or repeated in the batch) adds nothing, so re-ingesting the same lines is a no-op; Redis
    "latest" keys never move back in time; ``analytics.update_ticker`` is enqueued after commit, once per ticker
    whose market data arrived in this batch, with that ticker's latest ``received_at``.
    """
    result = IngestResult()
    source = source[: RawFrame._meta.get_field("source").max_length]
    rejected: list[_Rejected] = []
    # Lines grouped by frame hash, in arrival order: the first line of a new, valid frame is the accepted one.
    candidates: dict[str, list[tuple[ParsedLine, object]]] = {}

    tape_frames: list[tape.TapeFrame] = []
    arrived: Counter[str] = Counter()  # channel -> lines (tp_frames_in_total)
    for line in lines:
        frame = _tape_frame(line)
        if frame is not None:
            tape_frames.append(frame)
            arrived[frame.channel.name] += 1
            continue
        try:
            parsed = parse_line(line)
        except NormalizationError as exc:
            rejected.append(_reject(line, exc, channel=exc.channel, received_at=exc.received_at))
            arrived[exc.channel] += 1
            continue
        arrived[parsed.channel.name] += 1
        result._saw(parsed.received_at)
        candidates.setdefault(parsed.frame_hash, []).append((parsed, line))
    if tape_frames:
        result._saw(_from_ms(min(frame.received_ms for frame in tape_frames)))
        result._saw(_from_ms(max(frame.received_ms for frame in tape_frames)))

    hashes = list(candidates)
    archived: set[str] = set()
    # Chunked so that a caller's oversized batch stays within SQLite's bound-variable limit.
    for start in range(0, len(hashes), LOOKUP_CHUNK):
        chunk = hashes[start : start + LOOKUP_CHUNK]
        archived.update(RawFrame.objects.filter(frame_hash__in=chunk).values_list("frame_hash", flat=True))
    fresh: list[_Accepted] = []
    # Drift looks at every new payload of a known channel, also those the normalizers refuse (a re-typed field).
    observed: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for frame_hash, group in candidates.items():
        if frame_hash in archived:
            result.duplicates += len(group)
            continue
        parsed = group[0][0]
        if type(parsed.payload) is dict and not is_join_ack(parsed.payload):
            observed[drift.stream_for_channel(parsed.channel.name)].append(parsed.payload)
        try:
            normalized = normalize_frame(parsed.channel, parsed.payload)
        except NormalizationError as exc:
            # Every line carrying an unusable frame is quarantined: none of them was archived before.
            rejected.extend(_reject(line, exc, parsed.channel.name, each.received_at) for each, line in group)
            continue
        result.duplicates += len(group) - 1
        fresh.append(_Accepted(line=parsed, normalized=normalized))

    if tape_frames:
        observed[TAPE_STREAM].extend(frame.payload for frame in tape_frames)

    with transaction.atomic():
        for stream, payloads in observed.items():
            drift.observe(stream, payloads)
        raw_ids = _archive(fresh, source=source)
        # A frame another worker archived between our look-up and our insert is that worker's: a duplicate here.
        inserted = [item for item in fresh if item.line.frame_hash in raw_ids]
        result.duplicates += len(fresh) - len(inserted)
        result.accepted = len(inserted)
        updates = _persist_rows(inserted, raw_ids, result)
        # Tickers with data other than option prints in this batch: analytics always hears about those.
        general_tickers = set(result.as_of)
        if tape_frames:
            _ingest_tape(tape_frames, source=source, result=result, rejected=rejected, updates=updates)
        _quarantine(rejected, source=source)
        result.quarantined = len(rejected)
        result.quarantine_reasons = dict(Counter(item.kind.value for item in rejected))
        # Inside the transaction on purpose: if Redis is down the rows roll back and a retry redoes the whole batch,
        # instead of finding every frame "already archived" and never publishing it.
        redis_keys.latest_publish(updates=updates)
        _enqueue_analytics(result, tape_only=set(result.as_of) - general_tickers)

    metrics.frames_counted(source=source, arrived=arrived, quarantined=Counter(item.channel for item in rejected))
    if result.quarantined:
        logger.warning(
            "ingestion quarantined %d of %d lines from %s: %s",
            result.quarantined,
            len(lines),
            source,
            result.quarantine_reasons,
        )
    return result


_RECEIVED_PREFIX = '{"received_at":'


def _tape_frame(line: object) -> tape.TapeFrame | None:
    """The line as an option-tape frame when it plainly is one; ``None`` sends it down the general path.

    Only the envelope is checked here; any doubt (not text, broken JSON, an odd ``received_at``, a join ack, a NUL)
    leaves the line to ``parse_line``, which rejects with the precise reason or archives it as a general frame.
    """
    if type(line) is not str or "option_trades" not in line[:80] or "\\u0000" in line:
        return None
    try:
        envelope = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if type(envelope) is not dict:
        return None
    frame = envelope.get("frame")
    if type(frame) is not list or len(frame) != 2:
        return None
    name, payload = frame
    if type(name) is not str or type(payload) is not dict or is_join_ack(payload):
        return None
    channel = _TAPE_CHANNELS.get(name)
    if channel is None:
        try:
            channel = channel_resolve(name)
        except UnknownChannel:
            return None
        if channel.kind is not ChannelKind.OPTION_TRADE:
            return None
        _TAPE_CHANNELS[name] = channel
    received = envelope.get("received_at")
    if type(received) is int and tape.EARLIEST_MS <= received < tape.LATEST_MS:
        received_ms = received
    else:
        try:
            received_ms = tape.utc_ms(parse_time(received))
        except ValueError:
            return None
    return tape.TapeFrame(line=line, received_ms=received_ms, channel=channel, payload=payload)


_TAPE_CHANNELS: dict[str, Channel] = {}


def _from_ms(ms: int) -> datetime:
    return tape.EPOCH + timedelta(milliseconds=ms)


def _ingest_tape(
    frames: list[tape.TapeFrame],
    *,
    source: str,
    result: IngestResult,
    rejected: list[_Rejected],
    updates: redis_keys.LatestUpdates,
) -> None:
    outcome = tape.ingest_tape(frames, source=source, updates=updates)
    result.accepted += outcome.accepted
    result.duplicates += outcome.duplicates
    for channel, count in outcome.by_channel.items():
        result.by_channel[channel] = result.by_channel.get(channel, 0) + count
    if outcome.rows:
        result.rows[OptionTrade._meta.db_table] = result.rows.get(OptionTrade._meta.db_table, 0) + outcome.rows
    for ticker, received_ms in outcome.as_of_ms.items():
        result.tickers.add(ticker)
        moment = _from_ms(received_ms)
        if ticker not in result.as_of or moment > result.as_of[ticker]:
            result.as_of[ticker] = moment
    for frame, exc in outcome.rejected:
        rejected.append(_reject(frame.line, exc, frame.channel.name, _from_ms(frame.received_ms)))
    if outcome.created_ms and source == LIVE_SOURCE:
        created = outcome.created_ms
        transaction.on_commit(lambda: ingest_lag_record(created_ms=created))


def ingest_lag_record(*, created_ms: Sequence[int], now_ms: int | None = None) -> None:
    """Add the lag of committed trades (UW's ``created_at`` to commit) to the ``uw:ingest:lag_ms`` histogram."""
    current = int(time.time() * 1000) if now_ms is None else now_ms
    counts: Counter[str] = Counter()
    total = 0
    for created in created_ms:
        lag = max(0, current - created)
        total += lag
        counts[_lag_bucket(lag)] += 1
    try:
        with get_redis().pipeline(transaction=False) as pipe:
            for bucket, count in counts.items():
                pipe.hincrby(LAG_HISTOGRAM_KEY, bucket, count)
            pipe.hincrby(LAG_HISTOGRAM_KEY, "count", len(created_ms))
            pipe.hincrby(LAG_HISTOGRAM_KEY, "sum", total)
            pipe.execute()
    except redis.RedisError as exc:  # a metric: losing one batch's lag must not fail the committed batch
        logger.warning("ingest lag not recorded: %s", exc)


LIVE_SOURCE = "uw_ws"
TAPE_STREAM = "ws:option_trades"
LAG_HISTOGRAM_KEY = "uw:ingest:lag_ms"
# Upper bounds (ms, inclusive) of the lag histogram's buckets; "inf" takes the rest.
LAG_BUCKETS_MS = (
    1,
    2,
    3,
    5,
    7,
    10,
    15,
    20,
    25,
    30,
    40,
    50,
    60,
    75,
    100,
    125,
    150,
    200,
    250,
    300,
    400,
    500,
    750,
    1000,
    1500,
    2000,
    3000,
    5000,
    10000,
    30000,
    60000,
)


def _lag_bucket(lag: int) -> str:
    index = bisect.bisect_left(LAG_BUCKETS_MS, lag)
    return str(LAG_BUCKETS_MS[index]) if index < len(LAG_BUCKETS_MS) else "inf"


def _reject(line: object, exc: NormalizationError, channel: str, received_at: datetime | None) -> _Rejected:
    return _Rejected(
        line_hash=digest(line_bytes(line)),
        raw=storable_text(line),
        kind=exc.kind,
        reason=exc.reason,
        channel=channel[:64],
        received_at=received_at,
    )


def _archive(frames: list[_Accepted], *, source: str) -> dict[str, int]:
    """Insert the raw frames; return frame hash -> id for the rows this call inserted (conflicts are not ours).

    ``ON CONFLICT DO NOTHING RETURNING`` tells exactly which frames are new even when another worker archives the
    same frames concurrently.
    """
    stored_at = connection.ops.adapt_datetimefield_value(clock.now())
    adapt_time = connection.ops.adapt_datetimefield_value
    # Inserting in key order means two workers with overlapping batches wait for each other instead of deadlocking.
    frames = sorted(frames, key=lambda item: item.line.frame_hash)
    rows = [
        (
            item.line.frame_hash,
            item.line.channel.name,
            adapt_time(item.line.received_at),
            item.line.payload_json,
            source,
            stored_at,
        )
        for item in frames
    ]
    returned = bulk.insert_values(
        RawFrame._meta.db_table,
        ("frame_hash", "channel", "received_at", "payload", "source", "stored_at"),
        rows,
        returning=("id", "frame_hash"),
    )
    return {frame_hash: pk for pk, frame_hash in returned}


def _persist_rows(inserted: list[_Accepted], raw_ids: dict[str, int], result: IngestResult) -> redis_keys.LatestUpdates:
    """Bulk-insert the normalized rows of newly archived frames and collect what they change in Redis."""
    by_model: dict[type[models.Model], list[models.Model]] = defaultdict(list)
    updates = redis_keys.LatestUpdates()
    alerts: list[FlowAlert] = []
    by_channel: Counter[str] = Counter()
    for item in inserted:
        by_channel[item.line.channel.name] += 1
        normalized = item.normalized
        if normalized.ticker is not None:
            result.tickers.add(normalized.ticker)
            previous = result.as_of.get(normalized.ticker)
            if previous is None or item.line.received_at > previous:
                result.as_of[normalized.ticker] = item.line.received_at
        if normalized.ack_status not in (None, "ok"):
            # The socket accepted the join request but refused the channel (plan-gated): no data will come on it.
            logger.warning("UW refused %s: %s", item.line.channel.name, item.line.payload_json[:300])
        record = normalized.record
        if record is None:
            continue
        if isinstance(record, FlowAlert):
            record.raw_frame_id = raw_ids[item.line.frame_hash]
            alerts.append(record)
        else:
            latest_collect(record, updates)
        by_model[type(record)].append(record)
    result.by_channel = dict(by_channel)

    if alerts:
        # Publish an alert once per UW id, even if the feed resends it with different bytes.
        ids = [alert.uw_id for alert in alerts]
        known = set(FlowAlert.objects.filter(uw_id__in=ids).values_list("uw_id", flat=True))
        for alert in alerts:
            if alert.uw_id not in known:
                known.add(alert.uw_id)
                updates.add_flow_alert(redis_keys.epoch_ms(alert.executed_at), flow_alert_json(alert))

    for model, records in by_model.items():
        # Key order again, for the same reason as the raw frames: overlapping batches queue, they do not deadlock.
        records.sort(key=NATURAL_KEYS[model])
        bulk.insert_records(model, records)
        result.rows[model._meta.db_table] = len(records)
    return updates


NATURAL_KEYS: dict[type[models.Model], Callable[[Any], Any]] = {
    FlowAlert: lambda row: row.uw_id,
    OptionTrade: lambda row: row.uw_id,
    PriceTick: lambda row: (row.ticker, row.ts),
    GexSnapshot: lambda row: (row.ticker, row.ts),
    GexStrike: lambda row: row.natural_key,
    NewsItem: lambda row: row.news_key,
}


def _text(value: Decimal | int | None) -> str:
    """Redis hash values are strings; an absent value is an empty string, never the text "None"."""
    if value is None:
        return ""
    return format(value.normalize(), "f") if isinstance(value, Decimal) else str(value)


def latest_collect(record: models.Model, updates: redis_keys.LatestUpdates) -> None:
    """Offer what ``record`` (a normalized row) changes in the ``latest:uw:*`` keys to ``updates`` (socket and REST)."""
    if isinstance(record, OptionTrade):
        ts_ms = redis_keys.epoch_ms(record.executed_at)
        updates.offer_hash(
            redis_keys.latest_quote_key(record.option_symbol),
            ts_ms,
            {
                "bid": _text(record.nbbo_bid),
                "ask": _text(record.nbbo_ask),
                "last": _text(record.price),
                "size": _text(record.size),
                "underlying_price": _text(record.underlying_price),
                "iv": _text(record.implied_volatility),
                "delta": _text(record.delta),
                "ticker": record.ticker,
                "trade_id": record.uw_id,
                "ts": record.executed_at.isoformat(),
            },
        )
    elif isinstance(record, PriceTick):
        ts_ms = redis_keys.epoch_ms(record.ts)
        close = _text(record.close)
        updates.offer_hash(
            redis_keys.latest_price_key(record.ticker),
            ts_ms,
            {"close": close, "volume": _text(record.volume), "ts": record.ts.isoformat()},
        )
        updates.add_price_tick(record.ticker, ts_ms, close)
    elif isinstance(record, GexSnapshot):
        fields = {name: _text(getattr(record, name)) for name in GEX_COLUMNS}
        fields.update(price=_text(record.price), ts=record.ts.isoformat())
        updates.offer_hash(redis_keys.latest_gex_key(record.ticker), redis_keys.epoch_ms(record.ts), fields)
    elif isinstance(record, NewsItem):
        updates.offer_hash(
            redis_keys.LATEST_NEWS,
            redis_keys.epoch_ms(record.published_at),
            {
                "headline": record.headline,
                "source": record.source,
                "tickers": dumps(record.tickers).decode(),
                "is_major": "1" if record.is_major else "0",
                "ts": record.published_at.isoformat(),
            },
        )


GEX_COLUMNS = tuple(
    f"{greek}_{basis}" for greek in ("gamma", "delta", "charm", "vanna") for basis in ("oi", "vol", "dir")
)


def flow_alert_json(alert: FlowAlert) -> str:
    """The ``uw:flow_alerts`` entry: canonical JSON (sorted keys, decimals as strings), so equal alerts are equal."""
    return dumps(
        {
            "id": alert.uw_id,
            "rule_name": alert.rule_name,
            "ticker": alert.ticker,
            "option_symbol": alert.option_symbol,
            "expiry": alert.expiry.isoformat(),
            "right": alert.right,
            "strike": _text(alert.strike),
            "underlying_price": _text(alert.underlying_price),
            "price": _text(alert.price),
            "bid": _text(alert.bid),
            "ask": _text(alert.ask),
            "volume": alert.volume,
            "open_interest": alert.open_interest,
            "volume_oi_ratio": _text(alert.volume_oi_ratio),
            "total_size": alert.total_size,
            "total_premium": _text(alert.total_premium),
            "total_ask_side_prem": _text(alert.total_ask_side_prem),
            "total_bid_side_prem": _text(alert.total_bid_side_prem),
            "has_sweep": alert.has_sweep,
            "has_floor": alert.has_floor,
            "has_multileg": alert.has_multileg,
            "all_opening_trades": alert.all_opening_trades,
            "trade_count": alert.trade_count,
            "executed_at": alert.executed_at.isoformat(),
        }
    ).decode()


def _quarantine(rejected: Iterable[_Rejected], *, source: str) -> None:
    stored_at = clock.now()
    rows = {
        item.line_hash: QuarantinedFrame(
            line_hash=item.line_hash,
            channel=item.channel,
            received_at=item.received_at,
            raw=item.raw,
            reason=item.reason,
            source=source,
            stored_at=stored_at,
        )
        for item in rejected
    }
    bulk.insert_records(QuarantinedFrame, [rows[key] for key in sorted(rows)])


def analytics_task() -> Task | None:
    """The next stage's task, looked up by its contract name (the analytics app registers it)."""
    return current_app.tasks.get(NEXT_STAGE_TASK)


# A batch that brought a ticker only option prints triggers its analytics at most this often (market time, shared by
# the workers through Redis): the tape arrives in batches every few milliseconds, while analytics recomputes at most
# once per ANALYTICS_MIN_INTERVAL_SECONDS anyway (or on a new flow alert, which is not tape).  Prices, GEX and alerts
# always trigger it.
TAPE_ANALYTICS_EVERY = timedelta(seconds=1)
ANALYTICS_SENT_KEY = "ingestion:analytics_sent:{ticker}"  # epoch ms of the as_of last handed to analytics


def _enqueue_analytics(result: IngestResult, *, tape_only: AbstractSet[str] = frozenset()) -> None:
    tracked = set(settings.TRACKED_TICKERS)
    # The feed is market-wide (flow alerts, untargeted option trades); only the tickers we trade are analysed.
    tickers = sorted(ticker for ticker in result.as_of if ticker in tracked)
    if not tickers:
        return
    task = analytics_task()
    if task is None:
        logger.warning("%s is not registered; analytics not triggered for %s", NEXT_STAGE_TASK, ", ".join(tickers))
        return
    client = get_redis()
    throttled = [ticker for ticker in tickers if ticker in tape_only]
    last_sent = dict(zip(throttled, client.mget([ANALYTICS_SENT_KEY.format(ticker=t) for t in throttled]), strict=True))
    sent: dict[str, str] = {}
    every_ms = TAPE_ANALYTICS_EVERY // timedelta(milliseconds=1)
    for ticker in tickers:
        as_of_ms = redis_keys.epoch_ms(result.as_of[ticker])
        last = last_sent.get(ticker)
        if last is not None and 0 <= as_of_ms - int(cast(str, last)) < every_ms:
            continue
        sent[ANALYTICS_SENT_KEY.format(ticker=ticker)] = str(as_of_ms)
        enqueue_after_commit(task, ticker, result.as_of[ticker].isoformat())
        result.enqueued.append(ticker)
    if sent:
        with client.pipeline(transaction=False) as pipe:
            for key, value in sent.items():
                pipe.set(key, value, ex=24 * 3600)
            pipe.execute()


@dataclass
class QuarantineRetryResult:
    """What a retry of quarantined lines did: released rows were ingested (or found archived) and deleted."""

    examined: int = 0
    released: int = 0
    still_quarantined: int = 0
    reasons_changed: int = 0
    ingested: IngestResult = field(default_factory=IngestResult)


def quarantine_retry(*, limit: int = 1000) -> QuarantineRetryResult:
    """Run up to ``limit`` quarantined lines (oldest first) through today's parser and normalizers again.

    Lines that now pass are ingested under their original source and their quarantine rows deleted, in one
    transaction; lines that still fail stay, with their reason updated when it changed.  Safe to repeat: a released
    line is gone from the quarantine, and ingesting it again would only count duplicates.
    """
    outcome = QuarantineRetryResult()
    # REST items are quarantined under ``rest:<endpoint>``: they are not socket lines, and the next poll (or backfill)
    # fetches them again once the normalizer accepts them (docs/ingestion_rest.md).
    rows = list(QuarantinedFrame.objects.exclude(channel__startswith="rest:").order_by("id")[:limit])
    outcome.examined = len(rows)
    passing: dict[str, list[QuarantinedFrame]] = defaultdict(list)
    changed: list[QuarantinedFrame] = []
    for row in rows:
        try:
            parsed = parse_line(row.raw)
            normalize_frame(parsed.channel, parsed.payload)
        except NormalizationError as exc:
            if exc.reason != row.reason:
                row.reason = exc.reason
                changed.append(row)
            continue
        passing[row.source].append(row)
    with transaction.atomic():
        for source, group in passing.items():
            for start in range(0, len(group), bulk.CHUNK_ROWS):
                chunk = group[start : start + bulk.CHUNK_ROWS]
                outcome.ingested.merge(ingest_lines(lines=[row.raw for row in chunk], source=source))
        released = [row.id for group in passing.values() for row in group]
        QuarantinedFrame.objects.filter(id__in=released).delete()
        if changed:
            QuarantinedFrame.objects.bulk_update(changed, ["reason"], batch_size=bulk.CHUNK_ROWS)
    outcome.released = len(released)
    outcome.still_quarantined = outcome.examined - outcome.released
    outcome.reasons_changed = len(changed)
    return outcome
