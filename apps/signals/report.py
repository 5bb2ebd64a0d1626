"""How each strategy did over played days: signals, trades, win rate, average return, drawdown, an equity curve.

Reads what the pipeline recorded (``signals``, ``risk_audit``, ``trades``) for the given New York market days, so the
figures are the platform's own books, not a re-simulation.  ``strategy_report_write`` renders them as JSON, a PNG
chart and an HTML page.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.db.models import QuerySet

from apps.core import calendar
from apps.execution.models import Trade
from apps.risk.models import RiskDecision
from apps.signals.models import Signal

STRATEGIES = ("zero_dte", "one_dte", "swing_14d", "moc")
CONTRACT_MULTIPLIER = Decimal(100)
CENT = Decimal("0.01")


@dataclass
class StrategyFigures:
    strategy: str
    signals: int = 0
    approved: int = 0
    rejected: int = 0
    trades: int = 0
    closed: int = 0
    open: int = 0
    wins: int = 0
    win_rate: float | None = None  # share of closed trades with a positive realized PnL
    avg_return_pct: float | None = None  # mean realized PnL over premium paid, closed trades
    realized_pnl: str = "0.00"  # dollars, fees included
    max_drawdown: str = "0.00"  # dollars, peak to trough of the cumulative realized PnL
    exits: dict[str, int] = field(default_factory=dict)
    curve: list[tuple[str, str]] = field(default_factory=list)  # (exit time ISO, cumulative PnL)
    examples: list[dict[str, Any]] = field(default_factory=list)  # a few signals with their explanation


@dataclass
class StrategyReport:
    days: list[str]
    strategies: list[StrategyFigures]
    total_realized_pnl: str
    total_max_drawdown: str
    total_curve: list[tuple[str, str]]


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=calendar.NEW_YORK).astimezone(UTC)
    return start, start + timedelta(days=1)


def _signals_on(days: list[date]) -> QuerySet[Signal]:
    query = Signal.objects.none()
    for day in days:
        start, end = _day_bounds(day)
        query = query | Signal.objects.filter(as_of__gte=start, as_of__lt=end)
    return query


def _curve(trades: list[Trade]) -> tuple[list[tuple[str, str]], Decimal]:
    """Cumulative realized PnL at each exit, and the largest fall from a running peak (starting from zero)."""
    total = peak = Decimal(0)
    drawdown = Decimal(0)
    points: list[tuple[str, str]] = []
    for trade in sorted(trades, key=lambda t: (t.exit_at or t.entry_at, t.pk)):
        total += trade.realized_pnl or Decimal(0)
        peak = max(peak, total)
        drawdown = max(drawdown, peak - total)
        points.append(((trade.exit_at or trade.entry_at).isoformat(), str(total.quantize(CENT))))
    return points, drawdown


def _outcome(trade: Trade | None) -> str:
    if trade is None:
        return "not traded"
    if trade.realized_pnl is None:
        return "open"
    return f"{trade.exit_reason or 'closed'} ${trade.realized_pnl.quantize(CENT)}"


def strategy_report(*, days: list[date], examples: int = 5) -> StrategyReport:
    """The per-strategy figures of ``days`` (New York market days) from the recorded signals, decisions and trades."""
    signals = _signals_on(days)
    decisions = RiskDecision.objects.filter(signal__in=signals)
    trades = list(Trade.objects.filter(signal__in=signals).select_related("signal"))
    figures: list[StrategyFigures] = []
    for strategy in STRATEGIES:
        mine = signals.filter(strategy=strategy)
        row = StrategyFigures(strategy=strategy, signals=mine.count())
        row.approved = decisions.filter(signal__strategy=strategy, approved=True).count()
        row.rejected = decisions.filter(signal__strategy=strategy, approved=False).count()
        own = [t for t in trades if t.strategy == strategy]
        closed = [t for t in own if t.status == Trade.Status.CLOSED and t.realized_pnl is not None]
        row.trades, row.closed, row.open = len(own), len(closed), len(own) - len(closed)
        row.wins = sum(1 for t in closed if (t.realized_pnl or 0) > 0)
        if closed:
            row.win_rate = round(row.wins / len(closed), 4)
            returns = [
                (t.realized_pnl or Decimal(0)) / (t.entry_price * t.quantity * CONTRACT_MULTIPLIER)
                for t in closed
                if t.entry_price > 0
            ]
            row.avg_return_pct = round(float(sum(returns) / len(returns)) * 100, 2) if returns else None
        for trade in closed:
            row.exits[trade.exit_reason or "unknown"] = row.exits.get(trade.exit_reason or "unknown", 0) + 1
        row.curve, drawdown = _curve(closed)
        row.realized_pnl = str(sum((t.realized_pnl or Decimal(0) for t in closed), Decimal(0)).quantize(CENT))
        row.max_drawdown = str(drawdown.quantize(CENT))
        traded = {t.signal_id: t for t in own}
        for signal in mine.order_by("as_of")[:examples]:
            outcome = _outcome(traded.get(signal.pk))
            row.examples.append(
                {
                    "at": signal.as_of.astimezone(calendar.NEW_YORK).strftime("%Y-%m-%d %H:%M"),
                    "contract": signal.option_symbol,
                    "rule": signal.rule,
                    "rationale": signal.rationale,
                    "confidence": str(signal.confidence),
                    "evidence": {kind: len(ids) for kind, ids in (signal.evidence or {}).items()},
                    "outcome": outcome,
                }
            )
        figures.append(row)
    closed_all = [t for t in trades if t.status == Trade.Status.CLOSED and t.realized_pnl is not None]
    total_curve, total_drawdown = _curve(closed_all)
    return StrategyReport(
        days=[day.isoformat() for day in days],
        strategies=figures,
        total_realized_pnl=str(sum((t.realized_pnl or Decimal(0) for t in closed_all), Decimal(0)).quantize(CENT)),
        total_max_drawdown=str(total_drawdown.quantize(CENT)),
        total_curve=total_curve,
    )


def report_table(report: StrategyReport) -> str:
    """The per-strategy table as plain text (the console, the closing note)."""
    header = (
        f"{'strategy':<10} {'signals':>7} {'approved':>8} {'trades':>6} {'closed':>6} {'win rate':>8} "
        f"{'avg return':>10} {'realized $':>11} {'max DD $':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in report.strategies:
        win = f"{row.win_rate:.0%}" if row.win_rate is not None else "-"
        avg = f"{row.avg_return_pct:+.1f}%" if row.avg_return_pct is not None else "-"
        lines.append(
            f"{row.strategy:<10} {row.signals:>7} {row.approved:>8} {row.trades:>6} {row.closed:>6} {win:>8} "
            f"{avg:>10} {row.realized_pnl:>11} {row.max_drawdown:>9}"
        )
    lines.append(
        f"{'all':<10} {sum(r.signals for r in report.strategies):>7} {sum(r.approved for r in report.strategies):>8} "
        f"{sum(r.trades for r in report.strategies):>6} {sum(r.closed for r in report.strategies):>6} {'':>8} "
        f"{'':>10} {report.total_realized_pnl:>11} {report.total_max_drawdown:>9}"
    )
    return "\n".join(lines)


def _times(curve: list[tuple[str, str]]) -> Any:
    """Exit times as matplotlib date numbers (New York wall time)."""
    from matplotlib import dates

    return dates.date2num([datetime.fromisoformat(at).astimezone(calendar.NEW_YORK) for at, _ in curve])


def _chart(report: StrategyReport, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    from matplotlib import pyplot

    figure, axis = pyplot.subplots(figsize=(10, 5), dpi=110)
    for row in report.strategies:
        if row.curve:
            xs = _times(row.curve)
            axis.step(xs, [float(v) for _, v in row.curve], where="post", label=row.strategy)
    if report.total_curve:
        xs = _times(report.total_curve)
        axis.step(xs, [float(v) for _, v in report.total_curve], where="post", label="all", color="black", lw=2)
    from matplotlib import dates

    axis.xaxis_date(tz=calendar.NEW_YORK)
    axis.xaxis.set_major_formatter(dates.DateFormatter("%m-%d %H:%M", tz=calendar.NEW_YORK))
    axis.axhline(0, color="grey", lw=0.8)
    axis.set_title(f"Realized PnL by strategy — {', '.join(report.days)}")
    axis.set_ylabel("cumulative realized PnL ($)")
    axis.set_xlabel("exit time (New York)")
    axis.grid(alpha=0.3)
    if report.total_curve:
        axis.legend(loc="best")
    else:
        axis.text(0.5, 0.5, "no closed trades", transform=axis.transAxes, ha="center", va="center")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)


def _html(report: StrategyReport, chart_name: str) -> str:
    esc = html.escape
    rows = []
    for row in report.strategies:
        win = f"{row.win_rate:.0%}" if row.win_rate is not None else "–"
        avg = f"{row.avg_return_pct:+.1f}%" if row.avg_return_pct is not None else "–"
        pnl_class = "pos" if Decimal(row.realized_pnl) > 0 else "neg" if Decimal(row.realized_pnl) < 0 else ""
        exits = ", ".join(f"{esc(k)} {v}" for k, v in sorted(row.exits.items())) or "–"
        rows.append(
            f"<tr><th>{esc(row.strategy)}</th><td>{row.signals}</td><td>{row.approved} / {row.rejected}</td>"
            f"<td>{row.trades}</td><td>{row.closed}</td><td>{win}</td><td>{avg}</td>"
            f"<td class='{pnl_class}'>${esc(row.realized_pnl)}</td><td>${esc(row.max_drawdown)}</td>"
            f"<td>{exits}</td></tr>"
        )
    sections = []
    for row in report.strategies:
        items = "".join(
            f"<li><span class='meta'>{esc(e['at'])} · {esc(e['contract'])} · rule <b>{esc(e['rule'])}</b> · "
            f"confidence {esc(e['confidence'])} · evidence {esc(json.dumps(e['evidence']))} · "
            f"outcome {esc(e['outcome'])}</span><br>{esc(e['rationale'])}</li>"
            for e in row.examples
        )
        sections.append(
            f"<section><h3>{esc(row.strategy)}</h3>"
            + (f"<ol>{items}</ol>" if items else "<p class='meta'>no signal on these days</p>")
            + "</section>"
        )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Strategy report {esc(", ".join(report.days))}</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }} th, td {{ padding: .35rem .6rem; border-bottom: 1px solid #ddd; }}
td {{ text-align: right; }} thead th {{ background: #f3f3f3; }} tbody th {{ text-align: left; }}
.pos {{ color: #0a7a2f; }} .neg {{ color: #b3261e; }} .meta {{ color: #666; font-size: 13px; }}
img {{ max-width: 100%; border: 1px solid #eee; margin: 1rem 0; }} li {{ margin-bottom: .6rem; }}
</style></head><body>
<h1>Strategy report</h1>
<p class="meta">Played days: {esc(", ".join(report.days))} · realized PnL ${esc(report.total_realized_pnl)} ·
max drawdown ${esc(report.total_max_drawdown)} · figures from the platform's own signals, risk decisions and trades
(fees included).</p>
<table><thead><tr><th>strategy</th><th>signals</th><th>approved / rejected</th><th>trades</th><th>closed</th>
<th>win rate</th><th>avg return</th><th>realized</th><th>max drawdown</th><th>exits</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<img src="{esc(chart_name)}" alt="cumulative realized PnL by strategy">
<h2>Why: the first signals of each strategy</h2>
{"".join(sections)}
</body></html>
"""


def strategy_report_write(report: StrategyReport, out_dir: Path) -> dict[str, Path]:
    """Write ``report.json``, ``equity.png`` and ``index.html`` into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "report.json", "chart": out_dir / "equity.png", "html": out_dir / "index.html"}
    paths["json"].write_text(json.dumps(asdict(report), indent=2) + "\n")
    _chart(report, paths["chart"])
    paths["html"].write_text(_html(report, paths["chart"].name))
    return paths
