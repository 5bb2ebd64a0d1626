"""``manage.py bench orders``: how long an approved decision takes to become a booked fill, per broker path.

Three paths over the same orders, measured in one run (these machines are noisy: compare within a run):
- **paper**: the paper broker in this process (the baseline);
- **ib direct**: this process owns the IB connection (as a replay does) and trades with a TWS simulator on loopback
  through the real ibapi client;
- **ib listener**: the production path: the order is a ``BrokerCommand`` that a ``manage.py ib_listener`` process
  carries out at the simulator; the fill comes back through the listener and is booked in the database.

Each sample is ``order_submit(decision_id)`` until the order is filled in the database.  Needs PostgreSQL and Redis;
wipes both (``--scratch``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.test import override_settings

from apps.core import calendar, clock, occ, store
from apps.core.bench import BenchError, check_preconditions, database_url, describe, processes_stop, wipe_state
from apps.execution import services
from apps.execution.models import Order, OrderStatus
from apps.risk.models import RiskDecision
from apps.risk.services import limits_active
from apps.signals.models import Signal

PATHS = ("paper", "ib_direct", "ib_listener")
BENCH_CLIENT_ID = 91
QUOTE = {"bid": "1.10", "ask": "1.20"}


def _approved(index: int, *, path: str) -> tuple[RiskDecision, str]:
    """An approved one-contract decision on its own contract, and the contract's OCC symbol."""
    now = clock.now()
    expiry = calendar.market_day(now)
    strike = Decimal(500 + index)
    symbol = occ.build("SPY", expiry, "C", strike)
    signal = Signal.objects.create(
        signal_id=f"bench-{path}-{index}"[:32],
        strategy="zero_dte",
        bucket="0dte",
        ticker="SPY",
        direction=Signal.Direction.BULLISH,
        option_symbol=symbol,
        expiry=expiry,
        right="C",
        strike=strike,
        limit_price=Decimal("1.20"),
        quantity_hint=1,
        profit_target_pct=Decimal("0.5"),
        stop_loss_pct=Decimal("0.3"),
        time_exit_at=now + timedelta(hours=1),
        rule="bench",
        rationale="bench orders: an approved decision to time",
        confidence=Decimal("0.5"),
        status=Signal.Status.APPROVED,
        as_of=now,
        created_at=now,
    )
    decision = RiskDecision.objects.create(
        signal=signal,
        limits=limits_active(),
        approved=True,
        quantity=1,
        limit_price=Decimal("1.26"),
        checks=[],
        reason="bench",
        account={},
        decided_at=now,
    )
    return decision, symbol


def _quote(symbol: str, simulator: Any | None) -> None:
    mapping: store.HashMapping = {"bid": QUOTE["bid"], "ask": QUOTE["ask"], "ts": clock.now().isoformat()}
    store.get_redis().hset(f"latest:uw:quote:{symbol}", mapping=mapping)
    if simulator is not None:
        simulator.set_quote(symbol, Decimal(QUOTE["bid"]), Decimal(QUOTE["ask"]))


def _sample(decision: RiskDecision, *, timeout_s: float) -> float:
    started = time.perf_counter()
    services.order_submit(decision_id=decision.pk)
    deadline = time.monotonic() + timeout_s
    while True:
        status = Order.objects.filter(decision=decision).values_list("status", flat=True).first()
        if status == OrderStatus.FILLED:
            return (time.perf_counter() - started) * 1000
        if status in (OrderStatus.REJECTED, OrderStatus.CANCELLED) or time.monotonic() > deadline:
            raise BenchError(f"bench order of {decision.signal_id} ended {status} (not filled)")
        time.sleep(0.002)


def _run(path: str, *, orders: int, simulator: Any | None, progress: Callable[[int], None] | None) -> list[float]:
    samples = []
    for index in range(orders):
        decision, symbol = _approved(index, path=path)
        _quote(symbol, simulator)
        samples.append(_sample(decision, timeout_s=30.0))
        if progress is not None:
            progress(1)
    return samples


def bench_orders(
    *, orders: int, scratch: bool, log_dir: Path, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Time ``orders`` orders on each path; medians and p99 per path and their ratios to the paper broker."""
    from apps.execution.brokers.ib import process_gateway, process_gateway_close
    from apps.execution.ib.simulator import TWSSimulator

    check_preconditions(scratch=scratch)
    results: dict[str, list[float]] = {}
    wipe_state()
    with override_settings(BROKER="paper"):
        results["paper"] = _run("paper", orders=orders, simulator=None, progress=progress)

    wipe_state()
    with TWSSimulator(port=0) as simulator:
        direct = {"IB_HOST": "127.0.0.1", "IB_PORT": simulator.port, "IB_CLIENT_ID": BENCH_CLIENT_ID}
        with override_settings(BROKER="ib", CELERY_TASK_ALWAYS_EAGER=True, **direct):
            try:
                if not process_gateway().connected:
                    raise BenchError("the IB adapter could not connect to the TWS simulator")
                results["ib_direct"] = _run("ib_direct", orders=orders, simulator=simulator, progress=progress)
            finally:
                process_gateway_close()

    wipe_state()
    with TWSSimulator(port=0) as simulator:
        env = dict(
            os.environ,
            DATABASE_URL=database_url(),
            REDIS_URL=str(settings.REDIS_URL),
            TP_TASKS_EAGER="1",  # the listener books TWS's reports itself
            BROKER="ib",
            IB_HOST="127.0.0.1",
            IB_PORT=str(simulator.port),
            IB_CLIENT_ID=str(BENCH_CLIENT_ID + 1),
            LOG_LEVEL="warning",
        )
        log_dir.mkdir(parents=True, exist_ok=True)
        with (log_dir / "bench-orders-ib_listener.log").open("wb") as log:
            listener = subprocess.Popen(
                [sys.executable, "manage.py", "ib_listener"],
                cwd=settings.BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                deadline = time.monotonic() + 30
                while simulator.connections() < 1:
                    if time.monotonic() > deadline or listener.poll() is not None:
                        raise BenchError(f"ib_listener did not connect (see {log.name})")
                    time.sleep(0.05)
                time.sleep(1.0)  # let its first reconciliation pass
                with override_settings(BROKER="ib", CELERY_TASK_ALWAYS_EAGER=False, IB_ACK_TIMEOUT_SECONDS=10.0):
                    results["ib_listener"] = _run("ib_listener", orders=orders, simulator=simulator, progress=progress)
            finally:
                processes_stop([listener])
    figures = {path: describe(samples) for path, samples in results.items()}
    base = figures["paper"]
    return {
        "orders_per_path": orders,
        "decision_to_booked_fill_ms": figures,
        "ratio_to_paper": {
            path: {q: round(float(figures[path][q]) / float(base[q]), 2) for q in ("p50", "p99")} for path in PATHS[1:]
        },
    }
