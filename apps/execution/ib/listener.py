"""``manage.py ib_listener``: the one long-lived owner of the Interactive Brokers connection.

Each loop step: (re)connect with backoff; after every (re)connect, reconcile before anything new is sent; drain
TWS's events into tasks; carry out the queued order commands in id order, each answered (acknowledged or rejected)
before the next; keep the account values, the quote subscriptions and the connection state in Redis fresh.

Commands are ``BrokerCommand`` rows: one written while the listener is down waits for it.  A command that was sent
but not answered when the listener died is settled from the reconciliation snapshot: the broker knows its orderRef
(answered from what the broker says) or it does not (sent again under a new order id and the same orderRef while it
is younger than ``IB_RESUBMIT_WINDOW_SECONDS``, else ended and flagged).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import timedelta
from types import FrameType
from typing import Any

import redis
from django.conf import settings
from django.db import close_old_connections, transaction

from apps.core import clock, store
from apps.execution import broker_events
from apps.execution.brokers.ib import WAKE_KEY, answered_signal
from apps.execution.ib import connection as ev
from apps.execution.ib.dispatch import TaskSink
from apps.execution.ib.gateway import IBGateway, OrderTrack, Snapshot
from apps.execution.models import OPEN_ORDER_STATUSES, BrokerCommand, Order, Position

logger = logging.getLogger(__name__)

ACCOUNT_REFRESH_SECONDS = 30.0
SUBSCRIPTIONS_REFRESH_SECONDS = 10.0
HEARTBEAT_SECONDS = 1.0


def quote_keys_wanted() -> set[str]:
    """The underlyings, the contracts held, and those of working orders and of signals of the last hour."""
    from apps.signals.models import Signal

    keys = set(settings.TRACKED_TICKERS)
    keys.update(Position.objects.exclude(quantity=0).values_list("option_symbol", flat=True))
    keys.update(Order.objects.filter(status__in=OPEN_ORDER_STATUSES).values_list("option_symbol", flat=True))
    recent = clock.now() - timedelta(hours=1)
    keys.update(Signal.objects.filter(created_at__gte=recent).values_list("option_symbol", flat=True))
    return keys


class IBListener:
    def __init__(self, *, gateway: IBGateway | None = None) -> None:
        self.gateway = gateway or IBGateway(sink=TaskSink())
        self.stopping = False
        self._last_account = 0.0
        self._last_subscriptions = 0.0
        self._last_heartbeat = 0.0
        self._last_reconcile = 0.0
        self._last_scan = 0.0
        self._snapshot: Snapshot | None = None
        self._inflight: dict[int, OrderTrack] = {}  # command id -> the order it placed, awaiting its answer

    # --- the loop ---------------------------------------------------------------------------------------------------
    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        threading.Thread(target=self._relay_wakeups, name="ib-commands-wake", daemon=True).start()
        logger.info(
            "ib_listener: %s:%s client %s (%s)",
            self.gateway.host,
            self.gateway.port,
            self.gateway.client_id,
            settings.TRADING_MODE,
        )
        try:
            while not self.stopping:
                close_old_connections()
                if not self.step():
                    time.sleep(0.2)
        finally:
            self.gateway.close()
            logger.info("ib_listener stopped")

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def _relay_wakeups(self) -> None:
        """Block on the workers' wake-up list and turn each into an event, so a new command ends the event wait at
        once (the loop waits on TWS's events and on commands in one place)."""
        client = store.get_redis()
        while not self.stopping:
            try:
                if client.blpop([WAKE_KEY], timeout=1):
                    self.gateway.events.put(ev.CommandsWaiting())
            except redis.RedisError as exc:
                logger.warning("ib_listener: waiting for commands: %s", exc)
                time.sleep(1.0)

    def step(self) -> bool:
        """One pass; False when there is no connection (the caller sleeps a little)."""
        now = time.monotonic()
        if now - self._last_heartbeat >= HEARTBEAT_SECONDS:
            self._last_heartbeat = now
            self.gateway.heartbeat()
        if not self.gateway.ensure_connected():
            self._inflight.clear()
            return False
        if self.gateway.needs_reconcile or now - self._last_reconcile >= float(settings.IB_RECONCILE_SECONDS):
            self._reconcile()
        self.gateway.pump(0.05)
        self._answer_inflight()
        self._commands(force_scan=now - self._last_scan >= 1.0)
        if now - self._last_account >= ACCOUNT_REFRESH_SECONDS or self.gateway.account_stale:
            self._last_account = now
            self.gateway.request_account()
        if now - self._last_subscriptions >= SUBSCRIPTIONS_REFRESH_SECONDS:
            self._last_subscriptions = now
            self._subscriptions()
        return True

    def _reconcile(self) -> None:
        try:
            self._snapshot = self.gateway.reconcile()
        except (TimeoutError, ConnectionError) as exc:
            logger.error("ib_listener: reconciliation failed: %s", exc)
            return
        self._last_reconcile = time.monotonic()
        self._settle_sent_commands(self._snapshot)

    def _subscriptions(self) -> None:
        wanted = quote_keys_wanted()
        added = self.gateway.subscribe_quotes(sorted(wanted - self.gateway.subscribed))
        self.gateway.unsubscribe_quotes(self.gateway.subscribed - wanted)
        if added:
            logger.info("ib_listener: %s new quote subscriptions (%s in all)", added, len(self.gateway.subscribed))

    # --- commands ---------------------------------------------------------------------------------------------------
    def _settle_sent_commands(self, snapshot: Snapshot) -> None:
        """Commands sent by an earlier connection and never answered: answer them from the snapshot, or send again."""
        known = snapshot.refs()
        window = timedelta(seconds=int(settings.IB_RESUBMIT_WINDOW_SECONDS))
        for command in BrokerCommand.objects.filter(status=BrokerCommand.Status.SENT, kind=BrokerCommand.Kind.PLACE):
            order = command.order
            if order.client_order_id in known:
                open_order = snapshot.open_orders.get(order.client_order_id)
                ib_order_id = open_order["ib_order_id"] if open_order else order.ib_order_id
                self._answer(command, {"accepted": True, "ib_order_id": ib_order_id, "source": "reconciliation"})
            elif command.sent_at is not None and clock.now() - command.sent_at < window:
                logger.warning("order %s: no trace at IB; sending it again under a new id", order.client_order_id)
                BrokerCommand.objects.filter(pk=command.pk).update(status=BrokerCommand.Status.QUEUED)
            else:
                # Too old to send blindly now (the market moved on): ended, flagged, the command answered as failed.
                broker_events.order_no_trace_end(order=order, taken_at=snapshot.taken_at, unless_commanded=False)

    def _commands(self, *, force_scan: bool) -> None:
        woken, self.gateway.commands_waiting = self.gateway.commands_waiting, False
        if not woken and not force_scan:
            return
        self._last_scan = time.monotonic()
        for command in BrokerCommand.objects.filter(status=BrokerCommand.Status.QUEUED).order_by("id")[:50]:
            if self.stopping or not self.gateway.connected:
                return
            self._carry_out(command)

    def _claim(self, command: BrokerCommand) -> bool:
        claimed = BrokerCommand.objects.filter(pk=command.pk, status=BrokerCommand.Status.QUEUED).update(
            status=BrokerCommand.Status.SENT, sent_at=clock.now()
        )
        return claimed == 1

    def _carry_out(self, command: BrokerCommand) -> None:
        if not self._claim(command):
            return
        order = Order.objects.get(pk=command.order_id)
        if command.kind == BrokerCommand.Kind.CANCEL:
            if order.ib_order_id is None or order.status not in OPEN_ORDER_STATUSES:
                self._answer(command, {"done": True, "detail": f"order is {order.status}"})
                return
            self.gateway.cancel(ib_order_id=order.ib_order_id)
            track = self.gateway.tracks.get(order.client_order_id)
            if track is not None:
                self.gateway.wait(track, finished=True, timeout=float(settings.IB_ACK_TIMEOUT_SECONDS))
            self._answer(command, {"done": True, "detail": "cancel sent"})
            return
        if order.status not in (Order.Status.SUBMITTED, Order.Status.PENDING):
            self._answer(
                command, {"accepted": order.status != Order.Status.REJECTED, "detail": f"order is {order.status}"}
            )
            return
        # An id already used for this order but unknown to the broker may have been lost with a restart: a new id.
        unknown = self._snapshot is not None and order.client_order_id not in self._snapshot.refs()
        try:
            track = self.gateway.place(order_pk=order.pk, new_id=order.ib_order_id is not None and unknown)
        except ConnectionError:
            logger.warning(
                "order %s: connection lost before sending; settled after the reconnect", order.client_order_id
            )
            return
        self.gateway.wait(track, finished=False, timeout=float(settings.IB_ACK_TIMEOUT_SECONDS))
        if track.answered:
            self._answer_track(command, track)
        else:
            self._inflight[command.pk] = track
            logger.warning("order %s: no acknowledgement from IB yet", order.client_order_id)

    def _answer_inflight(self) -> None:
        for command_id, track in list(self._inflight.items()):
            if track.answered:
                self._inflight.pop(command_id)
                self._answer_track(BrokerCommand.objects.get(pk=command_id), track)

    def _answer_track(self, command: BrokerCommand, track: OrderTrack) -> None:
        if track.reject is not None:
            code, message = track.reject
            self._answer(
                command, {"accepted": False, "reject_reason": f"IB {code}: {message}", "ib_order_id": track.ib_order_id}
            )
        else:
            self._answer(command, {"accepted": True, "ib_order_id": track.ib_order_id, "status": track.status})

    def _answer(self, command: BrokerCommand, result: dict[str, Any]) -> None:
        with transaction.atomic():
            BrokerCommand.objects.filter(pk=command.pk).exclude(
                status__in=(BrokerCommand.Status.DONE, BrokerCommand.Status.FAILED)
            ).update(status=BrokerCommand.Status.DONE, result=result, answered_at=clock.now())
        answered_signal(command.pk)
