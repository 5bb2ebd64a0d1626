"""Risk: the limits in force (versioned), the kill switch history and one audited decision per signal."""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from typing import Any

from django.db import models

PRICE: dict[str, Any] = {"max_digits": 18, "decimal_places": 6}
SHARE: dict[str, Any] = {"max_digits": 8, "decimal_places": 4}
EXPOSURE: dict[str, Any] = {"max_digits": 14, "decimal_places": 2}  # share equivalents


class RiskLimits(models.Model):
    """The limits every signal is checked against.

    Rows are never edited: a change is saved as a new version and the previous one is deactivated, so each decision
    points at the exact limits it was judged by.  At most one row is active (a partial unique constraint).
    """

    version = models.PositiveIntegerField(unique=True)
    active = models.BooleanField(default=True)
    max_premium_share = models.DecimalField(
        **SHARE, default=Decimal("0.02"), help_text="premium at risk per trade as a share of net liquidation"
    )
    max_contracts_per_order = models.PositiveIntegerField(default=10)
    max_positions_per_underlying = models.PositiveIntegerField(default=3)
    max_positions_per_strategy = models.PositiveIntegerField(default=2)
    max_open_positions = models.PositiveIntegerField(default=6)
    daily_loss_limit_share = models.DecimalField(
        **SHARE, default=Decimal("0.03"), help_text="a day's loss (realized + open) that engages the kill switch"
    )
    zero_dte_entry_cutoff = models.TimeField(
        default=time(15, 0), help_text="America/New_York; no 0DTE entries from this time (earlier on early closes)"
    )
    entry_price_tolerance = models.DecimalField(
        **SHARE,
        default=Decimal("0.05"),
        help_text="how far above the signal's limit price an entry may pay (0.05 = 5 %); sizing uses that price",
    )
    max_portfolio_delta = models.DecimalField(
        **EXPOSURE,
        default=Decimal("2500"),
        help_text="largest |portfolio delta| after a trade, in share equivalents (delta x contracts x 100, signed)",
    )
    max_portfolio_gamma = models.DecimalField(
        **EXPOSURE,
        default=Decimal("500"),
        help_text="largest |portfolio gamma| after a trade, in share equivalents per $1 (gamma x contracts x 100)",
    )
    moc_entry_deadline = models.TimeField(
        default=time(15, 45),
        help_text="America/New_York; no MOC-strategy entries from this time (earlier on early closes)",
    )
    max_leverage = models.DecimalField(
        **SHARE,
        default=Decimal("0.5"),
        help_text="gross value of open positions plus the new premium, as a multiple of net liquidation",
    )
    min_buying_power_share = models.DecimalField(
        **SHARE,
        default=Decimal("0"),
        help_text="buying power an entry must leave untouched, as a share of net liquidation (0 = none)",
    )
    flatten_on_daily_loss = models.BooleanField(
        default=True, help_text="when the daily loss limit trips the kill switch, also close every open position"
    )
    created_at = models.DateTimeField()
    created_by = models.CharField(max_length=150, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        db_table = "risk_limits"
        verbose_name = "risk limits"
        verbose_name_plural = "risk limits"
        constraints = [
            models.UniqueConstraint(fields=["active"], condition=models.Q(active=True), name="risk_limits_one_active")
        ]

    def __str__(self) -> str:
        return f"risk limits v{self.version}{' (active)' if self.active else ''}"


class KillSwitchEvent(models.Model):
    """Every engagement and release of the kill switch, by whom and why (the Redis key mirrors the newest row)."""

    engaged = models.BooleanField()
    by = models.CharField(max_length=150)
    reason = models.TextField()
    at = models.DateTimeField(db_index=True)
    flatten = models.BooleanField(default=False, help_text="engaged with an order to close every open position")
    flattened_at = models.DateTimeField(null=True, blank=True, help_text="when the flatten pass last finished")
    still_open = models.JSONField(
        default=list, blank=True, help_text="trades the flatten pass left open: [{trade_id, option_symbol, quantity}]"
    )

    class Meta:
        db_table = "risk_kill_switch_events"
        ordering = ["-at", "-id"]
        permissions = [
            ("engage_kill_switch", "Can engage the kill switch"),
            ("flatten_positions", "Can engage the kill switch and flatten every position"),
            ("release_kill_switch", "Can release the kill switch"),
        ]

    def __str__(self) -> str:
        return f"kill switch {'ON' if self.engaged else 'off'} by {self.by} @ {self.at:%Y-%m-%d %H:%M:%S}"


class RiskDecision(models.Model):
    """The verdict on one signal (unique): every check with its outcome, the size, and the account it saw."""

    signal = models.OneToOneField("signals.Signal", on_delete=models.PROTECT, related_name="risk_decision")
    limits = models.ForeignKey(RiskLimits, on_delete=models.PROTECT, related_name="decisions")
    approved = models.BooleanField()
    quantity = models.PositiveIntegerField(default=0)
    limit_price = models.DecimalField(**PRICE, help_text="the most an entry may pay per share")
    checks = models.JSONField(default=list)  # [{"check": str, "passed": bool, "detail": str}]
    reason = models.TextField()
    account = models.JSONField(default=dict)  # net_liq, buying_power, open_pnl, realized_pnl_today (strings)
    decided_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "risk_audit"

    def __str__(self) -> str:
        verdict = f"approved x{self.quantity}" if self.approved else "rejected"
        return f"{self.signal_id}: {verdict}"
