"""The strategy registry: one strategy per bucket, looked up by strategy name or by bucket."""

from __future__ import annotations

from apps.signals.strategies.base import FlowStrategy, Proposal, Quiet
from apps.signals.strategies.moc import MarketOnClose
from apps.signals.strategies.one_dte import OneDte
from apps.signals.strategies.swing_14d import Swing14d
from apps.signals.strategies.zero_dte import ZeroDte

REGISTRY: dict[str, FlowStrategy] = {s.name: s for s in (ZeroDte(), OneDte(), Swing14d(), MarketOnClose())}
BY_BUCKET: dict[str, FlowStrategy] = {s.bucket: s for s in REGISTRY.values()}

__all__ = ["BY_BUCKET", "REGISTRY", "FlowStrategy", "Proposal", "Quiet"]
