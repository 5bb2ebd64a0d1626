"""Interactive Brokers ticks: folded per key into ib_quotes rows and the latest:ib:* hashes, which never move back."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from celery import current_app

from apps.core import clock
from apps.execution.brokers.paper import PaperBroker
from apps.ingestion.ib_market import ib_ticks_ingest, latest_ib_quote
from apps.ingestion.models import IBQuote
from apps.ingestion.tasks import ib_ticks

pytestmark = pytest.mark.django_db

OPTION = "SPY250610C00600000"
CON_ID = 765432109
T0 = datetime(2025, 6, 10, 14, 30, tzinfo=UTC)


def tick(key: str, field: str, value: str, at: datetime, *, sec_type: str = "OPT", con_id: int | None = CON_ID):
    return {"key": key, "sec_type": sec_type, "con_id": con_id, "field": field, "value": value, "at": at.isoformat()}


def stock(field: str, value: str, at: datetime, key: str = "SPY"):
    return tick(key, field, value, at, sec_type="STK", con_id=756733)


@pytest.fixture
def ingest(django_capture_on_commit_callbacks):
    """The service with its after-commit work (the Redis hashes) run, as a real commit would."""

    def run(ticks: list[dict]) -> int:
        with django_capture_on_commit_callbacks(execute=True):
            return ib_ticks_ingest(ticks=ticks)

    return run


@pytest.fixture(autouse=True)
def _clock():
    clock.set_simulated(T0 + timedelta(seconds=5))


def first_batch() -> list[dict]:
    return [
        tick(OPTION, "bid", "1.20", T0),
        tick(OPTION, "ask", "1.30", T0),
        tick(OPTION, "bid", "1.25", T0 + timedelta(milliseconds=300)),  # newer: wins
        tick(OPTION, "last", "1.27", T0 + timedelta(milliseconds=200)),
        tick(OPTION, "bid_size", "12", T0 + timedelta(milliseconds=300)),
        stock("last", "600.12", T0 + timedelta(milliseconds=100)),
        stock("bid", "600.11", T0),
        stock("ask", "600.13", T0 + timedelta(milliseconds=50)),
    ]


def test_a_batch_is_one_row_per_key_with_the_newest_value_of_each_field(ingest):
    assert ingest(first_batch()) == 2

    option = IBQuote.objects.get(key=OPTION)
    assert (option.sec_type, option.con_id) == ("OPT", CON_ID)
    assert (option.bid, option.ask, option.last, option.bid_size) == (
        Decimal("1.25"),
        Decimal("1.30"),
        Decimal("1.27"),
        12,
    )
    assert option.ask_size is None and option.delta is None
    assert option.quoted_at == T0 + timedelta(milliseconds=300)
    assert option.received_at == T0 + timedelta(seconds=5)
    spy = IBQuote.objects.get(key="SPY")
    assert (spy.sec_type, spy.bid, spy.ask, spy.last) == (
        "STK",
        Decimal("600.11"),
        Decimal("600.13"),
        Decimal("600.12"),
    )
    assert spy.quoted_at == T0 + timedelta(milliseconds=100)


def test_a_batch_lands_in_the_latest_hashes_as_strings_with_an_iso_time(ingest):
    ingest(first_batch())

    assert latest_ib_quote(OPTION) == {
        "bid": "1.25",
        "ask": "1.30",
        "last": "1.27",
        "bid_size": "12",
        "con_id": str(CON_ID),
        "ts": "2025-06-10T14:30:00.300000+00:00",
        "ts_ms": str(int((T0 + timedelta(milliseconds=300)).timestamp() * 1000)),
    }
    spy = latest_ib_quote("SPY")
    assert spy is not None
    assert (spy["last"], spy["bid"], spy["ask"], spy["ts"]) == (
        "600.12",
        "600.11",
        "600.13",
        "2025-06-10T14:30:00.100000+00:00",
    )
    assert latest_ib_quote("QQQ") is None
    assert latest_ib_quote("QQQ250610P00500000") is None


def test_a_later_batch_of_other_fields_keeps_the_earlier_ones_in_the_row_and_the_hash(ingest):
    ingest(first_batch())
    later = T0 + timedelta(seconds=1)
    ingest(
        [
            tick(OPTION, "implied_vol", "0.1834", later),
            tick(OPTION, "delta", "0.52", later),
            tick(OPTION, "gamma", "0.0412", later),
            tick(OPTION, "und_price", "600.15", later),
            tick(OPTION, "ask", "1.29", later),
        ]
    )

    newest = IBQuote.objects.filter(key=OPTION).order_by("-quoted_at").first()
    assert newest is not None and IBQuote.objects.filter(key=OPTION).count() == 2
    assert (newest.bid, newest.ask, newest.last, newest.bid_size) == (
        Decimal("1.25"),
        Decimal("1.29"),
        Decimal("1.27"),
        12,
    )
    assert (newest.implied_vol, newest.delta, newest.gamma, newest.underlying_price) == (
        Decimal("0.1834"),
        Decimal("0.52"),
        Decimal("0.0412"),
        Decimal("600.15"),
    )
    data = latest_ib_quote(OPTION)
    assert data is not None
    assert (data["bid"], data["ask"], data["last"], data["implied_vol"], data["delta"], data["gamma"]) == (
        "1.25",
        "1.29",
        "1.27",
        "0.1834",
        "0.52",
        "0.0412",
    )
    assert data["underlying_price"] == "600.15"
    assert data["ts"] == later.isoformat()


def test_a_late_older_batch_is_stored_but_does_not_overwrite_the_hash(ingest):
    ingest(first_batch())
    newer = T0 + timedelta(seconds=2)
    ingest([tick(OPTION, "bid", "1.40", newer), tick(OPTION, "ask", "1.45", newer)])
    late = T0 + timedelta(seconds=1)

    assert ingest([tick(OPTION, "bid", "1.10", late), tick(OPTION, "delta", "0.5", late)]) == 1

    data = latest_ib_quote(OPTION)
    assert data is not None
    assert (data["bid"], data["ask"], data["ts"]) == ("1.40", "1.45", newer.isoformat())
    assert "delta" not in data
    # The late row holds its own values only: nothing from the newer hash leaks into an older row.
    row = IBQuote.objects.get(key=OPTION, quoted_at=late)
    assert (row.bid, row.delta, row.ask, row.last) == (Decimal("1.10"), Decimal("0.5"), None, None)


def test_the_same_batch_twice_adds_rows_but_leaves_the_hash_as_it_was(ingest):
    ingest(first_batch())
    before = latest_ib_quote(OPTION)

    assert ingest(first_batch()) == 2

    assert IBQuote.objects.filter(key=OPTION).count() == 2
    assert latest_ib_quote(OPTION) == before
    assert set(IBQuote.objects.filter(key=OPTION).values_list("bid", "ask", "last")) == {
        (Decimal("1.25"), Decimal("1.30"), Decimal("1.27"))
    }


def test_bad_ticks_are_skipped_and_counted_in_one_warning(ingest, caplog):
    good = T0 + timedelta(seconds=1)
    bad = [
        tick("SPY250610X00600000", "bid", "1.2", good),  # not an OCC symbol
        tick("spy 2506", "bid", "1.2", good, sec_type="STK"),  # not a ticker
        tick(OPTION, "bid", "1.2", good, sec_type="FUT"),
        tick(OPTION, "vwap", "1.2", good),
        tick(OPTION, "bid", "abc", good),
        tick(OPTION, "bid", "-0.05", good),
        tick(OPTION, "bid_size", "1.5", good),
        tick(OPTION, "delta", "1.2", good),
        tick(OPTION, "bid", "1e40", good),
        tick(OPTION, "bid", "NaN", good),
        {**tick(OPTION, "bid", "1.2", good), "value": 1.2},  # a float, not a decimal string
        {**tick(OPTION, "bid", "1.2", good), "at": "2025-06-10T14:30:01"},  # no offset
        tick(OPTION, "bid", "1.2", good, con_id=-5),
        stock("delta", "0.5", good),
        "not a tick",
    ]
    with caplog.at_level(logging.WARNING, logger="apps.ingestion.ib_market"):
        written = ingest([*bad, tick(OPTION, "bid", "1.21", good), stock("last", "600.5", good)])

    assert written == 2
    assert IBQuote.objects.get(key=OPTION).bid == Decimal("1.21")
    assert IBQuote.objects.get(key="SPY").last == Decimal("600.5")
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert message.startswith(f"IB ticks: skipped {len(bad)} of {len(bad) + 2}:")
    assert "'bad_value': 7" in message and "'bad_key': 2" in message


def test_ibs_no_value_numbers_clear_a_field_but_a_delta_of_minus_one_is_a_delta(ingest):
    ingest(first_batch())
    later = T0 + timedelta(seconds=1)
    ingest(
        [
            tick(OPTION, "bid", "-1", later),
            tick(OPTION, "ask", "", later),
            tick(OPTION, "delta", "-1", later),
            tick(OPTION, "gamma", "-2", later),
            tick(OPTION, "implied_vol", "-1.0", later),
        ]
    )

    row = IBQuote.objects.filter(key=OPTION).order_by("-quoted_at").first()
    assert row is not None
    assert (row.bid, row.ask, row.last, row.delta, row.gamma, row.implied_vol) == (
        None,
        None,
        Decimal("1.27"),
        Decimal("-1"),
        None,
        None,
    )
    data = latest_ib_quote(OPTION)
    assert data is not None
    assert (data["bid"], data["ask"], data["last"], data["delta"], data["gamma"]) == ("", "", "1.27", "-1", "")


def test_prices_are_rounded_to_the_column_and_written_plainly(ingest):
    ingest([tick(OPTION, "bid", "1.2345675", T0), tick(OPTION, "ask", "2E+0", T0), tick(OPTION, "last", "-0", T0)])

    row = IBQuote.objects.get(key=OPTION)
    assert (row.bid, row.ask, row.last) == (Decimal("1.234568"), Decimal("2"), Decimal("0"))
    data = latest_ib_quote(OPTION)
    assert data is not None
    assert (data["bid"], data["ask"], data["last"]) == ("1.234568", "2", "0")


def test_the_paper_brokers_quote_reader_reads_the_ib_hash(ingest, redis_store):
    ingest(first_batch())
    data = latest_ib_quote(OPTION)
    assert data is not None
    # The paper broker reads latest:uw:quote:{OCC}; the same fields under that name must give the same quote.
    redis_store.hset(f"latest:uw:quote:{OPTION}", mapping=data)

    quote = PaperBroker()._quote_from_redis(OPTION)

    assert quote is not None
    assert (quote.bid, quote.ask, quote.last) == (Decimal("1.25"), Decimal("1.30"), Decimal("1.27"))
    assert quote.ts == T0 + timedelta(milliseconds=300)
    assert quote.ts.utcoffset() == timedelta(0)


def test_a_late_batch_does_not_rewind_the_stock_price_hash(ingest):
    ingest([stock("last", "601", T0 + timedelta(seconds=3))])
    ingest([stock("last", "599", T0 + timedelta(seconds=1)), stock("bid", "598.9", T0 + timedelta(seconds=1))])

    data = latest_ib_quote("SPY")
    assert data is not None
    assert (data["last"], data["ts"]) == ("601", (T0 + timedelta(seconds=3)).isoformat())
    assert "bid" not in data


def test_the_task_is_registered_under_its_contract_name_routed_to_ingestion_and_stores_the_batch(
    django_capture_on_commit_callbacks,
):
    registered = current_app.tasks["ingestion.ib_ticks"]
    assert registered.acks_late is True
    assert current_app.amqp.router.route({}, "ingestion.ib_ticks")["queue"].name == "ingestion"

    with django_capture_on_commit_callbacks(execute=True):
        written = ib_ticks.apply(args=(first_batch(),)).get()

    assert written == 2
    data = latest_ib_quote(OPTION)
    assert data is not None and data["bid"] == "1.25"


def test_an_empty_or_entirely_bad_batch_writes_nothing(ingest):
    assert ingest([]) == 0
    assert ingest([tick(OPTION, "bid", "x", T0)]) == 0
    assert not IBQuote.objects.exists()
