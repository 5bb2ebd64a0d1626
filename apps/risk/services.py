"""Writes of the risk manager: decisions on signals, the kill switch, versions of the limits.

Guarantees:
- one decision per signal (unique), so reviewing a signal again returns the first verdict;
- reviews are serialized on the active limits row, so two signals judged at once cannot both take the last slot;
- every decision records each check with its outcome and the account it saw, in words;
- the next stage (``execution.submit_order``), a flatten pass (``risk.flatten_all``) and the ``risk:*`` keys are
  sent or written only after the transaction that decided them commits;
- every engagement and release of the kill switch is a history row and an ops audit entry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, cast

from django.db import IntegrityError, transaction
from django.db.models import Max

from apps.core import calendar, clock, store
from apps.core.events import dumps
from apps.core.money import CENT, CONTRACT_MULTIPLIER, ZERO
from apps.core.pipeline import enqueue_after_commit
from apps.execution.brokers.paper import commission_per_contract
from apps.execution.models import ExitReason
from apps.execution.selectors import AccountState, account_state, open_trades
from apps.ops.services import audit_record
from apps.risk.models import KillSwitchEvent, RiskDecision, RiskLimits
from apps.risk.portfolio import portfolio_greeks
from apps.risk.selectors import KILL_SWITCH_KEY, broker_account, broker_connected, kill_switch_is_on
from apps.signals.models import Signal, Strategy

logger = logging.getLogger(__name__)

LAST_DECISION_KEY = "risk:last_decision"
ACCOUNT_KEY = "risk:account"
LIMITS_KEY = "risk:limits"
DAY_STATS_KEY = "risk:decisions:{}"  # hash approved/rejected counts per New York day
DECISIONS_KEY = "risk:decisions"  # list of decision summaries (JSON), newest first
DECISIONS_CAP = 500
RISK_ACTOR = "risk"
AUDIT_RETENTION = timedelta(days=730)
PURGE_BATCH_SIZE = 1000
REGULAR_CLOSE = time(16, 0)
EDITABLE_LIMITS = (
    "max_premium_share",
    "max_contracts_per_order",
    "max_positions_per_underlying",
    "max_positions_per_strategy",
    "max_open_positions",
    "daily_loss_limit_share",
    "flatten_on_daily_loss",
    "zero_dte_entry_cutoff",
    "moc_entry_deadline",
    "entry_price_tolerance",
    "max_portfolio_delta",
    "max_portfolio_gamma",
    "max_leverage",
    "min_buying_power_share",
)


# --- the kill switch --------------------------------------------------------------------------------------------------
def kill_switch_engage(*, by: str, reason: str, flatten: bool = False) -> KillSwitchEvent:
    """Turn the kill switch on: from now every signal is rejected.  Redis is set at once (not after commit): erring
    towards "on" is the safe side, and the history row and the audit entry record who and why.

    With ``flatten``, ``risk.flatten_all(event_id)`` is sent to the execution queue after commit: it closes every open
    trade through the broker and records on this event what stayed open.
    """
    store.get_redis().set(KILL_SWITCH_KEY, "1")
    with transaction.atomic():
        event = KillSwitchEvent.objects.create(engaged=True, by=by, reason=reason, at=clock.now(), flatten=flatten)
        audit_record(
            actor=by,
            action="risk.kill_switch.engage_flatten" if flatten else "risk.kill_switch.engage",
            target="kill_switch",
            detail={"reason": reason, "flatten": flatten, "event_id": event.pk},
        )
        if flatten:
            from apps.risk.tasks import FLATTEN_QUEUE, flatten_all

            event_id = event.pk
            # The execution worker (concurrency 1) owns the book: the pass runs there, after the engagement commits.
            transaction.on_commit(lambda: flatten_all.apply_async(args=(event_id,), queue=FLATTEN_QUEUE))
    logger.warning("kill switch engaged by %s%s: %s", by, " (flatten)" if flatten else "", reason)
    return event


def kill_switch_release(*, by: str, reason: str) -> KillSwitchEvent:
    """Turn the kill switch off; signals are judged on their merits again."""
    with transaction.atomic():
        event = KillSwitchEvent.objects.create(engaged=False, by=by, reason=reason, at=clock.now())
        audit_record(
            actor=by,
            action="risk.kill_switch.release",
            target="kill_switch",
            detail={"reason": reason, "event_id": event.pk},
        )
        transaction.on_commit(lambda: store.get_redis().set(KILL_SWITCH_KEY, "0"))
    logger.warning("kill switch released by %s: %s", by, reason)
    return event


def positions_flatten(*, event_id: int) -> list[dict[str, Any]]:
    """Close every open trade (``apps.execution.services.flatten_all``) for the kill switch event ``event_id``, and
    record on the event, in the audit log and in the log what stayed open (an exit the broker refused, no quote).

    Calling it again closes whatever is still open and records the newer outcome.
    """
    # Imported here: the execution services import this module (they run the daily loss guard after exits).
    from apps.execution.services import flatten_all

    event = KillSwitchEvent.objects.get(pk=event_id)
    remaining = flatten_all(reason=ExitReason.FLATTEN)
    still_open = [
        {"trade_id": trade.pk, "option_symbol": trade.option_symbol, "quantity": trade.quantity} for trade in remaining
    ]
    KillSwitchEvent.objects.filter(pk=event.pk).update(flattened_at=clock.now(), still_open=still_open)
    audit_record(
        actor=RISK_ACTOR,
        action="risk.flatten_all",
        target="kill_switch",
        detail={"event_id": event.pk, "still_open": still_open},
    )
    if still_open:
        logger.error(
            "flatten for kill switch event %s left %d trade(s) open: %s", event.pk, len(still_open), still_open
        )
    else:
        logger.warning("flatten for kill switch event %s: every trade closed", event.pk)
    return still_open


# --- the limits -------------------------------------------------------------------------------------------------------
def limits_active() -> RiskLimits:
    """The limits in force; the first call on a fresh database creates version 1 with the defaults."""
    limits = RiskLimits.objects.filter(active=True).first()
    if limits is not None:
        return limits
    try:
        with transaction.atomic():
            first = RiskLimits.objects.create(version=1, created_at=clock.now(), created_by=RISK_ACTOR, note="defaults")
        transaction.on_commit(lambda: _publish_limits(first))
        return first
    except IntegrityError:
        # Another process created the first version at the same moment.
        return RiskLimits.objects.get(active=True)


def limits_update(*, by: str, note: str = "", **changes: Any) -> RiskLimits:
    """Save a new version of the limits with ``changes`` applied and make it the only active one."""
    unknown = set(changes) - set(EDITABLE_LIMITS)
    if unknown:
        raise ValueError(f"not editable risk limits: {', '.join(sorted(unknown))}")
    current = limits_active()
    with transaction.atomic():
        current = RiskLimits.objects.select_for_update().get(pk=current.pk)
        values = {name: changes.get(name, getattr(current, name)) for name in EDITABLE_LIMITS}
        version = (RiskLimits.objects.aggregate(last=Max("version"))["last"] or 0) + 1
        RiskLimits.objects.filter(pk=current.pk).update(active=False)
        new = RiskLimits.objects.create(
            version=version, active=True, created_at=clock.now(), created_by=by, note=note, **values
        )
    transaction.on_commit(lambda: _publish_limits(new))
    return new


def _limit_text(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _publish_limits(limits: RiskLimits) -> None:
    # Read back, so the hash shows the stored figures (2500.00) whether the row was just built from defaults or not.
    limits = RiskLimits.objects.get(pk=limits.pk)
    mapping = {name: _limit_text(getattr(limits, name)) for name in EDITABLE_LIMITS}
    mapping["version"] = str(limits.version)
    store.get_redis().hset(LIMITS_KEY, mapping=cast(store.HashMapping, mapping))


# --- the account ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AccountView:
    """The account a review judges by: the paper book, and the broker's own figures when they are fresh.

    Net liquidation, buying power and today's PnL are the more conservative of the two; the gross value of the open
    positions the larger.  ``snapshot()`` keeps both sides and which one was used.
    """

    book: AccountState
    broker: dict[str, Any] | None
    net_liq: Decimal
    net_liq_source: str
    buying_power: Decimal
    buying_power_source: str
    day_pnl: Decimal
    day_pnl_source: str
    positions_value: Decimal
    maint_margin: Decimal

    def snapshot(self) -> dict[str, str]:
        broker = self.broker or {}

        def from_broker(name: str) -> str:
            value = broker.get(name)
            return "" if value is None else (value.isoformat() if isinstance(value, datetime) else str(value))

        return {
            "net_liq": str(self.net_liq),
            "net_liq_source": self.net_liq_source,
            "cash": str(self.book.cash),
            "buying_power": str(self.buying_power),
            "buying_power_source": self.buying_power_source,
            "open_pnl": str(self.book.open_pnl),
            "realized_pnl_today": str(self.book.realized_pnl_today),
            "day_pnl": str(self.day_pnl),
            "day_pnl_source": self.day_pnl_source,
            "positions_value": str(self.positions_value),
            "maint_margin": str(self.maint_margin),
            "book_net_liq": str(self.book.net_liq),
            "book_buying_power": str(self.book.buying_power),
            "broker_net_liq": from_broker("NetLiquidation"),
            "broker_buying_power": from_broker("BuyingPower"),
            "broker_maint_margin": from_broker("MaintMarginReq"),
            "broker_unrealized_pnl": from_broker("UnrealizedPnL"),
            "broker_realized_pnl": from_broker("RealizedPnL"),
            "broker_total_cash": from_broker("TotalCashValue"),
            "broker_updated_at": from_broker("updated_at"),
        }


def account_view() -> AccountView:
    """The book (``apps.execution.selectors.account_state``) and, when fresh, the broker's account
    (``risk:account:broker``), combined on the safe side.  Long options are paid in full, so the book's margin is 0."""
    book = account_state()
    broker = broker_account()
    book_day_pnl = book.realized_pnl_today + book.open_pnl
    if broker is None:
        return AccountView(
            book=book,
            broker=None,
            net_liq=book.net_liq,
            net_liq_source="book",
            buying_power=book.buying_power,
            buying_power_source="book",
            day_pnl=book_day_pnl,
            day_pnl_source="book",
            positions_value=book.positions_value,
            maint_margin=ZERO,
        )

    def lower(book_value: Decimal, broker_value: Decimal) -> tuple[Decimal, str]:
        return (broker_value, "broker") if broker_value < book_value else (book_value, "book")

    net_liq, net_liq_source = lower(book.net_liq, broker["NetLiquidation"])
    buying_power, buying_power_source = lower(book.buying_power, broker["BuyingPower"])
    day_pnl, day_pnl_source = lower(book_day_pnl, broker["UnrealizedPnL"] + broker["RealizedPnL"])
    return AccountView(
        book=book,
        broker=broker,
        net_liq=net_liq,
        net_liq_source=net_liq_source,
        buying_power=buying_power,
        buying_power_source=buying_power_source,
        day_pnl=day_pnl,
        day_pnl_source=day_pnl_source,
        positions_value=max(book.positions_value, broker["NetLiquidation"] - broker["TotalCashValue"]),
        maint_margin=broker["MaintMarginReq"],
    )


