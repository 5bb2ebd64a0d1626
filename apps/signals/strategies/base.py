"""What every strategy shares: the flow score, the contract choice and the session-relative clock times.

A strategy is a pure function of one analytics snapshot, its parameters and ``as_of``: it returns a ``Proposal``
(or ``None`` with the reason it stayed quiet), never touches the database, and so is deterministic and testable on
constructed features.  Only long options are proposed: shorts on American-style, physically settled ETF options can
be assigned early, so the engine never sells to open.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from apps.core import calendar
from apps.core.money import to_decimal

# The flow score: each feature is a lean in [-1, 1] (positive = bullish), weighted; the weights are parameters.
SCORE_FEATURES = (
    "premium_imbalance",
    "volume_imbalance",
    "sweep_pressure",
    "cluster_direction",
    "block_direction",
    "net_premium_trend",
    "vwap_alignment",
    "momentum_15m",
)

COMMON_DEFAULTS: dict[str, Any] = {
    "weights": {
        "premium_imbalance": 0.30,
        "volume_imbalance": 0.15,
        "sweep_pressure": 0.20,
        "cluster_direction": 0.10,
        "block_direction": 0.10,
        "net_premium_trend": 0.05,
        "vwap_alignment": 0.10,
        "momentum_15m": 0.0,
    },
    "min_score": 0.35,
    "min_alerts": 2,
    "min_flow_premium": 100000,
    "min_confidence": 0.4,
    "target_delta": 0.40,
    "min_delta": 0.25,
    "max_delta": 0.55,
    "max_spread_pct": 0.15,
    "min_open_interest": 100,
    "min_ask": 0.10,
    "max_quote_age_seconds": 180,
    "signal_ttl_minutes": 5,
    "cooldown_minutes": 30,
    "profit_target_pct": 0.5,
    "stop_loss_pct": 0.3,
    "size_hint": 1,
    "size_hint_high_confidence": 2,
    "high_confidence": 0.75,
}


@dataclass
class Proposal:
    """A trade a strategy wants, with everything the audit row needs."""

    direction: str
    contract: dict[str, Any]
    rule: str
    rationale: str
    score: float
    contributions: dict[str, float]
    features_used: dict[str, Any]
    confidence: Decimal
    quantity_hint: int
    profit_target_pct: Decimal
    stop_loss_pct: Decimal
    time_exit_at: datetime
    entry_deadline: datetime
    evidence: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class Quiet:
    """Why a strategy did not fire (kept for the evaluation log and the tests)."""

    reason: str


def session_time(session: calendar.MarketSession, wall: str) -> datetime:
    """A New York wall-clock time (``"15:00"``) on ``session``'s day, moved earlier by as much as an early close
    moves the close, so "15 minutes before the close" rules keep their meaning on half days."""
    hours, minutes = (int(part) for part in wall.split(":"))
    regular_close = datetime.combine(session.day, time(16, 0), tzinfo=calendar.NEW_YORK)
    shift = regular_close - session.close
    local = datetime.combine(session.day, time(hours, minutes), tzinfo=calendar.NEW_YORK)
    return local.astimezone(UTC) - max(shift, timedelta(0))


def clamp(value: float, low: float = -1.0, high: float = 1.0) -> float:
    return max(low, min(high, value))


def leans(features: dict[str, Any]) -> dict[str, float]:
    """The score's inputs, each a lean in [-1, 1] read from the snapshot."""
    sweep_weight = clamp(features.get("sweep_intensity", 0.0) / 2.0, 0.0, 1.0)
    return {
        "premium_imbalance": float(features.get("premium_imbalance", 0.0)),
        "volume_imbalance": float(features.get("volume_imbalance", 0.0)),
        "sweep_pressure": float(features.get("sweep_direction", 0.0)) * sweep_weight,
        "cluster_direction": float(features.get("cluster_direction", 0.0)),
        "block_direction": float(features.get("block_direction", 0.0)),
        "net_premium_trend": float(features.get("net_premium_trend", 0.0)),
        "vwap_alignment": clamp(float(features.get("spot_vs_vwap_pct", 0.0)) / 0.25),
        "momentum_15m": clamp(float(features.get("return_15m_pct", 0.0)) / 0.25),
    }


def flow_score(features: dict[str, Any], weights: dict[str, float]) -> tuple[float, dict[str, float]]:
    """Weighted sum of the leans, normalized by the total weight: (score in [-1, 1], feature -> contribution)."""
    inputs = leans(features)
    total = sum(abs(w) for w in weights.values()) or 1.0
    contributions = {name: round(inputs[name] * weights.get(name, 0.0) / total, 4) for name in SCORE_FEATURES}
    contributions = {name: value for name, value in contributions.items() if value}
    return round(sum(contributions.values()), 4), contributions


