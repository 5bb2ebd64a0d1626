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
    option_symbol = models.CharField(max_length=32)  # indexed with executed_at below
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
    # UW's own record time (socket ``created_at``): executed -> created -> committed is the feed's latency.
    uw_created_at = models.DateTimeField(null=True, blank=True)

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


class RawBatch(models.Model):
    """The raw archive of the high-volume channels (option trades): one compressed block of lines per ingest call.

    A row per frame would cost more than the trade row itself; the tape is archived as it arrived, zlib-compressed
    session lines (``{"received_at", "frame"}`` per line), only the lines that were new.  ``manage.py uw_archive``
    writes them back out as a session file.
    """

    source = models.CharField(max_length=200, blank=True)
    channel = models.CharField(max_length=64)  # the channel family, e.g. option_trades
    first_received_at = models.DateTimeField()
    last_received_at = models.DateTimeField()
    frames = models.IntegerField()
    lines_zlib = models.BinaryField()
    stored_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "uw_raw_batches"
        indexes = [models.Index(fields=["channel", "first_received_at"], name="uw_raw_batch_channel_time")]

    def __str__(self) -> str:
        return f"{self.frames} {self.channel} frames from {self.first_received_at:%H:%M:%S}"


class RestPayload(models.Model):
    """Every Unusual Whales REST response, body included, with what was asked and how it went."""

    endpoint = models.CharField(max_length=64)  # the endpoint's name, e.g. flow_alerts, spot_exposures
    path = models.CharField(max_length=300)
    params = models.JSONField(default=dict, blank=True)
    status = models.IntegerField()  # HTTP status; 0 when no response came (timeout, refused)
    elapsed_ms = models.IntegerField(default=0)
    body = models.JSONField(null=True, blank=True)  # the parsed JSON body
    body_text = models.TextField(blank=True)  # a body that was not JSON (500s are text/plain), or the error
    rate = models.JSONField(default=dict, blank=True)  # the x-uw-* and retry-after headers as received
    rows = models.IntegerField(default=0)  # normalized rows offered from it
    requested_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "uw_rest_payloads"
        indexes = [models.Index(fields=["endpoint", "-requested_at"], name="uw_rest_endpoint_time")]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.status} @ {self.requested_at:%H:%M:%S}"


class FieldFingerprint(models.Model):
    """The fields (and their JSON types) a channel or endpoint has been seen to send: the baseline drift is against."""

    stream = models.CharField(max_length=80, unique=True)  # ws:option_trades, rest:flow_alerts, ...
    fields = models.JSONField(default=dict)  # field -> sorted list of JSON types seen (string, number, null, ...)
    required = models.JSONField(default=list)  # fields present in every payload seen so far
    payloads_seen = models.BigIntegerField(default=0)
    first_seen = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "uw_field_fingerprints"

    def __str__(self) -> str:
        return f"{self.stream}: {len(self.fields)} fields"


class DriftEvent(models.Model):
    """A change in what a channel or endpoint sends: a new field, a missing one, or a field whose type changed."""

    class Kind(models.TextChoices):
        NEW_FIELD = "new_field", "new field"
        MISSING_FIELD = "missing_field", "missing field"
        RETYPED_FIELD = "retyped_field", "re-typed field"

    stream = models.CharField(max_length=80)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    field = models.CharField(max_length=200)
    expected = models.CharField(max_length=100, blank=True)  # the type(s) the baseline knows, or "present"
    observed = models.CharField(max_length=100, blank=True)  # the type now seen, or "absent"
    sample = models.JSONField(null=True, blank=True)  # one payload that showed it
    occurrences = models.BigIntegerField(default=1)
    first_seen = models.DateTimeField(db_index=True)
    last_seen = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True)

    class Meta:
        db_table = "uw_drift_events"
        constraints = [
            models.UniqueConstraint(fields=["stream", "kind", "field", "observed"], name="uw_drift_event_unique")
        ]

    def __str__(self) -> str:
        return f"{self.stream}: {self.get_kind_display()} {self.field}"