# --- the daily loss limit ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DailyLoss:
    day_pnl: Decimal
    limit: Decimal
    breached: bool
    source: str = "book"

    @property
    def detail(self) -> str:
        return (
            f"today's PnL {self.day_pnl:.2f} (realized + open, from the {self.source})"
            f" against a loss limit of {self.limit:.2f}"
        )


def _daily_loss(*, account: AccountView, limits: RiskLimits) -> DailyLoss:
    day_pnl = account.day_pnl
    # The account's value at the start of the day, approximately: today's PnL taken back out of net liquidation.
    start_of_day = account.net_liq - day_pnl
    limit = (limits.daily_loss_limit_share * start_of_day).quantize(CENT)
    return DailyLoss(day_pnl=day_pnl, limit=limit, breached=day_pnl <= -limit, source=account.day_pnl_source)


def _daily_loss_trip(*, loss: DailyLoss, limits: RiskLimits) -> None:
    kill_switch_engage(
        by=RISK_ACTOR, reason=f"daily loss limit reached: {loss.detail}", flatten=limits.flatten_on_daily_loss
    )


def daily_loss_guard() -> bool:
    """Engage the kill switch when today's loss reaches the daily loss limit (and, when the limits say
    ``flatten_on_daily_loss``, close every open position after commit).  Returns whether the switch is on."""
    if kill_switch_is_on():
        return True
    limits = limits_active()
    loss = _daily_loss(account=account_view(), limits=limits)
    if loss.breached:
        _daily_loss_trip(loss=loss, limits=limits)
        return True
    return False


