"""The Interactive Brokers adapter behind the broker interface.

Two ways to reach TWS, chosen by how tasks run:
- **listener** (workers; tasks not eager): the submission is a ``BrokerCommand`` row that ``manage.py ib_listener``,
  the one owner of the connection, carries out and answers; the worker waits for the answer (``IB_ACK_TIMEOUT_SECONDS``)
  and executions arrive later as ``execution.ib_order_event`` tasks.  A command outlives a listener restart.
- **direct** (a replay or any eager process): this process owns the connection itself (one gateway per process) and
  applies the broker's reports inline while it waits for the order to finish.

Either way the order is priced and checked like the paper broker does (no quote or a stale quote: not sent), sent
as an immediate-or-cancel limit order with the client order id as ``orderRef``, and its IB order id is persisted
before sending and reused on a retry.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, cast

from django.conf import settings

from apps.core import clock, store
from apps.execution.brokers.base import Broker, BrokerQuote, OrderRequest, SubmitResult, quote_max_age
from apps.execution.brokers.paper import PaperBroker, _parse_ts, _price
from apps.execution.models import BrokerCommand, Order

if TYPE_CHECKING:
    from apps.execution.ib.gateway import IBGateway

logger = logging.getLogger(__name__)

IB_QUOTE_KEY = "latest:ib:quote:{}"
WAKE_KEY = "ib:commands:wake"
ANSWERED_KEY = "ib:commands:answered:{}"  # one push per answered command: its waiting worker wakes at once

_gateway_lock = threading.Lock()
_gateway: IBGateway | None = None


def process_gateway(*, host: str | None = None, port: int | None = None) -> IBGateway:
    """The gateway this process owns in direct mode (created, connected and reconciled on first use; ``host`` and
    ``port`` default to ``IB_HOST``/``IB_PORT`` and only matter for the first call)."""
    global _gateway
    from apps.execution.ib.dispatch import TaskSink
    from apps.execution.ib.gateway import IBGateway

    with _gateway_lock:
        if _gateway is None:
            _gateway = IBGateway(sink=TaskSink(), host=host, port=port)
        gateway = _gateway
    if not gateway.connected and gateway.ensure_connected():
        gateway.reconcile()
    return gateway


def process_gateway_close() -> None:
    global _gateway
    with _gateway_lock:
        gateway, _gateway = _gateway, None
    if gateway is not None:
        gateway.close()


def transport() -> str:
    return "direct" if settings.CELERY_TASK_ALWAYS_EAGER else "listener"


class IBBroker(Broker):
    name = "ib"

    def __init__(self, *, max_age: timedelta | None = None) -> None:
        self.max_age = quote_max_age() if max_age is None else max_age
        self._paper = PaperBroker(max_age=self.max_age)
        # client order id -> the price check's refusal, or None when it passed (submit_prepare, then submit)
        self._checked: dict[str, SubmitResult | None] = {}

    # --- quotes -----------------------------------------------------------------------------------------------------
    def quote(self, option_symbol: str) -> BrokerQuote | None:
        """IB's own quote for the contract when it is the newest, else the recorded market (the paper broker's)."""
        recorded = self._paper.quote(option_symbol)
        data = cast(dict[str, str], store.get_redis().hgetall(IB_QUOTE_KEY.format(option_symbol)))
        ts = _parse_ts(data.get("ts", "")) if data else None
        if ts is None or ts > clock.now():
            return recorded
        bid, ask, last = _price(data.get("bid")), _price(data.get("ask")), _price(data.get("last"))
        if bid is None and ask is None and last is None:
            return recorded
        ib = BrokerQuote(option_symbol=option_symbol, bid=bid, ask=ask, last=last, ts=ts, source="ib")
        return ib if recorded is None or ib.ts >= recorded.ts else recorded

    # --- orders -----------------------------------------------------------------------------------------------------
    def _precheck(self, order: OrderRequest) -> SubmitResult | None:
        quote = self.quote(order.option_symbol)
        if quote is None:
            return SubmitResult(accepted=False, reject_reason=f"no quote for {order.option_symbol}: not sent to IB")
        if self.is_stale(quote):
            age = int((clock.now() - quote.ts).total_seconds())
            return SubmitResult(
                accepted=False,
                reject_reason=(
                    f"stale quote for {order.option_symbol}: {age}s old (from {quote.source} at"
                    f" {quote.ts.isoformat()}), limit is {int(self.max_age.total_seconds())}s: not sent to IB"
                ),
                quote=quote,
            )
        return None

    def submit_prepare(self, *, order_id: int) -> None:
        # The listener's reconciliation ends a submitted order of which TWS knows nothing unless a command is on its
        # way: the command is written with the "submitted" mark, in the same transaction.  The price check comes
        # first: a refused order never gets a command the listener could carry out.
        row = Order.objects.get(pk=order_id)
        refused = self._precheck(
            OrderRequest(
                client_order_id=row.client_order_id,
                option_symbol=row.option_symbol,
                side=row.side,
                quantity=row.quantity,
                limit_price=row.limit_price,
            )
        )
        self._checked[row.client_order_id] = refused
        if refused is None and transport() == "listener":
            BrokerCommand.objects.get_or_create(
                kind=BrokerCommand.Kind.PLACE, order_id=order_id, defaults={"created_at": clock.now()}
            )

    def submit(self, order: OrderRequest) -> SubmitResult:
        if order.client_order_id in self._checked:
            refused = self._checked.pop(order.client_order_id)
        else:
            refused = self._precheck(order)  # a retry of an order an earlier attempt marked submitted
        if refused is not None:
            return refused
        row = Order.objects.get(client_order_id=order.client_order_id)
        if transport() == "direct":
            return self._submit_direct(row)
        return self._submit_listener(row)

    def _submit_direct(self, row: Order) -> SubmitResult:
        gateway = process_gateway()
        if not gateway.connected:
            return SubmitResult(accepted=False, reject_reason="IB is not connected: not sent")
        track = gateway.tracks.get(row.client_order_id)
        if track is None:
            track = gateway.place(order_pk=row.pk)
        gateway.wait(track, finished=True, timeout=float(settings.IB_ACK_TIMEOUT_SECONDS))
        if track.reject is not None:
            code, message = track.reject
            return SubmitResult(
                accepted=False, broker_order_id=str(track.ib_order_id), reject_reason=f"IB {code}: {message}"
            )
        return SubmitResult(accepted=True, broker_order_id=str(track.ib_order_id))

    def _submit_listener(self, row: Order) -> SubmitResult:
        command, _created = BrokerCommand.objects.get_or_create(
            kind=BrokerCommand.Kind.PLACE, order=row, defaults={"created_at": clock.now()}
        )
        if command.status not in (BrokerCommand.Status.DONE, BrokerCommand.Status.FAILED):
            store.get_redis().lpush(WAKE_KEY, str(command.pk))
        answer = _await_answer(command.pk, timeout=float(settings.IB_ACK_TIMEOUT_SECONDS))
        if answer is None:
            logger.warning(
                "order %s: no answer from ib_listener within %ss; it stays submitted and IB's reports will move it",
                row.client_order_id,
                settings.IB_ACK_TIMEOUT_SECONDS,
            )
            return SubmitResult(accepted=True)
        result = answer.result or {}
        if answer.status == BrokerCommand.Status.FAILED or not result.get("accepted", False):
            return SubmitResult(accepted=False, reject_reason=str(result.get("reject_reason", "refused by IB")))
        return SubmitResult(accepted=True, broker_order_id=str(result.get("ib_order_id", "")))

    def cancel(self, *, broker_order_id: str) -> bool:
        row = Order.objects.filter(broker=self.name, broker_order_id=broker_order_id).first()
        if row is None or row.ib_order_id is None:
            return True
        if transport() == "direct":
            gateway = process_gateway()
            if not gateway.connected:
                return False
            gateway.cancel(ib_order_id=row.ib_order_id)
            track = gateway.tracks.get(row.client_order_id)
            if track is not None:
                gateway.wait(track, finished=True, timeout=float(settings.IB_ACK_TIMEOUT_SECONDS))
            row.refresh_from_db()
            return row.status not in (Order.Status.SUBMITTED, Order.Status.PARTIALLY_FILLED, Order.Status.PENDING)
        command, _ = BrokerCommand.objects.get_or_create(
            kind=BrokerCommand.Kind.CANCEL, order=row, defaults={"created_at": clock.now()}
        )
        store.get_redis().lpush(WAKE_KEY, str(command.pk))
        answer = _await_answer(command.pk, timeout=float(settings.IB_ACK_TIMEOUT_SECONDS))
        return answer is not None and bool((answer.result or {}).get("done", False))


def answered_signal(command_id: int) -> None:
    """Tell the worker waiting on ``command_id`` that its answer is in the table (the row stays the truth)."""
    key = ANSWERED_KEY.format(command_id)
    pipe = store.get_redis().pipeline(transaction=False)
    pipe.lpush(key, "1")
    pipe.expire(key, 60)
    pipe.execute()


def _await_answer(command_id: int, *, timeout: float) -> BrokerCommand | None:
    """The answered command, or None after ``timeout``: woken by the listener's push, checked against the row (a
    lost push costs at most a quarter of a second)."""
    deadline = time.monotonic() + timeout
    client = store.get_redis()
    key = ANSWERED_KEY.format(command_id)
    while True:
        command = BrokerCommand.objects.get(pk=command_id)
        if command.status in (BrokerCommand.Status.DONE, BrokerCommand.Status.FAILED):
            client.delete(key)
            return command
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        client.blpop([key], timeout=min(remaining, 0.25))
