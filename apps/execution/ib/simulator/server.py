"""``TWSSimulator``: a loopback TWS that the real ``ibapi`` client connects to (docs/tws_simulator.md).

One thread accepts connections, one thread per connection reads frames; every state change happens under one lock,
and messages are written to the client's socket while it is held, so each client sees them in the order TWS would
send them.  Controls (``set_quote``, ``drop_connections``, ``reject_next`` ...) are thread-safe.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import Any

from django.conf import settings

from apps.execution.brokers.base import BrokerQuote
from apps.execution.brokers.paper import PaperBroker
from apps.execution.brokers.paper import commission_per_contract as default_commission_per_contract
from apps.execution.ib.simulator import messages
from apps.execution.ib.simulator.book import ACCOUNT_TAGS, Book, PlaceRequest
from apps.execution.ib.simulator.instruments import (
    Instrument,
    UnknownInstrument,
    con_id_for,
    instrument_for_key,
    instrument_from_wire,
)
from apps.execution.ib.simulator.messages import In
from apps.execution.ib.simulator.records import SimState, dump_state, load_state
from apps.execution.ib.simulator.wire import (
    SERVER_VERSION,
    ConnectionClosed,
    ProtocolError,
    encode_frame,
    fmt_decimal,
    read_frame,
    read_handshake,
    split_fields,
)

logger = logging.getLogger(__name__)

FARM_OK = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
)
NO_SECURITY = "No security definition has been found for the request"
CLIENT_ID_IN_USE = "Unable to connect as the client id is already in use. Retry with a unique client id."
TICK_BID, TICK_ASK, TICK_LAST = 1, 2, 4
_MISSING = object()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _decimal_or_none(text: str) -> Decimal | None:
    if text == "":
        return None
    value = Decimal(text)
    # ibapi writes UNSET_DOUBLE as "" but a client may send the sentinel itself.
    return None if value >= Decimal("1E300") else value


@dataclass
class _Subscription:
    key: str
    snapshot: bool
    sent: dict[int, Any] = field(default_factory=dict)


class _Connection:
    def __init__(self, sock: socket.socket, peer: Any) -> None:
        self.sock = sock
        self.peer = peer
        self.client_id: int | None = None
        self.alive = True
        self.send_lock = threading.Lock()
        self.subscriptions: dict[int, _Subscription] = {}
        self.positions_subscribed = False

    def send(self, fields: messages.Fields) -> None:
        if not self.alive:
            return
        frame = encode_frame(fields)
        with self.send_lock:
            try:
                self.sock.sendall(frame)
            except OSError:
                logger.info("tws_sim send to client %s failed; closing", self.client_id)
                self.close()

    def close(self) -> None:
        self.alive = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            logger.debug("tws_sim socket of client %s already shut down", self.client_id)
        self.sock.close()


class TWSSimulator:
    """A TWS on loopback speaking the socket protocol of ``ibapi`` 9.81 at server version 157."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        account: str = "DU1234567",
        quotes: Callable[[str], BrokerQuote | None] | None = None,
        clock: Callable[[], datetime] | None = None,
        spread_share: Decimal | None = None,
        commission_per_contract: Decimal | None = None,
        starting_cash: Decimal | None = None,
        state_path: Path | None = None,
        quote_poll_seconds: float = 1.0,
    ) -> None:
        if not _is_loopback(host):
            raise ValueError(f"the TWS simulator only listens on loopback, not {host!r}")
        self.host = host
        self.port = port
        self.account = account
        self._external_quotes = quotes
        self._clock = clock or (lambda: datetime.now(UTC))
        self._state_path = Path(state_path) if state_path is not None else None
        self._quote_poll_seconds = quote_poll_seconds
        self._lock = threading.RLock()
        self._own_quotes: dict[str, BrokerQuote] = {}
        self._connections: list[_Connection] = []
        self._received: list[tuple[int, list[str]]] = []
        self._known_con_ids: dict[int, str] = {}
        self._drop_next_place: bool | None = None
        self._delay = 0.0
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        cash = Decimal(str(settings.ACCOUNT_STARTING_CASH)) if starting_cash is None else starting_cash
        state = self._load_state() or SimState(cash=cash)
        for order in state.orders:
            self._known_con_ids[con_id_for(order.key)] = order.key
        self.book = Book(
            account=account,
            state=state,
            quote_for=self._quote_for,
            clock=self._clock,
            pricer=PaperBroker(spread_share=spread_share),
            commission_per_contract=(
                default_commission_per_contract() if commission_per_contract is None else commission_per_contract
            ),
            sink=self,
        )

    # --- lifecycle --------------------------------------------------------------------------------------------------
    def start(self) -> TWSSimulator:
        listener = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(16)
        listener.settimeout(0.2)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._spawn(self._accept_loop, "tws-sim-accept")
        if self._external_quotes is not None and self._quote_poll_seconds > 0:
            self._spawn(self._poll_loop, "tws-sim-quotes")
        logger.info("tws_sim listening on %s:%s (account %s)", self.host, self.port, self.account)
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            conn.close()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        self._threads.clear()
        logger.info("tws_sim stopped")

    def __enter__(self) -> TWSSimulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, name=name, args=args, daemon=True)
        thread.start()
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(sock, peer)
            with self._lock:
                self._connections.append(conn)
            self._spawn(self._serve, f"tws-sim-conn-{peer[1]}", conn)

    def _poll_loop(self) -> None:
        """External quotes change without telling us: re-check resting orders and stream ticks on a timer."""
        while not self._stopping.wait(self._quote_poll_seconds):
            with self._lock:
                self.book.recheck()
                for conn in self._connections:
                    for req_id, sub in list(conn.subscriptions.items()):
                        self._push_ticks(conn, req_id, sub, force=False)

    # --- a connection -----------------------------------------------------------------------------------------------
    def _serve(self, conn: _Connection) -> None:
        try:
            offered = read_handshake(conn.sock)
            version = min(offered, SERVER_VERSION)
            # One write: the 9.81 client keeps only the first frame of each read during the handshake.
            conn.sock.sendall(encode_frame([str(version), messages.connection_time(self._clock())]))
            while conn.alive and not self._stopping.is_set():
                fields = split_fields(read_frame(conn.sock))
                if fields:
                    self._dispatch(conn, fields)
        except (ConnectionClosed, OSError):
            logger.info("tws_sim client %s disconnected", conn.client_id)
        except ProtocolError as exc:
            logger.warning("tws_sim closing a connection that broke the protocol: %s", exc)
        finally:
            with self._lock:
                if conn in self._connections:
                    self._connections.remove(conn)
            conn.close()

    def _dispatch(self, conn: _Connection, fields: list[str]) -> None:
        try:
            msg_id = int(fields[0])
        except ValueError:
            logger.warning("tws_sim ignoring a message with id %r", fields[0])
            return
        with self._lock:
            self._received.append((msg_id, fields[1:]))
        if msg_id == In.START_API:
            self._start_api(conn, fields)
            return
        if conn.client_id is None:
            logger.warning("tws_sim ignoring message %s before START_API", msg_id)
            return
        if msg_id in (In.PLACE_ORDER, In.CANCEL_ORDER) and self._delay > 0:
            time.sleep(self._delay)
        handler = self._handlers.get(msg_id)
        if handler is None:
            logger.info("tws_sim ignoring unsupported message %s (%d fields)", msg_id, len(fields))
            return
        try:
            handler(self, conn, fields)
        except (ValueError, IndexError, InvalidOperation) as exc:
            logger.warning("tws_sim could not read message %s %s: %s", msg_id, fields, exc)

    def _start_api(self, conn: _Connection, fields: list[str]) -> None:
        client_id = int(fields[2])
        with self._lock:
            if any(other.client_id == client_id and other.alive for other in self._connections if other is not conn):
                logger.warning("tws_sim refusing client id %s: already connected", client_id)
                conn.send(messages.error(-1, 326, CLIENT_ID_IN_USE))
                self._unregister(conn)
                return
            conn.client_id = client_id
            conn.send(messages.managed_accounts(self.account))
            conn.send(messages.next_valid_id(self.book.next_id(client_id)))
            for code, text in FARM_OK:
                conn.send(messages.error(-1, code, text))
        logger.info("tws_sim client %s connected from %s", client_id, conn.peer)

    def _unregister(self, conn: _Connection) -> None:
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        conn.close()

    # --- OrderSink --------------------------------------------------------------------------------------------------
    def to_client(self, client_id: int, fields: messages.Fields) -> None:
        for conn in self._connections:
            if conn.client_id == client_id and conn.alive:
                conn.send(fields)

    def position_changed(self, key: str) -> None:
        position = self.book.state.positions.get(key)
        if position is None:
            return
        fields = messages.position_data(self.account, instrument_for_key(key), position.position, position.avg_cost)
        for conn in self._connections:
            if conn.positions_subscribed and conn.alive:
                conn.send(fields)

    def persist(self) -> None:
        if self._state_path is None:
            return
        tmp = self._state_path.with_name(self._state_path.name + ".tmp")
        tmp.write_text(json.dumps(dump_state(self.book.state), indent=1))
        os.replace(tmp, self._state_path)

    def _load_state(self) -> SimState | None:
        if self._state_path is None or not self._state_path.exists():
            return None
        logger.info("tws_sim loading state from %s", self._state_path)
        return load_state(json.loads(self._state_path.read_text()))

    # --- quotes -----------------------------------------------------------------------------------------------------
    def _quote_for(self, key: str) -> BrokerQuote | None:
        own = self._own_quotes.get(key)
        if own is not None or self._external_quotes is None:
            return own
        return self._external_quotes(key)

    def _push_ticks(self, conn: _Connection, req_id: int, sub: _Subscription, *, force: bool) -> None:
        quote = self._quote_for(sub.key)
        if quote is None:
            return
        for tick_type, value in ((TICK_BID, quote.bid), (TICK_ASK, quote.ask), (TICK_LAST, quote.last)):
            previous = sub.sent.get(tick_type, _MISSING)
            if value is None and previous in (_MISSING, None):
                continue
            if not force and previous is not _MISSING and previous == value:
                continue
            size = 1 if value is not None else 0
            conn.send(messages.tick_price(req_id, tick_type, value, size, tick_type != TICK_LAST))
            sub.sent[tick_type] = value
        if sub.snapshot:
            conn.send(messages.tick_snapshot_end(req_id))
            conn.subscriptions.pop(req_id, None)

    # --- handlers ---------------------------------------------------------------------------------------------------
    def _instrument(self, con_id: str, symbol: str, sec_type: str, expiry: str, strike: str, right: str) -> Instrument:
        instrument = instrument_from_wire(
            con_id=con_id,
            symbol=symbol,
            sec_type=sec_type,
            expiry=expiry,
            strike=strike,
            right=right,
            known=self._known_con_ids,
        )
        self._known_con_ids[instrument.con_id] = instrument.key
        return instrument

    def _on_place_order(self, conn: _Connection, fields: list[str]) -> None:
        assert conn.client_id is not None
        order_id = int(fields[1])
        with self._lock:
            drop, self._drop_next_place = self._drop_next_place, None
            if drop is not None:
                logger.warning(
                    "tws_sim dropping client %s on PLACE_ORDER %s (accept=%s)", conn.client_id, order_id, drop
                )
                self._unregister(conn)
                if not drop:
                    return
            if fields[4].upper() == "BAG":
                self._reject_unparsed(
                    conn.client_id, order_id, 201, "Order rejected - reason:combo orders are not simulated"
                )
                return
            try:
                instrument = self._instrument(fields[2], fields[3], fields[4], fields[5], fields[6], fields[7])
            except UnknownInstrument as exc:
                logger.info("tws_sim order %s: %s", order_id, exc)
                self.to_client(conn.client_id, messages.error(order_id, 200, NO_SECURITY))
                return
            request = PlaceRequest(
                order_id=order_id,
                instrument=instrument,
                action=fields[16].upper(),
                quantity_text=fields[17],
                order_type=fields[18].upper(),
                lmt_price=_decimal_or_none(fields[19]),
                aux_price=_decimal_or_none(fields[20]),
                tif=fields[21].upper(),
                oca_group=fields[22],
                account=fields[23],
                order_ref=fields[26],
                transmit=fields[27] != "0",
                parent_id=int(fields[28] or 0),
                oca_type=int(fields[47] or 0),
                etrade_only=fields[53] == "1",
                firm_quote_only=fields[54] == "1",
                exchange=fields[9],
            )
            self.book.place(conn.client_id, request)

    def _reject_unparsed(self, client_id: int, order_id: int, code: int, text: str) -> None:
        self.to_client(client_id, messages.error(order_id, code, text))

    def _on_cancel_order(self, conn: _Connection, fields: list[str]) -> None:
        assert conn.client_id is not None
        with self._lock:
            self.book.cancel(conn.client_id, int(fields[2]))

    def _on_req_ids(self, conn: _Connection, fields: list[str]) -> None:
        assert conn.client_id is not None
        with self._lock:
            conn.send(messages.next_valid_id(self.book.next_id(conn.client_id)))

    def _send_open_orders(self, conn: _Connection, client_id: int | None) -> None:
        with self._lock:
            for order in self.book.open_orders(client_id):
                conn.send(messages.open_order(order, instrument_for_key(order.key)))
                conn.send(messages.order_status(order))
            conn.send(messages.open_order_end())

    def _on_req_open_orders(self, conn: _Connection, fields: list[str]) -> None:
        # Client 0 is TWS's own (master) client: it sees every order, like the orders typed into TWS.
        self._send_open_orders(conn, conn.client_id or None)

    def _on_req_all_open_orders(self, conn: _Connection, fields: list[str]) -> None:
        self._send_open_orders(conn, None)

    def _on_req_executions(self, conn: _Connection, fields: list[str]) -> None:
        req_id = int(fields[2])
        client_filter = int(fields[3] or 0)
        account_filter, symbol_filter, sec_type_filter, side_filter = fields[4], fields[6], fields[7], fields[9]
        with self._lock:
            for execution in self.book.state.executions:
                instrument = instrument_for_key(execution.key)
                if client_filter and execution.client_id != client_filter:
                    continue
                if account_filter and account_filter != self.account:
                    continue
                if symbol_filter and symbol_filter.upper() != instrument.symbol:
                    continue
                if sec_type_filter and sec_type_filter.upper() != instrument.sec_type:
                    continue
                if side_filter and side_filter.upper() not in (
                    execution.side,
                    "BUY" if execution.side == "BOT" else "SELL",
                ):
                    continue
                conn.send(messages.execution_data(req_id, execution, instrument, self.account))
                conn.send(messages.commission_report(execution))
            conn.send(messages.execution_data_end(req_id))

    def _on_req_positions(self, conn: _Connection, fields: list[str]) -> None:
        with self._lock:
            conn.positions_subscribed = True
            for key, position in self.book.state.positions.items():
                conn.send(
                    messages.position_data(self.account, instrument_for_key(key), position.position, position.avg_cost)
                )
            conn.send(messages.position_end())

    def _on_cancel_positions(self, conn: _Connection, fields: list[str]) -> None:
        conn.positions_subscribed = False

    def _on_req_account_summary(self, conn: _Connection, fields: list[str]) -> None:
        req_id = int(fields[2])
        requested = [tag.strip() for tag in fields[4].split(",") if tag.strip()]
        with self._lock:
            values = self.book.account_values()
            tags = [tag for tag in requested if tag in values] or list(ACCOUNT_TAGS)
            for tag in tags:
                conn.send(messages.account_summary(req_id, self.account, tag, fmt_decimal(values[tag]), "USD"))
            conn.send(messages.account_summary_end(req_id))

    def _on_cancel_account_summary(self, conn: _Connection, fields: list[str]) -> None:
        logger.debug("tws_sim account summary %s cancelled", fields[2])

    def _on_req_mkt_data(self, conn: _Connection, fields: list[str]) -> None:
        req_id = int(fields[2])
        index = 15
        if fields[5].upper() == "BAG":
            legs = int(fields[index] or 0)
            index += 1 + 4 * legs
        if fields[index] == "1":
            index += 3
        index += 1  # delta neutral flag
        snapshot = fields[index + 1] == "1"
        with self._lock:
            try:
                instrument = self._instrument(fields[3], fields[4], fields[5], fields[6], fields[7], fields[8])
            except UnknownInstrument as exc:
                logger.info("tws_sim market data %s: %s", req_id, exc)
                conn.send(messages.error(req_id, 200, NO_SECURITY))
                return
            sub = _Subscription(key=instrument.key, snapshot=snapshot)
            conn.subscriptions[req_id] = sub
            self._push_ticks(conn, req_id, sub, force=True)

    def _on_cancel_mkt_data(self, conn: _Connection, fields: list[str]) -> None:
        with self._lock:
            conn.subscriptions.pop(int(fields[2]), None)

    def _on_req_completed_orders(self, conn: _Connection, fields: list[str]) -> None:
        with self._lock:
            for order in self.book.completed_orders():
                conn.send(messages.completed_order(order, instrument_for_key(order.key)))
            conn.send(messages.completed_orders_end())

    def _on_req_contract_data(self, conn: _Connection, fields: list[str]) -> None:
        req_id = int(fields[2])
        with self._lock:
            try:
                self._instrument(fields[3], fields[4], fields[5], fields[6], fields[7], fields[8])
            except UnknownInstrument:
                conn.send(messages.error(req_id, 200, NO_SECURITY))
                return
            conn.send(messages.contract_data_end(req_id))

    def _on_req_current_time(self, conn: _Connection, fields: list[str]) -> None:
        conn.send(messages.current_time(int(self._clock().timestamp())))

    def _on_req_global_cancel(self, conn: _Connection, fields: list[str]) -> None:
        with self._lock:
            self.book.global_cancel()

    def _on_req_managed_accts(self, conn: _Connection, fields: list[str]) -> None:
        conn.send(messages.managed_accounts(self.account))

    def _on_req_auto_open_orders(self, conn: _Connection, fields: list[str]) -> None:
        logger.debug("tws_sim reqAutoOpenOrders(%s) accepted", fields[2:3])

    _handlers: dict[int, Callable[[TWSSimulator, _Connection, list[str]], None]] = {
        In.PLACE_ORDER: _on_place_order,
        In.CANCEL_ORDER: _on_cancel_order,
        In.REQ_IDS: _on_req_ids,
        In.REQ_OPEN_ORDERS: _on_req_open_orders,
        In.REQ_ALL_OPEN_ORDERS: _on_req_all_open_orders,
        In.REQ_AUTO_OPEN_ORDERS: _on_req_auto_open_orders,
        In.REQ_EXECUTIONS: _on_req_executions,
        In.REQ_POSITIONS: _on_req_positions,
        In.CANCEL_POSITIONS: _on_cancel_positions,
        In.REQ_ACCOUNT_SUMMARY: _on_req_account_summary,
        In.CANCEL_ACCOUNT_SUMMARY: _on_cancel_account_summary,
        In.REQ_MKT_DATA: _on_req_mkt_data,
        In.CANCEL_MKT_DATA: _on_cancel_mkt_data,
        In.REQ_COMPLETED_ORDERS: _on_req_completed_orders,
        In.REQ_CONTRACT_DATA: _on_req_contract_data,
        In.REQ_CURRENT_TIME: _on_req_current_time,
        In.REQ_GLOBAL_CANCEL: _on_req_global_cancel,
        In.REQ_MANAGED_ACCTS: _on_req_managed_accts,
    }

    # --- controls ---------------------------------------------------------------------------------------------------
    def set_quote(self, key: str, bid: Decimal | None, ask: Decimal | None, last: Decimal | None = None) -> None:
        """Put a quote in the simulator's own book (it overrides ``quotes``), fill what became marketable, tick."""
        instrument = instrument_for_key(key)
        with self._lock:
            self._known_con_ids[instrument.con_id] = instrument.key
            self._own_quotes[instrument.key] = BrokerQuote(
                option_symbol=instrument.key, bid=bid, ask=ask, last=last, ts=self._clock(), source="tws_sim"
            )
            self.book.recheck({instrument.key})
            for conn in self._connections:
                for req_id, sub in list(conn.subscriptions.items()):
                    if sub.key == instrument.key:
                        self._push_ticks(conn, req_id, sub, force=True)

    def recheck(self) -> None:
        """One step of the quote poll: work every resting order against the current quotes."""
        with self._lock:
            self.book.recheck()

    def closing_auction(self) -> int:
        """Fill every working MOC order at its contract's current mark; how many filled."""
        with self._lock:
            return self.book.closing_auction()

    def drop_connections(self) -> None:
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            conn.close()
        logger.warning("tws_sim dropped %d connections", len(connections))

    def drop_on_next_place(self, accept: bool) -> None:
        with self._lock:
            self._drop_next_place = accept

    def reject_next(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self.book.reject_reasons.extend([reason] * count)

    def partial_fill_next(self, quantity: int) -> None:
        if quantity <= 0:
            raise ValueError("a partial fill needs a positive quantity")
        with self._lock:
            self.book.partial_next = quantity

    def hold_fills(self, on: bool) -> None:
        with self._lock:
            self.book.hold = on
            if not on:
                self.book.release_held()

    def set_delay(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("the delay cannot be negative")
        self._delay = seconds

    def send_error(self, code: int, message: str, req_id: int = -1) -> None:
        with self._lock:
            for conn in self._connections:
                if conn.client_id is not None:
                    conn.send(messages.error(req_id, code, message))

    # --- reports ----------------------------------------------------------------------------------------------------
    def orders(self) -> list[dict[str, Any]]:
        with self._lock:
            return [order.as_report() for order in self.book.state.orders]

    def executions(self) -> list[dict[str, Any]]:
        with self._lock:
            return [execution.as_report() for execution in self.book.state.executions]

    def positions(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {
                key: {"position": pos.position, "avg_cost": pos.avg_cost}
                for key, pos in self.book.state.positions.items()
            }

    def account_values(self) -> dict[str, Decimal]:
        with self._lock:
            return self.book.account_values()

    def received(self) -> list[tuple[int, list[str]]]:
        with self._lock:
            return [(msg_id, list(fields)) for msg_id, fields in self._received]

    def connections(self) -> int:
        with self._lock:
            return sum(1 for conn in self._connections if conn.client_id is not None and conn.alive)