# --- the review -------------------------------------------------------------------------------------------------------
@dataclass
class _Checks:
    items: list[dict[str, Any]]

    def add(self, check: str, passed: bool, detail: str) -> None:
        self.items.append({"check": check, "passed": bool(passed), "detail": detail})

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.items if not c["passed"]]


def signal_review(*, signal_id: str) -> RiskDecision:
    """Judge a signal against the limits, the account, the clock and the kill switch; size it; record the decision.

    Idempotent: a signal already decided returns its decision unchanged.  Sets ``Signal.status`` to approved or
    rejected (only from pending), and after commit enqueues ``execution.submit_order(decision_id)`` when approved and
    writes ``risk:last_decision`` and ``risk:account``.
    """
    existing = RiskDecision.objects.filter(signal__signal_id=signal_id).first()
    if existing is not None:
        return existing
    limits = limits_active()
    try:
        with transaction.atomic():
            # Serialize reviews: the position counts below must not change under us.
            limits = RiskLimits.objects.select_for_update().get(pk=limits.pk)
            signal = Signal.objects.select_for_update().get(signal_id=signal_id)
            existing = RiskDecision.objects.filter(signal=signal).first()
            if existing is not None:
                return existing
            decision = _decide(signal=signal, limits=limits)
    except IntegrityError:
        # A concurrent review of the same signal won the unique constraint: its decision stands.
        return RiskDecision.objects.get(signal__signal_id=signal_id)
    return decision


