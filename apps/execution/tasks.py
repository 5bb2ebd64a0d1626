"""Execution stage tasks: thin, by id or ticker; they run on the ``execution`` queue (one worker, serialized)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from celery import shared_task

from apps.core import calendar, clock
from apps.execution import broker_events, services
from apps.execution.selectors import tickers_with_open_trades
from apps.execution.trade_log_export import trade_log_export


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


# --- Interactive Brokers: what the connection owner (manage.py ib_listener) reports -----------------------------------
@shared_task(name="execution.ib_order_event", acks_late=True)
def ib_order_event(kind: str, data: dict[str, Any]) -> None:
    """Apply one order report from TWS: ``ack``, ``status``, ``execution`` or ``rejected``.

    Running twice is safe: executions are keyed by IB's execId, an acknowledgement or a status the order already
    has changes nothing, and a terminal order ignores later statuses.
    """
    if kind == "execution":
        commission = data.get("commission")
        broker_events.execution_record(
            order_ref=data["order_ref"],
            ib_order_id=int(data["ib_order_id"]),
            exec_id=data["exec_id"],
            price=Decimal(data["price"]),
            shares=Decimal(data["shares"]),
            commission=Decimal(commission) if commission is not None else None,
            at=datetime.fromisoformat(data["at"]),
        )
    elif kind == "ack":
        broker_events.order_acknowledged(
            order_ref=data["order_ref"],
            ib_order_id=int(data["ib_order_id"]),
            perm_id=int(data.get("perm_id") or 0),
            status=data.get("status", ""),
        )
    elif kind == "status":
        broker_events.order_status_apply(
            order_ref=data["order_ref"],
            ib_order_id=int(data["ib_order_id"]),
            status=data["status"],
            filled=Decimal(data.get("filled") or "0"),
            why=data.get("why_held", ""),
            cancel_requested=bool(data.get("cancel_requested", False)),
        )
    elif kind == "rejected":
        broker_events.order_rejected(
            order_ref=data["order_ref"],
            ib_order_id=int(data["ib_order_id"]),
            code=int(data["code"]),
            message=data["message"],
        )
    else:
        raise ValueError(f"unknown IB order event {kind!r}")


@shared_task(name="execution.ib_broker_message", acks_late=True)
def ib_broker_message(data: dict[str, Any]) -> int:
    """Keep one error or notice code from TWS.  Running twice stores the message twice (harmless: it is a log)."""
    return broker_events.broker_message_record(
        code=int(data["code"]),
        req_id=int(data["req_id"]),
        message=data["message"],
        category=data["category"],
        alert=bool(data["alert"]),
        order_ref=data.get("order_ref", ""),
    ).pk


@shared_task(name="execution.ib_account", acks_late=True)
def ib_account(values: dict[str, str]) -> None:
    """Store the broker's account summary for the risk manager.  Running twice rewrites the same values."""
    broker_events.account_values_record(values=values)


@shared_task(name="execution.ib_reconcile", acks_late=True)
def ib_reconcile(snapshot: dict[str, Any]) -> dict[str, int]:
    """Compare a broker snapshot with the book, adopt what can be adopted, flag the rest.

    Running twice is safe: adopted executions are keyed by execId, ended orders stay ended, and an open issue is
    refreshed rather than duplicated.
    """
    return broker_events.reconcile_apply(snapshot=snapshot)


@shared_task(name="execution.export_trade_log", acks_late=True)
def export_trade_log(day: str | None = None) -> str | None:
    """Write the trade log and trades CSVs of ``day`` (YYYY-MM-DD; default: today in New York) to
    ``TP_DATA_DIR/exports``; returns the trade log's path.

    Running twice is safe: each file is written to a temporary file and renamed over the day's previous export, so a
    second run replaces both with the books as they are then and never leaves half a file.  Skipped when beat fires it
    on a replay's simulated clock: a replayed day must not overwrite the live export of that date.
    """
    if day is None and clock.is_simulated():
        return None
    export_day = calendar.market_day(clock.now()) if day is None else date.fromisoformat(day)
    return str(trade_log_export(day=export_day))
