"""The words of a social post: a closed trade or an approved market report, plain text, within each platform's limits.

Limits: X 280 characters (counted here as Python characters; URLs are left as written), Reddit title 300 and
self-text 40,000.  Every post ends with "not investment advice"; when text must be cut it is the body that is
shortened (marked with an ellipsis), never the disclaimer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from apps.core import calendar
from apps.core.money import cents
from apps.distribution.discord.messages import EXIT_REASONS
from apps.distribution.discord.messages import TradeLike as ClosedTrade  # the attributes a post reads

X_MAX = 280
REDDIT_TITLE_MAX = 300
REDDIT_TEXT_MAX = 40_000
ELLIPSIS = "…"
TRADE_DISCLAIMER = "Automated trade log, not investment advice."
REPORT_DISCLAIMER = "Automated market summary, not investment advice."

STRATEGIES = {"zero_dte": "0DTE", "one_dte": "1DTE", "swing_14d": "14-day swing", "moc": "market-on-close"}


@dataclass(frozen=True)
class Draft:
    """One platform's post: ``title`` for Reddit (blank for X) and the text."""

    title: str
    text: str


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    if limit <= len(ELLIPSIS):
        return ""
    return text[: limit - len(ELLIPSIS)].rstrip() + ELLIPSIS


def with_disclaimer(body: str, disclaimer: str, limit: int) -> str:
    """``body`` and the disclaimer on its own paragraph, the body cut so the whole fits in ``limit``."""
    separator = "\n\n"
    return truncate(body.strip(), limit - len(separator) - len(disclaimer)) + separator + disclaimer


def _money(value: Decimal | None) -> str:
    if value is None:
        return "n/a"
    sign = "-" if value < 0 else "+"
    return f"{sign}${abs(cents(value)):,}"


def _price(value: Decimal | None) -> str:
    return "n/a" if value is None else f"${cents(value)}"


def _ny(instant: datetime | None) -> str:
    if instant is None:
        return "n/a"
    return instant.astimezone(calendar.NEW_YORK).strftime("%Y-%m-%d %H:%M ET")


def _return_on_premium(trade: ClosedTrade) -> str:
    if not trade.entry_price or trade.exit_price is None:
        return ""
    change = (trade.exit_price - trade.entry_price) / trade.entry_price * 100
    return f"{'+' if change >= 0 else ''}{change.quantize(Decimal('0.1'))}%"


def _reason(trade: ClosedTrade) -> str:
    return EXIT_REASONS.get(trade.exit_reason or "", trade.exit_reason or "closed")


def _strategy(trade: ClosedTrade) -> str:
    return STRATEGIES.get(trade.strategy, trade.strategy)


def trade_exit_x(trade: ClosedTrade) -> Draft:
    """A tweet about a closed trade: contract, result, entry and exit prices, strategy."""
    change = _return_on_premium(trade)
    result = _money(trade.realized_pnl) + (f" ({change} on premium)" if change else "")
    body = (
        f"Closed {trade.ticker} {trade.option_symbol} x{trade.quantity}, {_reason(trade)}: {result}.\n"
        f"Entry {_price(trade.entry_price)}, exit {_price(trade.exit_price)}. Strategy: {_strategy(trade)}."
    )
    return Draft(title="", text=with_disclaimer(body, TRADE_DISCLAIMER, X_MAX))


def trade_exit_reddit(trade: ClosedTrade, *, rationale: str = "") -> Draft:
    """A Reddit self post about a closed trade, with the signal's rationale when there is one."""
    change = _return_on_premium(trade)
    title = f"Closed {trade.ticker} {trade.option_symbol} ({_reason(trade)}): {_money(trade.realized_pnl)}"
    lines = [
        f"Contract: {trade.option_symbol} ({trade.ticker}), {trade.quantity} contract(s)",
        f"Strategy: {_strategy(trade)}",
        f"Entry: {_price(trade.entry_price)} at {_ny(trade.entry_at)}",
        f"Exit: {_price(trade.exit_price)} at {_ny(trade.exit_at)} ({_reason(trade)})",
        f"Realized result: {_money(trade.realized_pnl)} after {_price(trade.fees)} fees",
    ]
    if change:
        lines.append(f"Return on premium: {change}")
    if rationale.strip():
        lines += ["", f"Why it was opened: {rationale.strip()}"]
    body = "\n\n".join(lines)
    return Draft(
        title=truncate(title, REDDIT_TITLE_MAX),
        text=with_disclaimer(body, TRADE_DISCLAIMER, REDDIT_TEXT_MAX),
    )


def report_title(*, kind_label: str, day: date) -> str:
    return f"{kind_label} market report, {day.strftime('%A %d %B %Y')}"


def _report_lines(content: str, *, drop: tuple[str, ...]) -> list[str]:
    """The report's non-empty lines, without its own disclaimer (ours is added) and without ``drop`` lines."""
    lines = []
    for raw in content.splitlines():
        line = " ".join(raw.split())
        if not line or line in drop or "not investment advice" in line.lower():
            continue
        lines.append(line)
    return lines


def report_x(*, title: str, content: str, drop: tuple[str, ...] = ()) -> Draft:
    """A tweet summarising a report: its title and as much of its text as fits."""
    summary = " ".join(_report_lines(content, drop=drop))
    return Draft(title="", text=with_disclaimer(f"{title}: {summary}", REPORT_DISCLAIMER, X_MAX))


def report_reddit(*, title: str, content: str) -> Draft:
    """The whole report as a Reddit self post (cut at Reddit's 40,000 characters)."""
    body = "\n\n".join(_report_lines(content, drop=()))
    return Draft(
        title=truncate(title, REDDIT_TITLE_MAX), text=with_disclaimer(body, REPORT_DISCLAIMER, REDDIT_TEXT_MAX)
    )