def _decide(*, signal: Signal, limits: RiskLimits) -> RiskDecision:
    now = clock.now()
    account = account_view()
    checks = _Checks(items=[])

    loss = _daily_loss(account=account, limits=limits)
    checks.add("daily_loss_limit", not loss.breached, loss.detail)
    if loss.breached and not kill_switch_is_on():
        _daily_loss_trip(loss=loss, limits=limits)
    switch_on = kill_switch_is_on()
    checks.add("kill_switch", not switch_on, "the kill switch is ON: every signal is rejected" if switch_on else "off")
    connected, connection = broker_connected()
    checks.add("broker_connected", connected, connection if connected else f"reduce-only: {connection}")
    checks.add(
        "signal_pending",
        signal.status == Signal.Status.PENDING,
        f"signal status is {signal.status}",
    )
    _time_checks(checks=checks, signal=signal, limits=limits, now=now)
    _position_checks(checks=checks, signal=signal, limits=limits)
    quantity, price = _size(checks=checks, signal=signal, limits=limits, account=account)
    _greek_checks(checks=checks, signal=signal, limits=limits, quantity=quantity, now=now)

    approved = not checks.failed
    if approved:
        reason = (
            f"approved {quantity} x {signal.option_symbol} at up to {price} per share"
            f" (premium {price * quantity * CONTRACT_MULTIPLIER:.2f}): all {len(checks.items)} checks passed"
        )
    else:
        quantity = 0
        reason = "rejected: " + "; ".join(f"{c['check']}: {c['detail']}" for c in checks.failed)
    snapshot = account.snapshot()
    decision = RiskDecision.objects.create(
        signal=signal,
        limits=limits,
        approved=approved,
        quantity=quantity,
        limit_price=price,
        checks=checks.items,
        reason=reason,
        account=snapshot,
        decided_at=now,
    )
    new_status = Signal.Status.APPROVED if approved else Signal.Status.REJECTED
    Signal.objects.filter(pk=signal.pk, status=Signal.Status.PENDING).update(status=new_status)
    if approved:
        from apps.execution.tasks import submit_order

        enqueue_after_commit(submit_order, decision.pk)
    transaction.on_commit(lambda: _publish_decision(decision=decision, signal_id=signal.signal_id, account=snapshot))
    logger.info("signal %s: %s", signal.signal_id, reason)
    return decision


