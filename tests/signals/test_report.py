"""The per-strategy report: figures from recorded trades, the chart, the HTML page and the command."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from apps.execution.models import Trade
from apps.signals.report import report_table, strategy_report, strategy_report_write
from tests.risk.factories import SESSION_DAY, SignalFactory, ny


def closed(
    strategy: str, *, pnl: str, exit_minute: int, entry: str = "1.00", quantity: int = 2, reason: str = "target"
):
    signal = SignalFactory(strategy=strategy, rationale=f"{strategy} because the tape said so")
    return Trade.objects.create(
        signal=signal,
        strategy=strategy,
        ticker="SPY",
        option_symbol=signal.option_symbol,
        quantity=quantity,
        entry_price=Decimal(entry),
        entry_at=ny(10, 0),
        exit_price=Decimal(entry),
        exit_at=ny(11, exit_minute),
        exit_reason=reason,
        realized_pnl=Decimal(pnl),
        status=Trade.Status.CLOSED,
    )


@pytest.mark.django_db
def test_win_rate_average_return_and_drawdown_come_from_the_closed_trades():
    closed("zero_dte", pnl="100", exit_minute=1)  # +50 % on $200 of premium
    closed("zero_dte", pnl="-60", exit_minute=2, reason="stop")  # -30 %
    closed("zero_dte", pnl="-50", exit_minute=3, reason="stop")  # -25 %: the curve 100, 40, -10
    SignalFactory(strategy="moc")  # a signal that was never traded
    report = strategy_report(days=[SESSION_DAY])
    zero = next(row for row in report.strategies if row.strategy == "zero_dte")
    assert (zero.signals, zero.trades, zero.closed, zero.wins) == (3, 3, 3, 1)
    assert zero.win_rate == pytest.approx(1 / 3, abs=1e-4)
    assert zero.avg_return_pct == pytest.approx((50 - 30 - 25) / 3, abs=0.01)
    assert zero.realized_pnl == "-10.00"
    assert zero.max_drawdown == "110.00"
    assert zero.exits == {"target": 1, "stop": 2}
    assert [value for _, value in zero.curve] == ["100.00", "40.00", "-10.00"]
    moc = next(row for row in report.strategies if row.strategy == "moc")
    assert (moc.signals, moc.trades, moc.win_rate) == (1, 0, None)
    assert moc.examples[0]["outcome"] == "not traded"
    assert "zero_dte" in report_table(report) and "-10.00" in report_table(report)


@pytest.mark.django_db
def test_other_days_are_left_out():
    closed("one_dte", pnl="40", exit_minute=5)
    report = strategy_report(days=[SESSION_DAY.replace(day=SESSION_DAY.day + 1)])
    assert all(row.signals == 0 and row.trades == 0 for row in report.strategies)


@pytest.mark.django_db
def test_the_report_is_written_as_json_a_png_chart_and_an_html_page(tmp_path):
    closed("swing_14d", pnl="75", exit_minute=7)
    paths = strategy_report_write(strategy_report(days=[SESSION_DAY]), tmp_path)
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = paths["html"].read_text()
    assert 'src="equity.png"' in page and "swing_14d because the tape said so" in page
    data = json.loads(paths["json"].read_text())
    assert data["total_realized_pnl"] == "75.00"


@pytest.mark.django_db(transaction=True)  # each stage hands over to the next on commit
def test_sessions_of_different_seeds_give_explained_signals_in_all_four_buckets(tmp_path):
    # The morning of one seed (0DTE, 1DTE and 14D+ entries) and the close of another (MOC), kept short for the suite:
    # seed 3 enters 0DTE from 09:45, 1DTE from 10:00 and 14D+ at 10:24; seed 7 enters MOC at 15:30 and 15:34.  Each
    # replay plays its whole day's beat (08:59-16:35) whatever the window, so the windows are the part worth trimming.
    morning, close = tmp_path / "morning.ndjson.gz", tmp_path / "close.ndjson.gz"
    call_command("make_session", date="2026-11-18", seed=3, out=str(morning), start="09:25", end="10:40")
    call_command("make_session", date="2026-11-19", seed=7, out=str(close), start="15:10", end="15:40")
    out = StringIO()
    call_command(
        "strategy_report", "--session", str(morning), "--session", str(close), "--out", str(tmp_path / "r"), stdout=out
    )
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["days"] == ["2026-11-18", "2026-11-19"]
    for row in data["strategies"]:
        assert row["signals"] > 0, row["strategy"]
        for example in row["examples"]:
            assert example["rule"].startswith(row["strategy"]) and len(example["rationale"]) > 40
            assert sum(example["evidence"].values()) > 0
    assert (tmp_path / "r" / "equity.png").stat().st_size > 10_000
    page = (tmp_path / "r" / "index.html").read_text()
    assert all(name in page for name in ("zero_dte", "one_dte", "swing_14d", "moc"))
    assert "moc" in out.getvalue().splitlines()[5]
