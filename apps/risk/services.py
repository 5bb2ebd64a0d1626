"""Writes of the risk manager: decisions on signals, the kill switch, versions of the limits.

Guarantees:
- one decision per signal (unique), so reviewing a signal again returns the first verdict;
- reviews are serialized on the active limits row, so two signals judged at once cannot both take the last slot;
- every decision records each check with its outcome and the account it saw, in words;
- the next stage (``execution.submit_order``) and the ``risk:*`` keys are written only after the decision commits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, cast

from django.db import IntegrityError, transaction
from django.db.models import Max

from apps.core import calendar, clock, store
from apps.core.events import dumps
from apps.core.money import CENT, CONTRACT_MULTIPLIER
from apps.core.pipeline import enqueue_after_commit
from apps.execution.brokers.paper import commission_per_contract
from apps.execution.selectors import AccountState, account_state, open_trades
from apps.risk.models import KillSwitchEvent, RiskDecision, RiskLimits
from apps.risk.selectors import KILL_SWITCH_KEY, kill_switch_is_on
from apps.signals.models import Signal, Strategy

logger = logging.getLogger(__name__)

LAST_DECISION_KEY = "risk:last_decision"
ACCOUNT_KEY = "risk:account"
LIMITS_KEY = "risk:limits"
DAY_STATS_KEY = "risk:decisions:{}"  # hash approved/rejected counts per New York day
RISK_ACTOR = "risk"
EDITABLE_LIMITS = (
    "max_premium_share",
    "max_contracts_per_order",
    "max_positions_per_underlying",
    "max_positions_per_strategy",
    "max_open_positions",
    "daily_loss_limit_share",
    "zero_dte_entry_cutoff",
    "entry_price_tolerance",
)


# --- the kill switch --------------------------------------------------------------------------------------------------
def kill_switch_engage(*, by: str, reason: str) -> KillSwitchEvent:
    """Turn the kill switch on: from now every signal is rejected.  Redis is set at once (not after commit): erring
    towards "on" is the safe side, and the history row records who and why."""
    store.get_redis().set(KILL_SWITCH_KEY, "1")
    event = KillSwitchEvent.objects.create(engaged=True, by=by, reason=reason, at=clock.now())
    logger.warning("kill switch engaged by %s: %s", by, reason)
    return event


def kill_switch_release(*, by: str, reason: str) -> KillSwitchEvent:
    """Turn the kill switch off; signals are judged on their merits again."""
    event = KillSwitchEvent.objects.create(engaged=False, by=by, reason=reason, at=clock.now())
    transaction.on_commit(lambda: store.get_redis().set(KILL_SWITCH_KEY, "0"))
    logger.warning("kill switch released by %s: %s", by, reason)
    return event


# --- the limits -------------------------------------------------------------------------------------------------------
def limits_active() -> RiskLimits:
    """The limits in force; the first call on a fresh database creates version 1 with the defaults."""
    limits = RiskLimits.objects.filter(active=True).first()
    if limits is not None:
        return limits
    try:
        with transaction.atomic():
            return RiskLimits.objects.create(version=1, created_at=clock.now(), created_by=RISK_ACTOR, note="defaults")
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


def _publish_limits(limits: RiskLimits) -> None:
    mapping = {name: str(getattr(limits, name)) for name in EDITABLE_LIMITS}
    mapping["version"] = str(limits.version)
    store.get_redis().hset(LIMITS_KEY, mapping=cast(store.HashMapping, mapping))


# --- the daily loss limit ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DailyLoss:
    day_pnl: Decimal
    limit: Decimal
    breached: bool

    @property
    def detail(self) -> str:
        return f"today's PnL {self.day_pnl:.2f} (realized + open) against a loss limit of {self.limit:.2f}"


def _daily_loss(*, account: AccountState, limits: RiskLimits) -> DailyLoss:
    day_pnl = account.realized_pnl_today + account.open_pnl
    # The account's value at the start of the day, approximately: today's PnL taken back out of net liquidation.
    start_of_day = account.net_liq - day_pnl
    limit = (limits.daily_loss_limit_share * start_of_day).quantize(CENT)
    return DailyLoss(day_pnl=day_pnl, limit=limit, breached=day_pnl <= -limit)


def daily_loss_guard() -> bool:
    """Engage the kill switch when today's loss reaches the daily loss limit.  Returns whether the switch is on."""
    if kill_switch_is_on():
        return True
    loss = _daily_loss(account=account_state(), limits=limits_active())
    if loss.breached:
        kill_switch_engage(by=RISK_ACTOR, reason=f"daily loss limit reached: {loss.detail}")
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
    account = account_state()
    checks = _Checks(items=[])

    loss = _daily_loss(account=account, limits=limits)
    checks.add("daily_loss_limit", not loss.breached, loss.detail)
    if loss.breached and not kill_switch_is_on():
        kill_switch_engage(by=RISK_ACTOR, reason=f"daily loss limit reached: {loss.detail}")
    switch_on = kill_switch_is_on()
    checks.add("kill_switch", not switch_on, "the kill switch is ON: every signal is rejected" if switch_on else "off")
    checks.add(
        "signal_pending",
        signal.status == Signal.Status.PENDING,
        f"signal status is {signal.status}",
    )
    _time_checks(checks=checks, signal=signal, limits=limits, now=now)
    _position_checks(checks=checks, signal=signal, limits=limits)
    quantity, price = _size(checks=checks, signal=signal, limits=limits, account=account)

    approved = not checks.failed
    if approved:
        reason = (
            f"approved {quantity} x {signal.option_symbol} at up to {price} per share"
            f" (premium {price * quantity * CONTRACT_MULTIPLIER:.2f}): all {len(checks.items)} checks passed"
        )
    else:
        quantity = 0
        reason = "rejected: " + "; ".join(f"{c['check']}: {c['detail']}" for c in checks.failed)
    snapshot = {
        "net_liq": str(account.net_liq),
        "cash": str(account.cash),
        "buying_power": str(account.buying_power),
        "open_pnl": str(account.open_pnl),
        "realized_pnl_today": str(account.realized_pnl_today),
    }
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
    # and its hard entry deadline (checked above) bounds it instead.
    if signal.expiry == today and signal.strategy != Strategy.MOC and session is not None:
        cutoff = datetime.combine(today, limits.zero_dte_entry_cutoff, tzinfo=calendar.NEW_YORK)
        # On an early close the cut-off keeps its distance from the close (15:00 -> 12:00 on a 13:00 close).
        regular_close = datetime.combine(today, datetime.min.time(), tzinfo=calendar.NEW_YORK).replace(hour=16)
        cutoff = min(cutoff, session.close - (regular_close - cutoff))
        checks.add(
            "zero_dte_cutoff",
            now < cutoff,
            f"0DTE entries stop at {cutoff.astimezone(calendar.NEW_YORK):%H:%M} New York, now {local:%H:%M:%S}",
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


def _size(*, checks: _Checks, signal: Signal, limits: RiskLimits, account: AccountState) -> tuple[int, Decimal]:
    """Contracts = floor(premium budget / (price x 100)), capped by the per-order maximum, the signal's hint and the
    buying power.  The price is the most the entry may pay: the signal's limit plus the tolerance."""
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
        f"budget {budget} ({limits.max_premium_share * 100:.2f}% of net liq {account.net_liq:.2f}) buys {by_budget}"
        f" at {per_contract} a contract; per-order max {limits.max_contracts_per_order},"
        f" signal asks {signal.quantity_hint} -> {quantity}",
    )
    cost = per_contract + commission_per_contract()
    affordable = max(int(account.buying_power // cost), 0)
    sized = min(quantity, affordable)
    checks.add(
        "buying_power",
        sized >= 1 or quantity < 1,
        f"buying power {account.buying_power:.2f} pays for {affordable} at {cost} (premium and commission)"
        + (f"; sized down from {quantity} to {sized}" if sized < quantity else ""),
    )
    return sized, price


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
    day = calendar.market_day(decision.decided_at).isoformat()
    pipe = client.pipeline(transaction=True)
    pipe.set(LAST_DECISION_KEY, dumps(summary).decode())
    pipe.hset(ACCOUNT_KEY, mapping=cast(store.HashMapping, {**account, "updated_at": decision.decided_at.isoformat()}))
    pipe.hincrby(DAY_STATS_KEY.format(day), "approved" if decision.approved else "rejected", 1)
    pipe.execute()
