"""The nightly export: one New York day of trade_logs and trades as CSV, exact decimals, replaced atomically."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from apps.core import clock
from apps.execution import trade_log_export as export_module
from apps.execution.models import Order, Trade, TradeLog
from apps.execution.trade_log_export import TRADE_COLUMNS, TRADE_LOG_COLUMNS, trade_log_export
from apps.risk.models import RiskDecision
from apps.risk.services import limits_active
from apps.signals.models import Signal
from tests.risk.factories import SESSION_DAY, SignalFactory, ny

pytestmark = pytest.mark.django_db

DAY = SESSION_DAY  # Tuesday 2025-06-10
NEXT_DAY = date(2025, 6, 11)
PREVIOUS_DAY = date(2025, 6, 9)


def order_for(signal: Signal, *, leg: str = "entry", side: str = "buy", quantity: int = 2, at: datetime) -> Order:
    decision, _ = RiskDecision.objects.get_or_create(
        signal=signal,
        defaults={
            "limits": limits_active(),
            "approved": True,
            "quantity": quantity,
            "limit_price": Decimal("1.20"),
            "reason": "approved by a test",
            "decided_at": at,
        },
    )
    return Order.objects.create(
        client_order_id=f"{signal.signal_id}-{leg}",
        decision=decision,
        signal=signal,
        leg=leg,
        option_symbol=signal.option_symbol,
        side=side,
        quantity=quantity,
        limit_price=Decimal("1.20"),
        broker="paper",
        created_at=at,
    )


def log(order: Order, from_status: str, to_status: str, at: datetime, *, applied: bool = True, detail: str = ""):
    return TradeLog.objects.create(
        order=order, from_status=from_status, to_status=to_status, at=at, applied=applied, detail=detail
    )


def trade_for(signal: Signal, *, entry_at: datetime, exit_at: datetime | None = None, **fields) -> Trade:
    closed = exit_at is not None
    values = {
        "strategy": signal.strategy,
        "ticker": signal.ticker,
        "option_symbol": signal.option_symbol,
        "quantity": 2,
        "entry_price": Decimal("1.234567"),
        "entry_at": entry_at,
        "exit_at": exit_at,
        "exit_price": Decimal("1.5") if closed else None,
        "exit_reason": "target" if closed else "",
        "realized_pnl": Decimal("-12.34") if closed else None,
        "fees": Decimal("2.6"),
        "status": Trade.Status.CLOSED if closed else Trade.Status.OPEN,
    }
    values.update(fields)
    return Trade.objects.create(signal=signal, **values)


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def books() -> dict[str, Order]:
    """Order logs around DAY's New York midnights (which are 04:00 UTC), and trades entered or exited on each side."""
    first = SignalFactory(signal_id="sig-day-entry")
    entry = order_for(first, at=ny(10, 0))
    # 23:50 New York the evening before: already DAY in UTC, not in New York.
    log(entry, "", "pending", ny(23, 50, day=PREVIOUS_DAY), detail="the evening before")
    log(entry, "pending", "submitted", ny(10, 0, 1))
    log(entry, "submitted", "filled", ny(10, 0, 2), detail="filled 2 @ 1.21, 'quoted', with a comma")
    log(entry, "filled", "cancelled", ny(10, 0, 2), applied=False, detail="refused: filled is terminal")
    exit_order = order_for(first, leg="exit", side="sell", at=ny(15, 0))
    # 23:30 New York: still DAY there, the next day in UTC.
    log(exit_order, "pending", "submitted", ny(23, 30))
    log(exit_order, "submitted", "filled", ny(0, 10, day=NEXT_DAY), detail="the next day")

    trade_for(first, entry_at=ny(10, 0, 2), exit_at=ny(15, 0, 5))
    trade_for(SignalFactory(signal_id="sig-overnight"), entry_at=ny(15, 0, day=PREVIOUS_DAY), exit_at=ny(9, 45))
    trade_for(SignalFactory(signal_id="sig-open"), entry_at=ny(11, 0), realized_pnl=None)
    trade_for(
        SignalFactory(signal_id="sig-yesterday"),
        entry_at=ny(10, 0, day=PREVIOUS_DAY),
        exit_at=ny(11, 0, day=PREVIOUS_DAY),
    )
    trade_for(SignalFactory(signal_id="sig-tomorrow"), entry_at=ny(10, 0, day=NEXT_DAY))
    return {"entry": entry, "exit": exit_order}


def test_the_trade_log_holds_only_the_new_york_days_rows_in_order(books, tmp_path):
    path = trade_log_export(day=DAY, out_dir=tmp_path)

    assert path == tmp_path / "trade_log-2025-06-10.csv"
    assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(TRADE_LOG_COLUMNS)
    rows = read(path)
    assert [(row["from_status"], row["to_status"], row["applied"]) for row in rows] == [
        ("pending", "submitted", "true"),
        ("submitted", "filled", "true"),
        ("filled", "cancelled", "false"),
        ("pending", "submitted", "true"),
    ]
    assert rows[0] == {
        "at": "2025-06-10T14:00:01+00:00",
        "client_order_id": "sig-day-entry-entry",
        "signal_id": "sig-day-entry",
        "leg": "entry",
        "side": "buy",
        "quantity": "2",
        "option_symbol": books["entry"].option_symbol,
        "from_status": "pending",
        "to_status": "submitted",
        "applied": "true",
        "detail": "",
    }
    assert rows[1]["detail"] == "filled 2 @ 1.21, 'quoted', with a comma"
    assert (rows[3]["at"], rows[3]["leg"], rows[3]["side"]) == ("2025-06-11T03:30:00+00:00", "exit", "sell")