def flow_gate(features: dict[str, Any], params: dict[str, Any], confidence: Decimal) -> str:
    """The reason the flow is too thin to act on, or ``""`` when it is enough."""
    if features.get("alert_count", 0) < params["min_alerts"]:
        return f"only {features.get('alert_count', 0)} flow alerts (need {params['min_alerts']})"
    if to_decimal(features.get("flow_premium", "0")) < to_decimal(params["min_flow_premium"]):
        return f"flow premium {features.get('flow_premium')} below {params['min_flow_premium']}"
    if confidence < to_decimal(params["min_confidence"]):
        return f"snapshot confidence {confidence} below {params['min_confidence']}"
    return ""


def choose_contract(
    *, features: dict[str, Any], direction: str, params: dict[str, Any], as_of: datetime, expiries: set[date] | None
) -> dict[str, Any] | None:
    """The observed contract closest to the target delta with a fresh, tight quote and enough open interest.

    Calls for a bullish idea, puts for a bearish one (always bought).  Ties go to the tighter spread, then the
    symbol, so the choice is deterministic.  "Fresh" is the strategy's ``max_quote_age_seconds``, never more than the
    broker accepts to price an order (``PAPER_QUOTE_MAX_AGE_SECONDS``): a signal on a quote the broker would refuse
    is an approved trade that cannot be entered.
    """
    from apps.execution.brokers.base import quote_max_age

    right = "C" if direction == "bullish" else "P"
    max_age = min(timedelta(seconds=params["max_quote_age_seconds"]), quote_max_age())
    best: tuple[float, float, str] | None = None
    chosen = None
    for contract in features.get("contracts", []):
        if contract["right"] != right:
            continue
        if expiries is not None and date.fromisoformat(contract["expiry"]) not in expiries:
            continue
        delta = abs(float(contract["delta"]))
        if not params["min_delta"] <= delta <= params["max_delta"]:
            continue
        bid, ask = to_decimal(contract["bid"]), to_decimal(contract["ask"])
        if ask < to_decimal(params["min_ask"]) or bid <= 0 or ask < bid:
            continue
        spread = float((ask - bid) / ((ask + bid) / 2))
        if spread > params["max_spread_pct"]:
            continue
        if contract.get("open_interest", 0) < params["min_open_interest"]:
            continue
        if as_of - datetime.fromisoformat(contract["quote_ts"]) > max_age:
            continue
        key = (abs(delta - params["target_delta"]), spread, contract["option_symbol"])
        if best is None or key < best:
            best, chosen = key, contract
    return chosen


def size_hint(confidence: Decimal, params: dict[str, Any]) -> int:
    if confidence >= to_decimal(params["high_confidence"]):
        return int(params["size_hint_high_confidence"])
    return int(params["size_hint"])


def combined_confidence(score: float, snapshot_confidence: Decimal) -> Decimal:
    """Signal confidence: how decisive the flow is (|score|) tempered by how much data backs the snapshot."""
    value = 0.6 * min(1.0, abs(score)) + 0.4 * float(snapshot_confidence)
    return Decimal(repr(round(value, 4)))


def describe_leans(contributions: dict[str, float], limit: int = 3) -> str:
    """The strongest contributions in words: ``premium imbalance +0.21, sweep pressure +0.12``."""
    top = sorted(contributions.items(), key=lambda item: (-abs(item[1]), item[0]))[:limit]
    return ", ".join(f"{name.replace('_', ' ')} {value:+.2f}" for name, value in top)


FEATURES_KEPT = (
    "spot",
    "vwap",
    "spot_vs_vwap_pct",
    "realized_vol",
    "return_15m_pct",
    "opening_range",
    "net_gex",
    "gex_regime",
    "gamma_flip",
    "call_wall",
    "put_wall",
    "dist_call_wall_pct",
    "dist_put_wall_pct",
    "alert_count",
    "trade_count",
    "flow_premium",
    "net_premium",
    "premium_imbalance",
    "volume_imbalance",
    "sweep_count",
    "sweep_intensity",
    "sweep_direction",
    "block_count",
    "block_direction",
    "cluster_count",
    "cluster_direction",
    "top_cluster",
    "opening_share",
    "net_premium_trend",
    "minutes_left",
    "market_time",
)


def features_used(features: dict[str, Any], contract: dict[str, Any]) -> dict[str, Any]:
    """The snapshot features a signal was decided on (without the candidate list), plus the chosen contract."""
    kept = {name: features[name] for name in FEATURES_KEPT if name in features}
    kept["contract"] = contract
    return kept


