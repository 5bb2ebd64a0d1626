"""Normalized Unusual Whales data, the raw archive and the quarantine.

Every table is keyed on the feed's natural key, so a frame seen twice is one row.  Money, prices and greeks are
``Decimal``; times are aware UTC.
"""

from __future__ import annotations

from typing import Any

from django.db import models

PRICE: dict[str, Any] = {"max_digits": 18, "decimal_places": 6}
MONEY: dict[str, Any] = {"max_digits": 20, "decimal_places": 4}
GREEK: dict[str, Any] = {"max_digits": 24, "decimal_places": 8}
BIG: dict[str, Any] = {"max_digits": 30, "decimal_places": 6}


class RawFrame(models.Model):
    """Every accepted socket frame (and REST payload), exactly as received, once (``frame_hash`` of the frame)."""

    frame_hash = models.CharField(max_length=64, unique=True)
    channel = models.CharField(max_length=64, db_index=True)
    received_at = models.DateTimeField(db_index=True)
    payload = models.JSONField()
    source = models.CharField(max_length=200, blank=True)
    stored_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "uw_raw_frames"

    def __str__(self) -> str:
        return f"{self.channel} @ {self.received_at:%H:%M:%S}"


class QuarantinedFrame(models.Model):
    """A line or frame that could not be normalized, kept with the reason (``line_hash`` of the raw text)."""

    line_hash = models.CharField(max_length=64, unique=True)
    channel = models.CharField(max_length=64, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)
    raw = models.TextField()
    reason = models.TextField()
    source = models.CharField(max_length=200, blank=True)
    stored_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "uw_quarantine"
        # The console's "what was quarantined lately" view.
        indexes = [models.Index(fields=["stored_at"], name="uw_quarantine_stored_at")]

    def __str__(self) -> str:
        return f"quarantined {self.channel or '?'}: {self.reason[:60]}"