def _time_checks(*, checks: _Checks, signal: Signal, limits: RiskLimits, now: datetime) -> None:
    today = calendar.market_day(now)
    session = calendar.session_for(today)
    local = now.astimezone(calendar.NEW_YORK)
    in_session = session is not None and session.is_regular(now)
    checks.add(
        "regular_session",
        in_session,
        f"{local:%Y-%m-%d %H:%M:%S} New York is {'inside' if in_session else 'outside'} the regular session",
    )
    if signal.entry_deadline is not None:
        checks.add(
            "entry_deadline",
            now < signal.entry_deadline,
            f"entry deadline {signal.entry_deadline.astimezone(calendar.NEW_YORK):%H:%M:%S} New York,"
            f" now {local:%H:%M:%S}",
        )
    # Same-day contracts stop at the 0DTE cut-off, except the MOC strategy's: it exists to act in the closing window,
    # and its own deadlines (the signal's and the platform's, both checked here) bound it instead.
    if signal.expiry == today and signal.strategy != Strategy.MOC and session is not None:
        cutoff = _session_time(session=session, wall=limits.zero_dte_entry_cutoff)
        checks.add(
            "zero_dte_cutoff",
            now < cutoff,
            f"0DTE entries stop at {cutoff.astimezone(calendar.NEW_YORK):%H:%M} New York, now {local:%H:%M:%S}",
        )
    if signal.strategy == Strategy.MOC and session is not None:
        deadline = _session_time(session=session, wall=limits.moc_entry_deadline)
        checks.add(
            "moc_deadline",
            now < deadline,
            f"MOC entries stop at {deadline.astimezone(calendar.NEW_YORK):%H:%M} New York"
            f" ({limits.moc_entry_deadline:%H:%M} on a 16:00 close), now {local:%H:%M:%S}",
        )
    checks.add(
        "contract_not_expired",
        signal.expiry >= today,
        f"expiry {signal.expiry}, today {today}",
    )
    checks.add(
        "time_exit_ahead",
        now < signal.time_exit_at,
        f"time exit {signal.time_exit_at.astimezone(calendar.NEW_YORK):%Y-%m-%d %H:%M} New York",
    )


def _session_time(*, session: calendar.MarketSession, wall: time) -> datetime:
    """A New York wall time of the session's day that keeps its distance from the close on an early close
    (15:00 -> 12:00 on a 13:00 close)."""
    at = datetime.combine(session.day, wall, tzinfo=calendar.NEW_YORK)
    regular_close = datetime.combine(session.day, REGULAR_CLOSE, tzinfo=calendar.NEW_YORK)
    return min(at, session.close - (regular_close - at))