class GreekExposure(models.Model):
    """Daily greek exposure of a ticker (REST ``/api/stock/{t}/greek-exposure``)."""

    ticker = models.CharField(max_length=12)
    date = models.DateField()
    call_delta = models.DecimalField(**BIG, null=True)
    put_delta = models.DecimalField(**BIG, null=True)
    call_gamma = models.DecimalField(**BIG, null=True)
    put_gamma = models.DecimalField(**BIG, null=True)
    call_charm = models.DecimalField(**BIG, null=True)
    put_charm = models.DecimalField(**BIG, null=True)
    call_vanna = models.DecimalField(**BIG, null=True)
    put_vanna = models.DecimalField(**BIG, null=True)

    class Meta:
        db_table = "uw_greek_exposures"
        constraints = [models.UniqueConstraint(fields=["ticker", "date"], name="uw_greek_exposure_unique")]

    def __str__(self) -> str:
        return f"greeks {self.ticker} {self.date}"


class StockState(models.Model):
    """A ticker's session state (REST ``/api/stock/{t}/stock-state``), one row per tape time."""

    ticker = models.CharField(max_length=12)
    tape_time = models.DateTimeField()
    open = models.DecimalField(**PRICE, null=True)
    high = models.DecimalField(**PRICE, null=True)
    low = models.DecimalField(**PRICE, null=True)
    close = models.DecimalField(**PRICE, null=True)
    prev_close = models.DecimalField(**PRICE, null=True)
    volume = models.BigIntegerField(default=0)
    total_volume = models.BigIntegerField(default=0)
    market_time = models.CharField(max_length=8, blank=True)  # pr / r / po

    class Meta:
        db_table = "uw_stock_states"
        constraints = [models.UniqueConstraint(fields=["ticker", "tape_time"], name="uw_stock_state_unique")]

    def __str__(self) -> str:
        return f"{self.ticker} {self.close} @ {self.tape_time:%H:%M}"


class Candle(models.Model):
    """OHLC candles (REST ``/api/stock/{t}/ohlc/{interval}``)."""

    ticker = models.CharField(max_length=12)
    interval = models.CharField(max_length=4)  # 1m, 5m, ...
    start_time = models.DateTimeField()
    end_time = models.DateTimeField()
    open = models.DecimalField(**PRICE)
    high = models.DecimalField(**PRICE)
    low = models.DecimalField(**PRICE)
    close = models.DecimalField(**PRICE)
    volume = models.BigIntegerField(default=0)
    total_volume = models.BigIntegerField(default=0)
    market_time = models.CharField(max_length=8, blank=True)

    class Meta:
        db_table = "uw_candles"
        constraints = [models.UniqueConstraint(fields=["ticker", "interval", "start_time"], name="uw_candle_unique")]

    def __str__(self) -> str:
        return f"{self.ticker} {self.interval} {self.start_time:%H:%M}"


class MarketTide(models.Model):
    """Market-wide net premium and volume (REST ``/api/market/market-tide``)."""

    ts = models.DateTimeField(unique=True)
    net_call_premium = models.DecimalField(**MONEY, null=True)
    net_put_premium = models.DecimalField(**MONEY, null=True)
    net_volume = models.BigIntegerField(default=0)

    class Meta:
        db_table = "uw_market_tide"

    def __str__(self) -> str:
        return f"tide @ {self.ts:%H:%M}"


class NetPremTick(models.Model):
    """A ticker's net premium per minute (REST ``/api/stock/{t}/net-prem-ticks``)."""

    ticker = models.CharField(max_length=12)
    tape_time = models.DateTimeField()
    net_call_premium = models.DecimalField(**MONEY, null=True)
    net_put_premium = models.DecimalField(**MONEY, null=True)
    net_call_volume = models.BigIntegerField(default=0)
    net_put_volume = models.BigIntegerField(default=0)
    net_delta = models.DecimalField(**BIG, null=True)

    class Meta:
        db_table = "uw_net_prem_ticks"
        constraints = [models.UniqueConstraint(fields=["ticker", "tape_time"], name="uw_net_prem_tick_unique")]

    def __str__(self) -> str:
        return f"{self.ticker} net prem @ {self.tape_time:%H:%M}"