class FlowAlert(models.Model):
    uw_id = models.CharField(max_length=64, unique=True)
    rule_name = models.CharField(max_length=100, blank=True)
    ticker = models.CharField(max_length=12, db_index=True)
    option_symbol = models.CharField(max_length=32, db_index=True)
    expiry = models.DateField()
    right = models.CharField(max_length=1)  # C / P
    strike = models.DecimalField(**PRICE)
    underlying_price = models.DecimalField(**PRICE, null=True)
    price = models.DecimalField(**PRICE, null=True)
    bid = models.DecimalField(**PRICE, null=True)
    ask = models.DecimalField(**PRICE, null=True)
    volume = models.BigIntegerField(default=0)
    total_size = models.BigIntegerField(default=0)
    total_premium = models.DecimalField(**MONEY)
    total_ask_side_prem = models.DecimalField(**MONEY, default=0)
    total_bid_side_prem = models.DecimalField(**MONEY, default=0)
    has_sweep = models.BooleanField(default=False)
    has_floor = models.BooleanField(default=False)
    has_multileg = models.BooleanField(default=False)
    all_opening_trades = models.BooleanField(default=False)
    open_interest = models.BigIntegerField(default=0)
    volume_oi_ratio = models.DecimalField(**PRICE, null=True)
    trade_count = models.IntegerField(default=0)
    executed_at = models.DateTimeField(db_index=True)
    raw_frame = models.ForeignKey(RawFrame, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        db_table = "uw_flow_alerts"
        indexes = [models.Index(fields=["ticker", "executed_at"])]

    def __str__(self) -> str:
        return f"{self.option_symbol} ${self.total_premium}"


class OptionTrade(models.Model):
    uw_id = models.CharField(max_length=64, unique=True)
    ticker = models.CharField(max_length=12)
    option_symbol = models.CharField(max_length=32, db_index=True)
    expiry = models.DateField()
    right = models.CharField(max_length=1)
    strike = models.DecimalField(**PRICE)
    price = models.DecimalField(**PRICE)
    size = models.IntegerField()
    premium = models.DecimalField(**MONEY)
    nbbo_bid = models.DecimalField(**PRICE, null=True)
    nbbo_ask = models.DecimalField(**PRICE, null=True)
    underlying_price = models.DecimalField(**PRICE, null=True)
    volume = models.BigIntegerField(default=0)
    open_interest = models.BigIntegerField(default=0)
    implied_volatility = models.DecimalField(**GREEK, null=True)
    delta = models.DecimalField(**GREEK, null=True)
    gamma = models.DecimalField(**GREEK, null=True)
    theta = models.DecimalField(**GREEK, null=True)
    vega = models.DecimalField(**GREEK, null=True)
    side = models.CharField(max_length=8, blank=True)  # ask / bid / mid / no_side, from the volume split
    tags = models.JSONField(default=list, blank=True)
    exchange = models.CharField(max_length=16, blank=True)
    executed_at = models.DateTimeField()

    class Meta:
        db_table = "uw_option_trades"
        indexes = [
            models.Index(fields=["ticker", "executed_at"]),
            # The newest print of one contract (paper broker fallback quote, per-contract history).
            models.Index(fields=["option_symbol", "-executed_at"], name="uw_opt_trade_symbol_time"),
        ]

    def __str__(self) -> str:
        return f"{self.option_symbol} {self.size}@{self.price}"


class PriceTick(models.Model):
    ticker = models.CharField(max_length=12)
    ts = models.DateTimeField()
    close = models.DecimalField(**PRICE)
    volume = models.BigIntegerField(default=0)

    class Meta:
        db_table = "uw_price_ticks"
        constraints = [models.UniqueConstraint(fields=["ticker", "ts"], name="uw_price_tick_unique")]

    def __str__(self) -> str:
        return f"{self.ticker} {self.close} @ {self.ts:%H:%M}"


class GexSnapshot(models.Model):
    """Ticker-level gamma/delta/charm/vanna exposure per 1% move (``gex:T``)."""

    ticker = models.CharField(max_length=12)
    ts = models.DateTimeField()
    price = models.DecimalField(**PRICE, null=True)
    gamma_oi = models.DecimalField(**BIG, null=True)
    gamma_vol = models.DecimalField(**BIG, null=True)
    gamma_dir = models.DecimalField(**BIG, null=True)
    delta_oi = models.DecimalField(**BIG, null=True)
    delta_vol = models.DecimalField(**BIG, null=True)
    delta_dir = models.DecimalField(**BIG, null=True)
    charm_oi = models.DecimalField(**BIG, null=True)
    charm_vol = models.DecimalField(**BIG, null=True)
    charm_dir = models.DecimalField(**BIG, null=True)
    vanna_oi = models.DecimalField(**BIG, null=True)
    vanna_vol = models.DecimalField(**BIG, null=True)
    vanna_dir = models.DecimalField(**BIG, null=True)

    class Meta:
        db_table = "uw_gex_snapshots"
        constraints = [models.UniqueConstraint(fields=["ticker", "ts"], name="uw_gex_snapshot_unique")]

    def __str__(self) -> str:
        return f"GEX {self.ticker} @ {self.ts:%H:%M}"


class GexStrike(models.Model):
    """Per-strike exposure (``gex_strike:T``); ``expiry`` is set for ``gex_strike_expiry:T`` frames."""

    ticker = models.CharField(max_length=12)
    ts = models.DateTimeField()
    strike = models.DecimalField(**PRICE)
    expiry = models.DateField(null=True, blank=True)
    price = models.DecimalField(**PRICE, null=True)
    call_gamma_oi = models.DecimalField(**BIG, null=True)
    put_gamma_oi = models.DecimalField(**BIG, null=True)
    call_gamma_vol = models.DecimalField(**BIG, null=True)
    put_gamma_vol = models.DecimalField(**BIG, null=True)
    call_charm_oi = models.DecimalField(**BIG, null=True)
    put_charm_oi = models.DecimalField(**BIG, null=True)
    call_vanna_oi = models.DecimalField(**BIG, null=True)
    put_vanna_oi = models.DecimalField(**BIG, null=True)
    natural_key = models.CharField(max_length=96, unique=True)  # ticker|ts|strike|expiry (expiry may be empty)

    class Meta:
        db_table = "uw_gex_strikes"
        indexes = [models.Index(fields=["ticker", "ts"])]

    def __str__(self) -> str:
        return f"GEX {self.ticker} {self.strike} @ {self.ts:%H:%M}"


class NewsItem(models.Model):
    news_key = models.CharField(max_length=64, unique=True)  # hash of headline + timestamp + source
    headline = models.TextField()
    source = models.CharField(max_length=100, blank=True)
    tickers = models.JSONField(default=list, blank=True)
    is_major = models.BooleanField(default=False)
    published_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "uw_news"

    def __str__(self) -> str:
        return self.headline[:80]