def _position_checks(*, checks: _Checks, signal: Signal, limits: RiskLimits) -> None:
    # Approved signals whose order has not filled yet hold their slot too.
    in_flight = RiskDecision.objects.filter(approved=True, signal__status=Signal.Status.APPROVED).exclude(signal=signal)
    held = open_trades()
    total = held.count() + in_flight.count()
    per_ticker = held.filter(ticker=signal.ticker).count() + in_flight.filter(signal__ticker=signal.ticker).count()
    per_strategy = (
        held.filter(strategy=signal.strategy).count() + in_flight.filter(signal__strategy=signal.strategy).count()
    )
    checks.add(
        "max_open_positions",
        total < limits.max_open_positions,
        f"{total} open or pending of at most {limits.max_open_positions}",
    )
    checks.add(
        "max_positions_per_underlying",
        per_ticker < limits.max_positions_per_underlying,
        f"{per_ticker} on {signal.ticker} of at most {limits.max_positions_per_underlying}",
    )
    checks.add(
        "max_positions_per_strategy",
        per_strategy < limits.max_positions_per_strategy,
        f"{per_strategy} in {signal.strategy} of at most {limits.max_positions_per_strategy}",
    )


def _size(*, checks: _Checks, signal: Signal, limits: RiskLimits, account: AccountView) -> tuple[int, Decimal]:
    """Contracts = floor(premium budget / (price x 100)), capped by the per-order maximum, the signal's hint, the
    buying power (less the reserve it must keep) and the leverage room.  The price is the most the entry may pay: the
    signal's limit plus the tolerance.  Each cap is a check; only the one that takes the size below 1 fails."""
    price = (signal.limit_price * (1 + limits.entry_price_tolerance)).quantize(CENT, rounding=ROUND_CEILING)
    if price <= 0:
        checks.add("limit_price", False, f"limit price {signal.limit_price} is not positive")
        return 0, price
    per_contract = price * CONTRACT_MULTIPLIER
    budget = (limits.max_premium_share * account.net_liq).quantize(CENT, rounding=ROUND_FLOOR)
    by_budget = max(int(budget // per_contract), 0)
    quantity = min(by_budget, limits.max_contracts_per_order, signal.quantity_hint)
    checks.add(
        "premium_cap",
        quantity >= 1,
        f"budget {budget} ({limits.max_premium_share * 100:.2f}% of net liq {account.net_liq:.2f},"
        f" {account.net_liq_source}) buys {by_budget} at {per_contract} a contract;"
        f" per-order max {limits.max_contracts_per_order}, signal asks {signal.quantity_hint} -> {quantity}",
    )

    cost = per_contract + commission_per_contract()
    reserve = (limits.min_buying_power_share * account.net_liq).quantize(CENT, rounding=ROUND_CEILING)
    affordable = max(int((account.buying_power - reserve) // cost), 0)
    sized = min(quantity, affordable)
    kept = (
        f" keeping {reserve:.2f} ({limits.min_buying_power_share * 100:.2f}% of net liq) untouched" if reserve else ""
    )
    checks.add(
        "buying_power",
        sized >= 1 or quantity < 1,
        f"buying power {account.buying_power:.2f} ({account.buying_power_source}){kept} pays for {affordable}"
        f" at {cost} (premium and commission)"
        + (f"; sized down from {quantity} to {sized}" if sized < quantity else ""),
    )
    quantity = sized

    pending = _pending_premium(signal=signal)
    held = account.positions_value + pending
    room = limits.max_leverage * account.net_liq - held
    by_leverage = max(int(room // per_contract), 0) if account.net_liq > 0 else 0
    sized = min(quantity, by_leverage)
    after = held + per_contract * sized
    ratio = f"{after / account.net_liq:.4f}" if account.net_liq > 0 else "unbounded (net liq not positive)"
    checks.add(
        "max_leverage",
        sized >= 1 or quantity < 1,
        f"gross {held:.2f} (open positions {account.positions_value:.2f} + pending entries {pending:.2f})"
        f" + new premium {per_contract * sized:.2f} = {after:.2f}, {ratio} x net liq {account.net_liq:.2f}"
        f" of at most {limits.max_leverage}; room for {by_leverage} at {per_contract}"
        + (f"; sized down from {quantity} to {sized}" if sized < quantity else ""),
    )
    return sized, price


def _pending_premium(*, signal: Signal) -> Decimal:
    """Premium of approved entries that are not positions yet (their order has not filled)."""
    rows = (
        RiskDecision.objects.filter(approved=True, signal__status=Signal.Status.APPROVED)
        .exclude(signal=signal)
        .values_list("quantity", "limit_price")
    )
    return sum((quantity * limit * CONTRACT_MULTIPLIER for quantity, limit in rows), ZERO)


def _greek_checks(*, checks: _Checks, signal: Signal, limits: RiskLimits, quantity: int, now: datetime) -> None:
    """Portfolio delta and gamma after the trade (held + pending + ``quantity`` new contracts), share equivalents."""
    greeks = portfolio_greeks(signal=signal, contracts=quantity, now=now)
    low, high = greeks.delta_range
    delta = f"{low:+.2f}" if low == high else f"between {low:+.2f} and {high:+.2f} (worst |{greeks.delta_worst:.2f}|)"
    new = "" if quantity >= 1 else " (no new contracts: the size is 0 above)"
    checks.add(
        "max_portfolio_delta",
        greeks.delta_worst <= limits.max_portfolio_delta,
        f"portfolio delta after the trade {delta} shares of at most {limits.max_portfolio_delta}{new}:"
        f" {greeks.describe()}",
    )
    unknown = greeks.gamma_unknown
    gamma_ok = not unknown and abs(greeks.gamma_total) <= limits.max_portfolio_gamma
    unbounded = f"; cannot bound the gamma of {', '.join(e.option_symbol for e in unknown)}" if unknown else ""
    checks.add(
        "max_portfolio_gamma",
        gamma_ok,
        f"portfolio gamma after the trade {greeks.gamma_total:+.2f} shares per $1 of at most"
        f" {limits.max_portfolio_gamma}{unbounded}{new}",
    )


def _publish_decision(*, decision: RiskDecision, signal_id: str, account: dict[str, str]) -> None:
    client = store.get_redis()
    summary = {
        "decision_id": decision.pk,
        "signal_id": signal_id,
        "approved": decision.approved,
        "quantity": decision.quantity,
        "limit_price": decision.limit_price,
        "reason": decision.reason,
        "decided_at": decision.decided_at.isoformat(),
    }
    recent = {key: summary[key] for key in ("decision_id", "signal_id", "approved", "quantity", "reason", "decided_at")}
    day = calendar.market_day(decision.decided_at).isoformat()
    pipe = client.pipeline(transaction=True)
    pipe.set(LAST_DECISION_KEY, dumps(summary).decode())
    pipe.lpush(DECISIONS_KEY, dumps(recent).decode())
    pipe.ltrim(DECISIONS_KEY, 0, DECISIONS_CAP - 1)
    pipe.hset(ACCOUNT_KEY, mapping=cast(store.HashMapping, {**account, "updated_at": decision.decided_at.isoformat()}))
    pipe.hincrby(DAY_STATS_KEY.format(day), "approved" if decision.approved else "rejected", 1)
    pipe.execute()


# --- operator overrides -----------------------------------------------------------------------------------------------
class SignalNotPending(ValueError):
    """An override of a signal that is no longer pending (already decided, active or closed)."""


def _pending_signal(signal_id: str) -> Signal:
    signal = Signal.objects.filter(signal_id=signal_id).first()
    if signal is None:
        raise Signal.DoesNotExist(f"no signal {signal_id!r}")
    if signal.status != Signal.Status.PENDING or RiskDecision.objects.filter(signal=signal).exists():
        raise SignalNotPending(f"signal {signal_id} is {signal.status}, not pending: it was decided already")
    return signal


def signal_override_approve(*, signal_id: str, by: str, reason: str) -> RiskDecision:
    """An operator sends a pending signal to risk review now (``signal_review``) instead of waiting for its queued
    ``risk.review``.  The override never bypasses risk: the kill switch, the clock and every limit still decide, and
    the decision may well be a rejection.  Who asked and why is an audit entry next to the decision.  Refused with
    ``SignalNotPending`` when the signal was already decided."""
    _pending_signal(signal_id)
    decision = signal_review(signal_id=signal_id)
    audit_record(
        actor=by,
        action="risk.signal.override_approve",
        target=signal_id,
        detail={"reason": reason, "decision_id": decision.pk, "approved": decision.approved},
    )
    return decision


def signal_override_reject(*, signal_id: str, by: str, reason: str) -> RiskDecision:
    """An operator rejects a pending signal: its one decision (``approved=False``, reason ``rejected by <by>:
    <reason>``, with the account as it stood) and status ``rejected``, so the queued review finds it decided and
    nothing is ever sent to the broker.  Serialized with reviews on the active limits row, like ``signal_review``;
    refused with ``SignalNotPending`` when the signal was already decided."""
    _pending_signal(signal_id)
    limits = limits_active()
    text = f"rejected by {by}: {reason}" if reason else f"rejected by {by}"
    try:
        with transaction.atomic():
            limits = RiskLimits.objects.select_for_update().get(pk=limits.pk)
            signal = Signal.objects.select_for_update().get(signal_id=signal_id)
            if signal.status != Signal.Status.PENDING or RiskDecision.objects.filter(signal=signal).exists():
                raise SignalNotPending(f"signal {signal_id} is {signal.status}, not pending: it was decided already")
            snapshot = account_view().snapshot()
            decision = RiskDecision.objects.create(
                signal=signal,
                limits=limits,
                approved=False,
                quantity=0,
                limit_price=signal.limit_price,
                checks=[{"check": "operator", "passed": False, "detail": text}],
                reason=text,
                account=snapshot,
                decided_at=clock.now(),
            )
            Signal.objects.filter(pk=signal.pk, status=Signal.Status.PENDING).update(status=Signal.Status.REJECTED)
            audit_record(
                actor=by,
                action="risk.signal.override_reject",
                target=signal_id,
                detail={"reason": reason, "decision_id": decision.pk},
            )
            transaction.on_commit(
                lambda: _publish_decision(decision=decision, signal_id=signal.signal_id, account=snapshot)
            )
    except IntegrityError as exc:
        # A review of the same signal committed between our check and our insert: its decision stands.
        raise SignalNotPending(f"signal {signal_id} was decided by a review meanwhile") from exc
    logger.warning("signal %s: %s", signal_id, text)
    return decision


# --- retention --------------------------------------------------------------------------------------------------------
def audit_purge(*, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Delete the decisions (``risk_audit``) decided more than two years (730 days) before the platform clock, in
    batches of ``batch_size`` (each its own short transaction), and return how many were deleted.

    Orders outlive the decisions they came from (their reference is set to NULL).  Deleting what is already gone
    deletes nothing, so a second run, or two at once, only finds less to do.
    """
    cutoff = clock.now() - AUDIT_RETENTION
    deleted = 0
    while True:
        batch = list(
            RiskDecision.objects.filter(decided_at__lt=cutoff)
            .order_by("decided_at", "id")
            .values_list("pk", flat=True)[:batch_size]
        )
        if not batch:
            break
        with transaction.atomic():
            _total, per_model = RiskDecision.objects.filter(pk__in=batch).delete()
        deleted += per_model.get(RiskDecision._meta.label, 0)
    if deleted:
        logger.info("risk_audit: purged %d decision(s) decided before %s", deleted, cutoff.isoformat())
    return deleted