def test_the_trades_file_holds_the_trades_entered_or_exited_that_day_with_exact_decimals(books, tmp_path):
    trade_log_export(day=DAY, out_dir=tmp_path)

    path = tmp_path / "trades-2025-06-10.csv"
    assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(TRADE_COLUMNS)
    rows = read(path)
    assert [row["signal_id"] for row in rows] == ["sig-overnight", "sig-day-entry", "sig-open"]
    closed = rows[1]
    assert closed["id"] == str(Trade.objects.get(signal__signal_id="sig-day-entry").pk)
    assert (closed["strategy"], closed["ticker"], closed["quantity"], closed["status"]) == (
        "zero_dte",
        "SPY",
        "2",
        "closed",
    )
    # Exactly the stored numeric values: PostgreSQL keeps the column's scale, and no float ever touches them.
    assert (closed["entry_price"], closed["exit_price"], closed["realized_pnl"], closed["fees"]) == (
        "1.234567",
        "1.500000",
        "-12.3400",
        "2.6000",
    )
    assert (closed["entry_at"], closed["exit_at"], closed["exit_reason"]) == (
        "2025-06-10T14:00:02+00:00",
        "2025-06-10T19:00:05+00:00",
        "target",
    )
    still_open = rows[2]
    assert (still_open["exit_price"], still_open["exit_at"], still_open["realized_pnl"], still_open["status"]) == (
        "",
        "",
        "",
        "open",
    )


def test_a_rerun_replaces_both_files_and_leaves_no_temporary_file(books, tmp_path):
    trade_log_export(day=DAY, out_dir=tmp_path)
    log(books["exit"], "submitted", "cancelled", ny(16, 0), applied=False, detail="late refusal")
    Trade.objects.filter(signal__signal_id="sig-open").update(fees=Decimal("3.9"))

    path = trade_log_export(day=DAY, out_dir=tmp_path)

    rows = read(path)
    assert len(rows) == 5 and rows[-2]["detail"] == "late refusal"
    assert read(tmp_path / "trades-2025-06-10.csv")[2]["fees"] == "3.9000"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trade_log-2025-06-10.csv", "trades-2025-06-10.csv"]


def test_a_failed_write_leaves_the_previous_export_whole(books, tmp_path, monkeypatch):
    path = trade_log_export(day=DAY, out_dir=tmp_path)
    before = path.read_bytes()
    log(books["exit"], "submitted", "cancelled", ny(16, 0), applied=False)

    def refuse(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export_module.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        trade_log_export(day=DAY, out_dir=tmp_path)

    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trade_log-2025-06-10.csv", "trades-2025-06-10.csv"]


def test_a_day_without_activity_is_a_header_only_export(tmp_path):
    path = trade_log_export(day=date(2025, 6, 14), out_dir=tmp_path / "new" / "dir")

    assert path.read_text(encoding="utf-8").splitlines() == [",".join(TRADE_LOG_COLUMNS)]
    assert (path.parent / "trades-2025-06-14.csv").read_text(encoding="utf-8").splitlines() == [",".join(TRADE_COLUMNS)]


def test_the_command_writes_the_given_day_to_out(books, tmp_path, capsys):
    call_command("export_trade_log", "--date", "2025-06-10", "--out", str(tmp_path))

    assert len(read(tmp_path / "trade_log-2025-06-10.csv")) == 4
    assert len(read(tmp_path / "trades-2025-06-10.csv")) == 3
    assert str(tmp_path / "trade_log-2025-06-10.csv") in capsys.readouterr().out


def test_the_command_defaults_to_the_current_new_york_day(books, tmp_path):
    # 02:00 UTC on the 11th is still the evening of the 10th in New York.
    clock.set_simulated(datetime(2025, 6, 11, 2, 0, tzinfo=UTC))

    call_command("export_trade_log", "--out", str(tmp_path))

    assert sorted(p.name for p in tmp_path.iterdir()) == ["trade_log-2025-06-10.csv", "trades-2025-06-10.csv"]


def test_the_command_defaults_to_the_exports_directory_under_the_data_dir(books, tmp_path, settings):
    settings.DATA_DIR = tmp_path
    clock.set_simulated(ny(17, 30) + timedelta(seconds=1))

    call_command("export_trade_log")

    assert len(read(tmp_path / "exports" / "trade_log-2025-06-10.csv")) == 4


def test_the_command_refuses_a_malformed_date(tmp_path):
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("export_trade_log", "--date", "10/06/2025", "--out", str(tmp_path))
