"""Signal engine writes: strategy parameter versions, and turning analytics snapshots into signals.

``signal_evaluate`` runs the bucket's strategy on one snapshot.  A signal's id is derived from the strategy, its
version, the ticker, the contract and the evidence (flow alert, option trade and GEX ids), so the same evidence
evaluated twice is one row; a per strategy-and-ticker cooldown (measured in market time, ``as_of``) keeps one flow
episode from firing every minute.  New signals go into ``signals:pending`` and, after commit, to ``risk.review``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery import current_app
from django.db import IntegrityError, transaction
from django.db.models import Max

from apps.analytics.models import AnalyticsSnapshot
from apps.core import clock
from apps.core.events import deterministic_id, dumps
from apps.core.money import to_decimal
from apps.core.store import get_redis
from apps.signals.models import Signal, StrategyConfig
from apps.signals.strategies import BY_BUCKET, REGISTRY, Proposal, Quiet

logger = logging.getLogger(__name__)

PENDING_KEY = "signals:pending"


class UnknownParameter(ValueError):
    """A strategy parameter the strategy does not know (a typo would otherwise leave the default in force)."""


@dataclass
class Evaluation:
    """The outcome of one evaluation: the signal (new or already there), or the reason the strategy was quiet."""

    signal: Signal | None
    created: bool
    reason: str = ""


def strategy_config_current(*, strategy: str) -> StrategyConfig:
    """The newest parameter version of ``strategy``; version 1 with the strategy's defaults is created on first use."""
    if strategy not in REGISTRY:
        raise ValueError(f"unknown strategy {strategy!r}")
    config = StrategyConfig.objects.filter(strategy=strategy).order_by("-version").first()
    if config is not None:
        return config
    try:
        with transaction.atomic():
            return StrategyConfig.objects.create(
                strategy=strategy,
                version=1,
                parameters=REGISTRY[strategy].parameters(),
                enabled=True,
                note="defaults",
                created_at=clock.now(),
            )
    except IntegrityError:
        # Another worker created version 1 at the same moment: use theirs.
        return StrategyConfig.objects.get(strategy=strategy, version=1)


def strategy_config_revise(
    *, strategy: str, parameters: dict[str, Any], enabled: bool = True, note: str = ""
) -> StrategyConfig:
    """Store ``parameters`` as the next version of ``strategy`` (versions are never edited in place).

    Keys the strategy does not know are refused, so a typo cannot silently leave a default in force.
    """
    known = REGISTRY[strategy].parameters()
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise UnknownParameter(f"{strategy} has no parameter(s) {', '.join(unknown)}")
    unknown_weights = sorted(set(parameters.get("weights", {})) - set(known["weights"]))
    if unknown_weights:
        raise UnknownParameter(f"{strategy} has no score weight(s) {', '.join(unknown_weights)}")
    with transaction.atomic():
        latest = (
            StrategyConfig.objects.select_for_update()
            .filter(strategy=strategy)
            .aggregate(version=Max("version"))["version"]
            or 0
        )
        return StrategyConfig.objects.create(
            strategy=strategy,
            version=latest + 1,
            parameters=REGISTRY[strategy].parameters(parameters),
            enabled=enabled,
            note=note,
            created_at=clock.now(),
        )


def _signal_id(strategy: str, version: int, ticker: str, proposal: Proposal) -> str:
    evidence = proposal.evidence
    return deterministic_id(
        strategy,
        version,
        ticker,
        proposal.contract["option_symbol"],
        *sorted(evidence.get("flow_alerts", [])),
        *sorted(evidence.get("option_trades", [])),
        *sorted(str(g) for g in evidence.get("gex", [])),
    )


def _in_cooldown(*, strategy: str, ticker: str, snapshot: AnalyticsSnapshot, minutes: float) -> bool:
    window = timedelta(minutes=minutes)
    return Signal.objects.filter(
        strategy=strategy,
        ticker=ticker,
        as_of__gt=snapshot.as_of - window,
        as_of__lt=snapshot.as_of + window,
    ).exists()


