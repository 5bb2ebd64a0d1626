"""Ingestion over REST: poll an Unusual Whales endpoint into its table, and backfill flow alerts the socket missed.

The client (``apps.ingestion.uw.rest``) archives every response before these services see it; here the items are
normalized, written with multi-row ``INSERT ... ON CONFLICT`` on each table's natural key (so polling the same page
twice adds nothing), quarantined when unreadable, and published to the same Redis "latest" keys the socket feeds.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

import orjson
from django.db import connection, models, transaction
from django.db.models import Max

from apps.core import calendar, clock
from apps.ingestion import bulk, drift, redis_keys
from apps.ingestion.feeds import UW_REST
from apps.ingestion.models import (
    Candle,
    FlowAlert,
    GexSnapshot,
    GreekExposure,
    MarketTide,
    NetPremTick,
    NewsItem,
    OptionContract,
    QuarantinedFrame,
    RestPayload,
    StockState,
)
from apps.ingestion.services import flow_alert_json, latest_collect
from apps.ingestion.uw.lines import digest, storable_text
from apps.ingestion.uw.normalize import parse_time
from apps.ingestion.uw.rest import ENDPOINTS, FLOW_ALERTS_MAX_LIMIT, RestResponse, UWRestClient, rest_client
from apps.ingestion.uw.rest_normalize import NormalizedPage, Rejection, normalize_page, stream_name
from apps.ops import metrics

logger = logging.getLogger(__name__)

QUARANTINE_SOURCE = "uw_rest"
# Backfill asks for a little before the newest stored alert: REST times carry microseconds where the socket's carry
# milliseconds, and alerts sharing the newest stored instant must not fall between two bounds.  Overlap is free:
# alerts already stored are skipped.
BACKFILL_OVERLAP = timedelta(seconds=1)
# 50 pages of 200 = 10,000 alerts, a whole busy session; beyond that the run stops and says where the gap remains.
BACKFILL_MAX_PAGES = 50

NATURAL_KEYS: dict[type[models.Model], Callable[[Any], Any]] = {
    FlowAlert: lambda row: row.uw_id,
    GexSnapshot: lambda row: (row.ticker, row.ts),
    GreekExposure: lambda row: (row.ticker, row.date),
    StockState: lambda row: (row.ticker, row.tape_time),
    Candle: lambda row: (row.ticker, row.interval, row.start_time),
    MarketTide: lambda row: row.ts,
    NetPremTick: lambda row: (row.ticker, row.tape_time),
    NewsItem: lambda row: row.news_key,
    OptionContract: lambda row: row.option_symbol,
}


@dataclass
class RestPollResult:
    """What one poll did: the archived payload, the items it held, the rows offered, the items quarantined."""

    endpoint: str
    ticker: str | None
    payload_id: int
    status: int
    items: int = 0
    rows: int = 0  # normalized rows offered to the table (rows already stored are left as they are)
    new_flow_alerts: int = 0
    quarantined: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "ticker": self.ticker,
            "payload_id": self.payload_id,
            "status": self.status,
            "items": self.items,
            "rows": self.rows,
            "new_flow_alerts": self.new_flow_alerts,
            "quarantined": self.quarantined,
        }


@dataclass
class BackfillResult:
    """What a flow-alert backfill did; ``complete`` is false only when ``max_pages`` ran out before the gap closed."""

    newer_than: datetime
    pages: int = 0
    fetched: int = 0
    inserted: int = 0  # alerts not stored before (neither by UW id nor as the socket's copy)
    already_stored: int = 0
    quarantined: int = 0
    complete: bool = False
    oldest_fetched: datetime | None = None
    payload_ids: list[int] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "newer_than": self.newer_than.isoformat(),
            "pages": self.pages,
            "fetched": self.fetched,
            "inserted": self.inserted,
            "already_stored": self.already_stored,
            "quarantined": self.quarantined,
            "complete": self.complete,
            "oldest_fetched": self.oldest_fetched.isoformat() if self.oldest_fetched else None,
        }


def rest_poll(*, endpoint: str, ticker: str | None, client: UWRestClient | None = None) -> RestPollResult:
    """Fetch one page of ``endpoint`` (for ``ticker`` where it is per ticker) and store it.

    Guarantees: the response is archived in ``uw_rest_payloads`` whatever happens next (the client does that, outside
    any transaction); the rows, the quarantine, the payload's ``rows`` count and the Redis keys are written in one
    transaction, so a failure leaves none of them; rows already stored are not duplicated (``OptionContract`` is
    updated in place, never to an older snapshot); raises ``UWRestError`` when no usable answer came.
    """
    spec = ENDPOINTS.get(endpoint)
    if spec is None:
        raise ValueError(f"unknown UW REST endpoint {endpoint!r}; known: {', '.join(sorted(ENDPOINTS))}")
    if spec.per_ticker and not ticker:
        raise ValueError(f"{endpoint} is per ticker: give a ticker")
    if ticker and not spec.per_ticker and endpoint != "flow_alerts":
        raise ValueError(f"{endpoint} is market-wide: it takes no ticker")
    client = client or rest_client()
    if endpoint == "flow_alerts":
        response = client.flow_alerts(ticker=ticker)
    else:
        response = client.get(endpoint, ticker=ticker)
    result = RestPollResult(
        endpoint=endpoint,
        ticker=ticker,
        payload_id=response.payload_id,
        status=response.status,
        items=len(response.items),
    )
    page = normalize_page(endpoint=endpoint, items=response.items, ticker=ticker, fetched_at=response.requested_at)
    with transaction.atomic():
        stored = _store([(response, page)])
    result.rows = stored.rows
    result.new_flow_alerts = stored.new_flow_alerts
    result.quarantined = stored.quarantined
    metrics.frames_in(source="uw_rest", channel=endpoint, n=result.items)
    metrics.frames_quarantined(source="uw_rest", channel=endpoint, n=result.quarantined)
    redis_keys.feed_frame_stamp(UW_REST)
    if result.quarantined:
        logger.warning(
            "UW REST %s%s: quarantined %d of %d items",
            endpoint,
            f" {ticker}" if ticker else "",
            result.quarantined,
            result.items,
        )
    return result


def newest_flow_alert_time() -> datetime | None:
    return FlowAlert.objects.aggregate(newest=Max("executed_at"))["newest"]


def flow_alerts_backfill(
    *,
    since: datetime | None = None,
    ticker: str | None = None,
    max_pages: int = BACKFILL_MAX_PAGES,
    client: UWRestClient | None = None,
) -> BackfillResult:
    """Fetch the flow alerts newer than the newest stored one (or ``since``) and insert those missing.

    Pages newest-first with ``newer_than``/``older_than`` and ``limit=200`` until a short page (or one reaching the
    lower bound) shows the gap is covered, then stores every page in one transaction: storing the newest page first
    and failing on an older one would move "the newest stored alert" past a hole the next run could not see.
    Alerts already stored -- by UW id, or (for items without an id) as the socket's copy with the same contract,
    time and size -- are not inserted again.  With no alert stored and no ``since``, the gap starts at midnight New
    York today.  Safe to repeat: a second run finds nothing missing.
    """
    client = client or rest_client()
    lower = since or newest_flow_alert_time() or _start_of_market_day()
    newer_than_ms = redis_keys.epoch_ms(lower - BACKFILL_OVERLAP)
    result = BackfillResult(newer_than=lower - BACKFILL_OVERLAP)
    fetched: list[tuple[RestResponse, NormalizedPage]] = []
    older_than_ms: int | None = None
    for _ in range(max_pages):
        response = client.flow_alerts(
            ticker=ticker, newer_than=newer_than_ms, older_than=older_than_ms, limit=FLOW_ALERTS_MAX_LIMIT
        )
        result.pages += 1
        result.fetched += len(response.items)
        result.payload_ids.append(response.payload_id)
        fetched.append(
            (
                response,
                normalize_page(
                    endpoint="flow_alerts", items=response.items, ticker=None, fetched_at=response.requested_at
                ),
            )
        )
        oldest_ms = _oldest_created_ms(response.items)
        if oldest_ms is not None:
            moment = parse_time(oldest_ms)
            if result.oldest_fetched is None or moment < result.oldest_fetched:
                result.oldest_fetched = moment
        if len(response.items) < FLOW_ALERTS_MAX_LIMIT or oldest_ms is None or oldest_ms <= newer_than_ms:
            result.complete = True
            break
        # The next page ends just after this page's oldest instant: alerts sharing that millisecond may not all have
        # fit on this page, and asking for them again costs nothing (duplicates are skipped).
        next_older = oldest_ms + 1
        if older_than_ms is not None and next_older >= older_than_ms:
            logger.warning(
                "flow alert backfill: more than %d alerts at %s; cannot page past them",
                FLOW_ALERTS_MAX_LIMIT,
                parse_time(oldest_ms).isoformat(),
            )
            break
        older_than_ms = next_older
    with transaction.atomic():
        stored = _store(fetched)
    result.inserted = stored.new_flow_alerts
    result.quarantined = stored.quarantined
    result.already_stored = result.fetched - result.inserted - result.quarantined
    if not result.complete:
        logger.warning(
            "flow alert backfill stopped after %d pages; alerts between %s and %s may still be missing: "
            "run flow_alerts_backfill(since=...) again with that start",
            result.pages,
            result.newer_than.isoformat(),
            result.oldest_fetched.isoformat() if result.oldest_fetched else "?",
        )
    return result


def _start_of_market_day() -> datetime:
    now = clock.now()
    day = calendar.market_day(now)
    return datetime.combine(day, time(0, 0), tzinfo=calendar.NEW_YORK).astimezone(now.tzinfo)


def _oldest_created_ms(items: Sequence[Any]) -> int | None:
    oldest: int | None = None
    for item in items:
        if not isinstance(item, dict):
            continue
        value = item.get("created_at") or item.get("executed_at")
        try:
            moment = parse_time(value)
        except ValueError:
            continue
        millis = redis_keys.epoch_ms(moment)
        if oldest is None or millis < oldest:
            oldest = millis
    return oldest


@dataclass
class _Stored:
    rows: int = 0
    new_flow_alerts: int = 0
    quarantined: int = 0


def _store(pages: Sequence[tuple[RestResponse, NormalizedPage]]) -> _Stored:
    """Write the pages' rows, quarantine and row counts, and publish to Redis (the caller holds the transaction)."""
    stored = _Stored()
    by_model: dict[type[models.Model], dict[Any, models.Model]] = defaultdict(dict)
    derived_ids: set[str] = set()
    rejections: list[tuple[RestResponse, Rejection]] = []
    for response, page in pages:
        _observe_drift(response.endpoint, response.items)
        derived_ids |= page.derived_ids
        for record in page.records:
            # Later pages repeat the boundary of earlier ones: one row per natural key.
            by_model[type(record)].setdefault(NATURAL_KEYS[type(record)](record), record)
        rejections.extend((response, rejection) for rejection in page.rejections)
        RestPayload.objects.filter(pk=response.payload_id).update(rows=len(page.records))
        stored.rows += len(page.records)

    updates = redis_keys.LatestUpdates()
    alerts = by_model.pop(FlowAlert, {})
    if alerts:
        fresh = _missing_flow_alerts([a for a in alerts.values() if isinstance(a, FlowAlert)], derived_ids)
        stored.new_flow_alerts = len(fresh)
        for alert in fresh:
            updates.add_flow_alert(redis_keys.epoch_ms(alert.executed_at), flow_alert_json(alert))
        bulk.insert_records(FlowAlert, sorted(fresh, key=NATURAL_KEYS[FlowAlert]))
    contracts = by_model.pop(OptionContract, {})
    if contracts:
        _upsert_option_contracts([contracts[key] for key in sorted(contracts)])
    for model, records in by_model.items():
        rows = [records[key] for key in sorted(records)]
        for record in rows:
            if isinstance(record, GexSnapshot | NewsItem):
                latest_collect(record, updates)
        # Key order: overlapping writers queue on the same rows instead of deadlocking.
        bulk.insert_records(model, rows)
    stored.quarantined = _quarantine(rejections)
    redis_keys.latest_publish(updates=updates)
    return stored


