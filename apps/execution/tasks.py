"""Execution stage tasks: thin, by id or ticker; they run on the ``execution`` queue (one worker, serialized)."""

from __future__ import annotations

from datetime import datetime

from celery import shared_task

from apps.execution import services
from apps.execution.selectors import tickers_with_open_trades


@shared_task(name="execution.submit_order", acks_late=True)
def submit_order(decision_id: int) -> int | None:
    """Send the entry order of an approved decision and book its fills.

    Running twice is safe: the order's client order id is derived from the signal and unique, so a second run finds
    the same order (and a filled or rejected one is left as it is); fills are keyed by the broker's execution id.
    """
    order = services.order_submit(decision_id=decision_id)
    return order.pk if order is not None else None


@shared_task(name="execution.manage_exits", acks_late=True)
def manage_exits(ticker: str, as_of: str) -> list[int]:
    """Mark the open trades of ``ticker`` and exit those at their target, stop or time exit.

    Running twice is safe: closed trades are skipped, a working exit order is resumed rather than duplicated, and
    each exit attempt has its own deterministic client order id.
    """
    closed = services.exits_manage(ticker=ticker, as_of=datetime.fromisoformat(as_of) if as_of else None)
    return [trade.pk for trade in closed]


@shared_task(name="execution.sweep_exits", acks_late=True)
def sweep_exits() -> list[int]:
    """Backstop for beat: manage the exits of every ticker with an open trade, so a time exit happens even when no
    new market data arrives for that ticker.  Running twice is safe for the reasons ``manage_exits`` gives."""
    closed: list[int] = []
    for ticker in tickers_with_open_trades():
        closed.extend(trade.pk for trade in services.exits_manage(ticker=ticker, as_of=None))
    return closed