def _pending_payload(signal: Signal) -> str:
    return dumps(
        {
            "signal_id": signal.signal_id,
            "strategy": signal.strategy,
            "strategy_version": signal.strategy_version,
            "ticker": signal.ticker,
            "direction": signal.direction,
            "option_symbol": signal.option_symbol,
            "limit_price": signal.limit_price,
            "quantity_hint": signal.quantity_hint,
            "confidence": signal.confidence,
            "rule": signal.rule,
            "as_of": signal.as_of.isoformat(),
            "entry_deadline": signal.entry_deadline.isoformat() if signal.entry_deadline else None,
            "time_exit_at": signal.time_exit_at.isoformat(),
        }
    ).decode()


def _send_risk_review(signal_id: str) -> None:
    # The risk stage is built separately; send by name only once its task is registered in this process.
    task = current_app.tasks.get("risk.review")
    if task is not None:
        task.apply_async(args=(signal_id,))


def signal_evaluate(*, snapshot_id: int) -> Evaluation:
    """Run the snapshot's bucket strategy at the snapshot's ``as_of`` and store what it proposes.

    Guarantees: at most one row per signal id (same evidence -> same id); no signal inside the cooldown of an
    earlier one for the same strategy and ticker; ``signals:pending`` is written and ``risk.review`` enqueued only
    for a signal this call created, after its row commits.
    """
    snapshot = AnalyticsSnapshot.objects.get(pk=snapshot_id)
    strategy = BY_BUCKET[snapshot.bucket]
    config = strategy_config_current(strategy=strategy.name)
    if not config.enabled:
        return Evaluation(signal=None, created=False, reason=f"{strategy.name} v{config.version} is disabled")
    params = strategy.parameters(config.parameters)
    outcome = strategy.evaluate(
        features=snapshot.features, params=params, snapshot_confidence=snapshot.confidence, as_of=snapshot.as_of
    )
    if isinstance(outcome, Quiet):
        return Evaluation(signal=None, created=False, reason=outcome.reason)

    signal_id = _signal_id(strategy.name, config.version, snapshot.ticker, outcome)
    existing = Signal.objects.filter(signal_id=signal_id).first()
    if existing is not None:
        return Evaluation(signal=existing, created=False, reason="same evidence already signalled")
    if _in_cooldown(
        strategy=strategy.name, ticker=snapshot.ticker, snapshot=snapshot, minutes=params["cooldown_minutes"]
    ):
        return Evaluation(signal=None, created=False, reason=f"cooldown ({params['cooldown_minutes']} min)")

    contract = outcome.contract
    with transaction.atomic():
        signal, created = Signal.objects.get_or_create(
            signal_id=signal_id,
            defaults={
                "strategy": strategy.name,
                "bucket": snapshot.bucket,
                "strategy_version": config.version,
                "ticker": snapshot.ticker,
                "direction": outcome.direction,
                "option_symbol": contract["option_symbol"],
                "expiry": contract["expiry"],
                "right": contract["right"],
                "strike": to_decimal(contract["strike"]),
                "limit_price": to_decimal(contract["ask"]),
                "quantity_hint": outcome.quantity_hint,
                "profit_target_pct": outcome.profit_target_pct,
                "stop_loss_pct": outcome.stop_loss_pct,
                "time_exit_at": outcome.time_exit_at,
                "entry_deadline": outcome.entry_deadline,
                "rule": outcome.rule,
                "rationale": outcome.rationale,
                "features": {**outcome.features_used, "score": outcome.score, "snapshot_id": snapshot.pk},
                "contributions": outcome.contributions,
                "evidence": outcome.evidence,
                "confidence": outcome.confidence,
                "as_of": snapshot.as_of,
                "created_at": clock.now(),
            },
        )
        if created:
            signal.refresh_from_db()
            payload = _pending_payload(signal)
            transaction.on_commit(lambda: get_redis().hset(PENDING_KEY, signal.signal_id, payload))
            transaction.on_commit(lambda: _send_risk_review(signal.signal_id))
            logger.info("signal %s %s %s", signal.signal_id, signal.rule, signal.option_symbol)
    return Evaluation(signal=signal, created=created, reason="" if created else "same evidence already signalled")