def _missing_flow_alerts(alerts: list[FlowAlert], derived_ids: set[str]) -> list[FlowAlert]:
    """The alerts not stored yet: by UW id, and for id-less REST items also not as the socket's copy."""
    known = set(FlowAlert.objects.filter(uw_id__in=[a.uw_id for a in alerts]).values_list("uw_id", flat=True))
    unknown = [a for a in alerts if a.uw_id not in known]
    derived = [a for a in unknown if a.uw_id in derived_ids]
    if not derived:
        return unknown
    # The socket stored this alert under UW's id; the REST copy without an id is the same alert when the contract,
    # the time and the size match.
    copies = set(
        FlowAlert.objects.filter(
            option_symbol__in={a.option_symbol for a in derived}, executed_at__in={a.executed_at for a in derived}
        ).values_list("option_symbol", "executed_at", "total_size")
    )
    return [
        a for a in unknown if a.uw_id not in derived_ids or (a.option_symbol, a.executed_at, a.total_size) not in copies
    ]


def _upsert_option_contracts(records: Sequence[models.Model]) -> None:
    """``INSERT ... ON CONFLICT (option_symbol) DO UPDATE``: the newest snapshot per contract, never an older one."""
    fields = [f for f in OptionContract._meta.concrete_fields if not (f.primary_key and f.auto_created)]
    ops = connection.ops
    quote = ops.quote_name
    table = quote(OptionContract._meta.db_table)

    def adapt(field_: models.Field, value: Any) -> Any:
        if isinstance(field_, models.DateTimeField):
            return ops.adapt_datetimefield_value(value)
        if isinstance(field_, models.DateField):
            return ops.adapt_datefield_value(value)
        return value

    columns = ", ".join(quote(f.column) for f in fields)
    updates = ", ".join(f"{quote(f.column)} = EXCLUDED.{quote(f.column)}" for f in fields if f.name != "option_symbol")
    placeholder = "(" + ", ".join(["%s"] * len(fields)) + ")"
    with connection.cursor() as cursor:
        for start in range(0, len(records), bulk.CHUNK_ROWS):
            chunk = records[start : start + bulk.CHUNK_ROWS]
            # Only quoted identifiers and placeholders are formatted in; every value is a bound parameter.  The WHERE
            # keeps a slow poll that finishes late from replacing a newer snapshot.
            sql = (
                f"INSERT INTO {table} ({columns}) VALUES {', '.join([placeholder] * len(chunk))} "  # noqa: S608
                f"ON CONFLICT ({quote('option_symbol')}) DO UPDATE SET {updates} "
                f"WHERE {table}.{quote('as_of')} <= EXCLUDED.{quote('as_of')}"
            )
            cursor.execute(sql, [adapt(f, getattr(record, f.attname)) for record in chunk for f in fields])