class FlowStrategy(ABC):
    """A flow-driven long-options strategy; subclasses set the bucket, the windows, the exits and extra gates."""

    name: str = ""
    bucket: str = ""
    title: str = ""
    defaults: dict[str, Any] = {}

    def parameters(self, stored: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with the stored version's parameters (weights merged key by key)."""
        stored = stored or {}
        params = {**COMMON_DEFAULTS, **self.defaults, **stored}
        params["weights"] = {
            **COMMON_DEFAULTS["weights"],
            **self.defaults.get("weights", {}),
            **stored.get("weights", {}),
        }
        return params

    def entry_window(self, session: calendar.MarketSession, params: dict[str, Any]) -> tuple[datetime, datetime]:
        return session_time(session, params["entry_start"]), session_time(session, params["entry_cutoff"])

    def expiries(self, session: calendar.MarketSession, features: dict[str, Any]) -> set[date] | None:
        """The expiries a contract may have (``None``: whatever the bucket's snapshot offers)."""
        return None

    @abstractmethod
    def time_exit(
        self, session: calendar.MarketSession, params: dict[str, Any], contract: dict[str, Any], as_of: datetime
    ) -> datetime:
        """When the position must be closed at the latest (aware UTC); every strategy defines its own."""

    def extra_gate(self, features: dict[str, Any], params: dict[str, Any], direction: str, as_of: datetime) -> str:
        """A strategy-specific reason to stay quiet, or ``""``."""
        return ""

    def exit_note(self) -> str:
        return ""

    def evaluate(
        self, *, features: dict[str, Any], params: dict[str, Any], snapshot_confidence: Decimal, as_of: datetime
    ) -> Proposal | Quiet:
        session = calendar.session_for(calendar.market_day(as_of))
        if session is None:
            return Quiet("no session today")
        start, cutoff = self.entry_window(session, params)
        if as_of < start:
            return Quiet(f"before the entry window ({params['entry_start']} New York)")
        if as_of >= cutoff:
            return Quiet(f"past the entry cut-off ({params['entry_cutoff']} New York)")
        thin = flow_gate(features, params, snapshot_confidence)
        if thin:
            return Quiet(thin)
        score, contributions = flow_score(features, params["weights"])
        if abs(score) < params["min_score"]:
            return Quiet(f"flow score {score:+.3f} inside +/-{params['min_score']}")
        direction = "bullish" if score > 0 else "bearish"
        if float(features.get("premium_imbalance", 0.0)) * score <= 0:
            return Quiet("premium imbalance disagrees with the flow score")
        extra = self.extra_gate(features, params, direction, as_of)
        if extra:
            return Quiet(extra)
        contract = choose_contract(
            features=features,
            direction=direction,
            params=params,
            as_of=as_of,
            expiries=self.expiries(session, features),
        )
        if contract is None:
            return Quiet(
                f"no {direction} contract with delta {params['min_delta']}-{params['max_delta']}, "
                f"spread <= {params['max_spread_pct']:.0%}, OI >= {params['min_open_interest']} and a fresh quote"
            )
        confidence = combined_confidence(score, snapshot_confidence)
        deadline = min(as_of + timedelta(minutes=params["signal_ttl_minutes"]), cutoff)
        time_exit_at = self.time_exit(session, params, contract, as_of)
        right = "call" if contract["right"] == "C" else "put"
        local_exit = time_exit_at.astimezone(calendar.NEW_YORK)
        rationale = (
            f"{self.title}: {direction} flow on {features.get('alert_count', 0)} alerts "
            f"(${to_decimal(features.get('flow_premium', '0')):,.0f} premium; {describe_leans(contributions)}) "
            f"gives a score of {score:+.2f}. Buy the {contract['strike']} {right} expiring {contract['expiry']} "
            f"(delta {contract['delta']:+.2f}, {contract['greeks_source'].replace('_', '-')} greeks) at the ask "
            f"{contract['ask']}; target +{float(params['profit_target_pct']):.0%}, stop "
            f"-{float(params['stop_loss_pct']):.0%}, out by {local_exit:%Y-%m-%d %H:%M} New York. "
            f"Long options only: American-style, physically settled contracts are never sold short."
        )
        note = self.exit_note()
        if note:
            rationale += " " + note
        return Proposal(
            direction=direction,
            contract=contract,
            rule=f"{self.name}.flow_{direction}",
            rationale=rationale,
            score=score,
            contributions=contributions,
            features_used=features_used(features, contract),
            confidence=confidence,
            quantity_hint=size_hint(confidence, params),
            profit_target_pct=to_decimal(params["profit_target_pct"]),
            stop_loss_pct=to_decimal(params["stop_loss_pct"]),
            time_exit_at=time_exit_at,
            entry_deadline=deadline,
            evidence={
                "flow_alerts": list(features.get("evidence", {}).get("flow_alerts", [])),
                "option_trades": [contract["trade_uw_id"]],
                "gex": list(features.get("evidence", {}).get("gex", [])),
            },
        )
