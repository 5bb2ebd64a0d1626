"""What ``bench pipeline`` changes in its scratch database so that every frame that could lead to an order does.

A benchmark of latency needs many orders, not a realistic trading day: strategy cooldowns are set to zero and the
position limits opened wide, through the same services an operator would use, and recorded as new versions.
"""

from __future__ import annotations

from decimal import Decimal

BENCH_ENV = {
    # Room in the paper account for every order the bench produces. Analytics keeps its real debounce: a new flow
    # alert is what triggers a recomputation, which is the path from a frame to an order that the bench measures.
    "ACCOUNT_STARTING_CASH": "100000000",
}


def relax_limits_for_bench() -> None:
    from apps.risk.services import limits_update
    from apps.signals.services import strategy_config_revise
    from apps.signals.strategies import REGISTRY

    for name in REGISTRY:
        strategy_config_revise(strategy=name, parameters={"cooldown_minutes": 0}, note="bench pipeline: no cooldown")
    limits_update(
        by="bench",
        note="bench pipeline: limits opened so every signal can reach the broker",
        max_positions_per_underlying=100000,
        max_positions_per_strategy=100000,
        max_open_positions=100000,
        daily_loss_limit_share=Decimal("1"),
    )
