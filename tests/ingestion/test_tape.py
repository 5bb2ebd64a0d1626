"""The option tape's fast path stores exactly what the full normalizer would, and hands it anything unusual."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.ingestion import tape
from apps.ingestion.models import OptionTrade
from apps.ingestion.services import ingest_lines
from apps.ingestion.uw.channels import channel_resolve
from apps.ingestion.uw.normalize import NormalizationError
from tests.ingestion import frames

decimal_text = st.decimals(min_value=-999999, max_value=999999, places=4, allow_nan=False).map(str)
maybe_decimal = st.one_of(st.none(), st.just(""), decimal_text, st.floats(-1e6, 1e6, allow_nan=False))


def as_decimal(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def comparable(row: tuple) -> tuple:
    """A row with decimals and dates in one form, whichever path built it."""
    out = []
    for index, value in enumerate(row):
        if index in (5, 6, 8, 9, 10, 11, 14, 15, 16, 17, 18) and value is not None:
            quantum = Decimal(1).scaleb(-(4 if index == 8 else 8 if index >= 14 else 6))
            out.append(Decimal(str(value)).quantize(quantum))
        elif index == 3:
            out.append(value if isinstance(value, date) else date.fromisoformat(value))
        else:
            out.append(value)
    return tuple(out)


@settings(max_examples=300, deadline=None)
@given(
    price=st.one_of(decimal_text.filter(lambda t: not t.startswith("-")), st.floats(0, 1e5, allow_nan=False)),
    bid=maybe_decimal,
    ask=maybe_decimal,
    delta=maybe_decimal,
    ask_vol=st.integers(0, 5),
    bid_vol=st.integers(0, 5),
    size=st.one_of(st.integers(0, 10_000), st.just("7")),
    executed_at=st.one_of(st.just(frames.RECEIVED_MS - 500), st.just("2026-11-20T14:30:59.500Z")),
    exchange=st.sampled_from(["XPHO", "", "TAB\tX", None]),
)
def test_the_fast_path_builds_the_normalizers_row_or_defers_to_it(
    price, bid, ask, delta, ask_vol, bid_vol, size, executed_at, exchange
):
    payload = frames.option_trade(
        price=price,
        nbbo_bid=bid,
        nbbo_ask=ask,
        delta=delta,
        ask_vol=ask_vol,
        bid_vol=bid_vol,
        size=size,
        executed_at=executed_at,
        exchange=exchange,
    )
    frame = tape.TapeFrame(
        line="", received_ms=frames.RECEIVED_MS, channel=channel_resolve("option_trades:SPY"), payload=payload
    )
    try:
        slow = tape._row_slow(frame)
    except NormalizationError:
        with pytest.raises((tape._SlowPath, NormalizationError)):
            tape._row_fast(frame)
        return
    try:
        fast = tape._row_fast(frame)
    except tape._SlowPath:
        return  # the normalizer decides: nothing the fast path could get wrong
    assert comparable(fast) == comparable(slow)


@pytest.mark.django_db
def test_a_trade_stored_through_the_tape_reads_back_like_the_normalizers_values():
    payload = frames.option_trade(id="t-1", price="3.9100001", delta="0.529015555", exchange="XPHO")
    ingest_lines(lines=[frames.line("option_trades:SPY", payload)], source="test")
    trade = OptionTrade.objects.get(uw_id="t-1")
    assert trade.price == Decimal("3.910000")
    assert trade.delta == Decimal("0.52901556")
    assert trade.strike == Decimal("600")
    assert trade.expiry == date(2026, 11, 20)
    assert trade.uw_created_at is not None


@pytest.mark.django_db
def test_free_text_with_tabs_and_backslashes_survives_the_copy():
    payload = frames.option_trade(id="weird\\id\twith tab", exchange="X\\Y", tags=["a\\b", 'q"uote'])
    result = ingest_lines(lines=[frames.line("option_trades:SPY", payload)], source="test")
    assert result.accepted == 1
    trade = OptionTrade.objects.get()
    assert trade.uw_id == "weird\\id\twith tab"
    assert trade.exchange == "X\\Y"
    assert trade.tags == ["a\\b", 'q"uote']


def test_a_well_formed_trade_takes_the_fast_path_and_an_iso_time_does_not():
    channel = channel_resolve("option_trades:SPY")
    plain = tape.TapeFrame(line="", received_ms=frames.RECEIVED_MS, channel=channel, payload=frames.option_trade())
    assert comparable(tape._row_fast(plain)) == comparable(tape._row_slow(plain))
    iso = frames.option_trade(executed_at="2026-11-20T14:30:59.500Z")
    with pytest.raises(tape._SlowPath):
        tape._row_fast(tape.TapeFrame(line="", received_ms=frames.RECEIVED_MS, channel=channel, payload=iso))


@pytest.mark.django_db
def test_tape_only_batches_trigger_analytics_at_most_once_a_second_per_ticker(
    monkeypatch, django_capture_on_commit_callbacks
):
    from apps.ingestion import services
    from tests.ingestion.test_ingest_lines import RecordingTask

    task = RecordingTask()
    monkeypatch.setattr(services, "analytics_task", lambda: task)

    def trades(n: int, at_ms: int) -> list[str]:
        return [frames.line("option_trades:SPY", frames.option_trade(id=f"a{at_ms}-{i}"), at_ms) for i in range(n)]

    with django_capture_on_commit_callbacks(execute=True):
        ingest_lines(lines=trades(2, frames.RECEIVED_MS), source="uw_ws")
        ingest_lines(lines=trades(2, frames.RECEIVED_MS + 400), source="uw_ws")  # tape only, 0.4 s later: skipped
        price = frames.line("price:SPY", frames.price(), frames.RECEIVED_MS + 500)
        ingest_lines(lines=[price], source="uw_ws")  # a price always triggers it
        ingest_lines(lines=trades(1, frames.RECEIVED_MS + 1600), source="uw_ws")  # over a second: triggers
    assert [as_of for _, as_of in task.calls] == [
        "2026-11-20T14:31:00+00:00",
        "2026-11-20T14:31:00.500000+00:00",
        "2026-11-20T14:31:01.600000+00:00",
    ]