class OptionContract(models.Model):
    """The latest snapshot of one option contract (REST ``/api/stock/{t}/option-contracts``), updated in place."""

    option_symbol = models.CharField(max_length=32, unique=True)
    ticker = models.CharField(max_length=12, db_index=True)
    expiry = models.DateField()
    right = models.CharField(max_length=1)
    strike = models.DecimalField(**PRICE)
    volume = models.BigIntegerField(default=0)
    open_interest = models.BigIntegerField(default=0)
    implied_volatility = models.DecimalField(**GREEK, null=True)
    nbbo_bid = models.DecimalField(**PRICE, null=True)
    nbbo_ask = models.DecimalField(**PRICE, null=True)
    last_price = models.DecimalField(**PRICE, null=True)
    as_of = models.DateTimeField()  # when the snapshot was fetched

    class Meta:
        db_table = "uw_option_contracts"

    def __str__(self) -> str:
        return f"{self.option_symbol} oi {self.open_interest}"


class StreamControl(models.Model):
    """Every pause and resume of a market data feed (``apps.ingestion.feeds.FEEDS``: the UW socket listener, the UW
    REST pollers, IB market data), by whom and why; each feed's Redis flag mirrors its newest row."""

    feed = models.CharField(
        max_length=20,
        default="uw_stream",
        db_index=True,
        choices=[("uw_stream", "UW socket listener"), ("uw_rest", "UW REST pollers"), ("ib_market", "IB market data")],
    )
    paused = models.BooleanField()
    by = models.CharField(max_length=150)
    reason = models.TextField(blank=True)
    at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "uw_stream_controls"
        ordering = ["-at", "-id"]
        permissions = [("pause_feed", "Can pause and resume a market data feed")]

    def __str__(self) -> str:
        return f"{self.feed} {'paused' if self.paused else 'resumed'} by {self.by} @ {self.at:%Y-%m-%d %H:%M:%S}"


class IBQuote(models.Model):
    """Interactive Brokers market data: one row per contract (or stock) per tick batch, holding that contract's newest
    values as of ``quoted_at`` (``apps.ingestion.ib_market``).

    The feed sends many ticks a second per contract; folding each batch into one row per key keeps the history at the
    listener's batch rate.  Fields a batch did not carry are filled from the previous state (the Redis hash), so each
    row is a complete quote as of its time.  Rows are appended, never updated.
    """

    class SecType(models.TextChoices):
        OPTION = "OPT", "option"
        STOCK = "STK", "stock"

    key = models.CharField(max_length=32)  # the OCC symbol of an option, the ticker of a stock
    sec_type = models.CharField(max_length=3, choices=SecType.choices)
    con_id = models.BigIntegerField(null=True, blank=True)  # IB's contract id
    bid = models.DecimalField(**PRICE, null=True, blank=True)
    ask = models.DecimalField(**PRICE, null=True, blank=True)
    last = models.DecimalField(**PRICE, null=True, blank=True)
    bid_size = models.IntegerField(null=True, blank=True)
    ask_size = models.IntegerField(null=True, blank=True)
    last_size = models.IntegerField(null=True, blank=True)
    # From tickOptionComputation (options only).
    implied_vol = models.DecimalField(**GREEK, null=True, blank=True)
    delta = models.DecimalField(**GREEK, null=True, blank=True)
    gamma = models.DecimalField(**GREEK, null=True, blank=True)
    underlying_price = models.DecimalField(**PRICE, null=True, blank=True)
    quoted_at = models.DateTimeField()  # platform time the newest tick of the row arrived
    received_at = models.DateTimeField()  # platform time the batch was stored

    class Meta:
        db_table = "ib_quotes"
        # Its leading column serves lookups by key alone too: no separate index on a table written many times a second.
        indexes = [models.Index(fields=["key", "-quoted_at"], name="ib_quote_key_time")]

    def __str__(self) -> str:
        return f"IB {self.key} {self.bid}/{self.ask} @ {self.quoted_at:%H:%M:%S}"