def _quarantine(rejections: Sequence[tuple[RestResponse, Rejection]]) -> int:
    """Store each unreadable item once, as a session-style line under channel ``rest:<endpoint>``."""
    rows: dict[str, QuarantinedFrame] = {}
    stored_at = clock.now()
    for response, rejection in rejections:
        channel = stream_name(response.endpoint)
        line = orjson.dumps(
            {"received_at": redis_keys.epoch_ms(response.requested_at), "frame": [channel, rejection.item]},
            option=orjson.OPT_SORT_KEYS,
            default=str,
        ).decode()
        raw = storable_text(line)
        line_hash = digest(raw.encode())
        rows[line_hash] = QuarantinedFrame(
            line_hash=line_hash,
            channel=channel[:64],
            received_at=response.requested_at,
            raw=raw,
            reason=rejection.reason,
            source=QUARANTINE_SOURCE,
            stored_at=stored_at,
        )
    bulk.insert_records(QuarantinedFrame, [rows[key] for key in sorted(rows)])
    return len(rejections)


def _observe_drift(endpoint: str, items: list[Any]) -> None:
    """Hand every page of items to the drift detector as stream ``rest:<endpoint>`` (in the caller's transaction,
    which drift requires: its cache adopts what it wrote only once that commits)."""
    drift.observe(drift.stream_for_endpoint(endpoint), [item for item in items if isinstance(item, dict)])
