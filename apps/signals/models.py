"""Signals: what a strategy wants to trade, and why (the audit table ``signals``)."""

from __future__ import annotations

from django.db import models


class Strategy(models.TextChoices):
    ZERO_DTE = "zero_dte", "0DTE"
    ONE_DTE = "one_dte", "1DTE"
    SWING_14D = "swing_14d", "14D+"
    MOC = "moc", "Market on close"


class Bucket(models.TextChoices):
    ZERO_DTE = "0dte", "0DTE"
    ONE_DTE = "1dte", "1DTE"
    SWING_14D = "14d", "14D+"
    MOC = "moc", "MOC"


class Signal(models.Model):
    """One trade idea. ``signal_id`` is derived from the strategy, its version and the evidence, so evaluating the
    same evidence twice yields the same row."""

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"
        ACTIVE = "active"  # an order was filled
        CLOSED = "closed"

    class Direction(models.TextChoices):
        BULLISH = "bullish"
        BEARISH = "bearish"

    signal_id = models.CharField(max_length=32, unique=True)
    strategy = models.CharField(max_length=16, choices=Strategy.choices, db_index=True)
    bucket = models.CharField(max_length=8, choices=Bucket.choices)
    strategy_version = models.PositiveIntegerField(default=1)
    ticker = models.CharField(max_length=12, db_index=True)
    direction = models.CharField(max_length=8, choices=Direction.choices)
    option_symbol = models.CharField(max_length=32)
    expiry = models.DateField()
    right = models.CharField(max_length=1)
    strike = models.DecimalField(max_digits=18, decimal_places=6)
    limit_price = models.DecimalField(max_digits=18, decimal_places=6)  # per share, from the recorded quote
    quantity_hint = models.PositiveIntegerField(default=1)
    profit_target_pct = models.DecimalField(max_digits=8, decimal_places=4)  # 0.5 = +50 % on premium
    stop_loss_pct = models.DecimalField(max_digits=8, decimal_places=4)  # 0.3 = -30 % on premium
    time_exit_at = models.DateTimeField()  # forced exit no later than this
    entry_deadline = models.DateTimeField(null=True, blank=True)  # e.g. the MOC submission deadline
    rule = models.CharField(max_length=100)  # the rule that fired
    rationale = models.TextField()  # plain language
    features = models.JSONField(default=dict)
    contributions = models.JSONField(default=dict)  # feature -> contribution to the score
    evidence = models.JSONField(default=dict)  # {"flow_alerts": [uw_id...], "option_trades": [...], "gex": [...]}
    confidence = models.DecimalField(max_digits=6, decimal_places=4)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    as_of = models.DateTimeField()  # market-data time the signal was evaluated at
    created_at = models.DateTimeField()  # platform clock

    class Meta:
        db_table = "signals"
        indexes = [models.Index(fields=["ticker", "strategy", "as_of"])]
        # An operator's approve (send to risk review now) or reject of a pending signal (apps/ops/controls.py).
        permissions = [("override_signal", "Can approve or reject a pending signal")]

    def __str__(self) -> str:
        return f"{self.get_strategy_display()} {self.direction} {self.option_symbol}"


class StrategyConfig(models.Model):
    """One version of a strategy's parameters.  Rows are never edited: a change is a new version, so every signal
    names (``Signal.strategy_version``) the exact parameters that produced it."""

    strategy = models.CharField(max_length=16, choices=Strategy.choices)
    version = models.PositiveIntegerField()
    parameters = models.JSONField(default=dict)
    enabled = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "signals_strategy_configs"
        constraints = [models.UniqueConstraint(fields=["strategy", "version"], name="strategy_config_version_unique")]
        ordering = ["strategy", "-version"]

    def __str__(self) -> str:
        return f"{self.get_strategy_display()} v{self.version}"
