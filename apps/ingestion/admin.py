"""Read-only, lean admin for the ingestion tables: they grow by millions of rows, so no full counts (a bounded one for
the paginator), no payloads in lists, no filters that scan the table, and exact-match searches on indexed columns."""

from __future__ import annotations

import time
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.core.lean_admin import LeanListAdmin
from apps.ingestion import drift
from apps.ingestion.feeds import feeds_state
from apps.ingestion.models import (
    Candle,
    DriftEvent,
    FieldFingerprint,
    FlowAlert,
    GexSnapshot,
    GexStrike,
    GreekExposure,
    IBQuote,
    MarketTide,
    NetPremTick,
    NewsItem,
    OptionContract,
    OptionTrade,
    PriceTick,
    QuarantinedFrame,
    RawBatch,
    RawFrame,
    RestPayload,
    StockState,
    StreamControl,
)
from apps.ingestion.uw.stream import stream_state
from apps.ops.controls import ControlError, ControlRefused, control_allowed, control_run


class ReadOnlyAdmin(LeanListAdmin):
    """The feed writes these rows; the console only looks at them."""

    list_per_page = 100
    ordering = ("-id",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RawFrame)
class RawFrameAdmin(ReadOnlyAdmin):
    list_display = ("id", "channel", "received_at", "source", "frame_hash")
    list_defer = ("payload",)
    search_fields = ("=frame_hash", "=channel")


@admin.register(QuarantinedFrame)
class QuarantinedFrameAdmin(ReadOnlyAdmin):
    list_display = ("id", "channel", "received_at", "short_reason", "source", "stored_at")
    list_defer = ("raw",)
    search_fields = ("=line_hash", "=channel")

    @admin.display(description="reason")
    def short_reason(self, obj: QuarantinedFrame) -> str:
        return obj.reason[:120]


@admin.register(FlowAlert)
class FlowAlertAdmin(ReadOnlyAdmin):
    list_display = ("id", "ticker", "option_symbol", "rule_name", "total_premium", "has_sweep", "executed_at")
    search_fields = ("=uw_id", "=option_symbol", "=ticker")
    raw_id_fields = ("raw_frame",)


@admin.register(OptionTrade)
class OptionTradeAdmin(ReadOnlyAdmin):
    list_display = ("id", "ticker", "option_symbol", "price", "size", "premium", "side", "executed_at")
    list_defer = ("tags",)
    search_fields = ("=uw_id", "=option_symbol")


@admin.register(PriceTick)
class PriceTickAdmin(ReadOnlyAdmin):
    list_display = ("id", "ticker", "ts", "close", "volume")
    search_fields = ("=ticker",)


@admin.register(GexSnapshot)
class GexSnapshotAdmin(ReadOnlyAdmin):
    list_display = ("id", "ticker", "ts", "price", "gamma_oi", "gamma_dir")
    search_fields = ("=ticker",)


@admin.register(GexStrike)
class GexStrikeAdmin(ReadOnlyAdmin):
    list_display = ("id", "ticker", "ts", "strike", "expiry", "call_gamma_oi", "put_gamma_oi")
    search_fields = ("=ticker",)


@admin.register(NewsItem)
class NewsItemAdmin(ReadOnlyAdmin):
    list_display = ("id", "published_at", "source", "short_headline", "is_major")
    list_defer = ("tickers",)
    search_fields = ("headline",)

    @admin.display(description="headline")
    def short_headline(self, obj: NewsItem) -> str:
        return obj.headline[:100]


@admin.register(RawBatch)
class RawBatchAdmin(ReadOnlyAdmin):
    list_display = ("id", "channel", "frames", "first_received_at", "last_received_at", "source")
    list_defer = ("lines_zlib",)
    search_fields = ("=channel",)
    exclude = ("lines_zlib",)


@admin.register(RestPayload)
class RestPayloadAdmin(ReadOnlyAdmin):
    list_display = ("id", "endpoint", "status", "elapsed_ms", "rows", "requested_at", "path")
    list_defer = ("params", "body", "body_text", "rate")
    search_fields = ("=endpoint", "=status")


@admin.register(FieldFingerprint)
class FieldFingerprintAdmin(ReadOnlyAdmin):
    list_display = ("stream", "payloads_seen", "first_seen", "updated_at")
    list_defer = ("fields", "required")
    search_fields = ("=stream",)
    ordering = ("stream",)


@admin.register(GreekExposure)
class GreekExposureAdmin(ReadOnlyAdmin):
    list_display = ("id", "ticker", "date", "call_gamma", "put_gamma", "call_delta", "put_delta")
    search_fields = ("=ticker",)


@admin.register(StockState)
class StockStateAdmin(ReadOnlyAdmin):
    list_display = ("id", "ticker", "tape_time", "open", "high", "low", "close", "market_time")
    search_fields = ("=ticker",)


@admin.register(Candle)
class CandleAdmin(ReadOnlyAdmin):
    list_display = ("id", "ticker", "interval", "start_time", "open", "high", "low", "close", "volume")
    search_fields = ("=ticker",)


@admin.register(MarketTide)
class MarketTideAdmin(ReadOnlyAdmin):
    list_display = ("id", "ts", "net_call_premium", "net_put_premium", "net_volume")


@admin.register(NetPremTick)
class NetPremTickAdmin(ReadOnlyAdmin):
    list_display = ("id", "ticker", "tape_time", "net_call_premium", "net_put_premium", "net_delta")
    search_fields = ("=ticker",)


@admin.register(OptionContract)
class OptionContractAdmin(ReadOnlyAdmin):
    list_display = ("option_symbol", "ticker", "expiry", "strike", "right", "open_interest", "volume", "as_of")
    search_fields = ("=option_symbol", "=ticker")


@admin.register(IBQuote)
class IBQuoteAdmin(ReadOnlyAdmin):
    """Interactive Brokers market data, appended at the listener's batch rate: newest first by id, exact key search
    (served by the (key, -quoted_at) index)."""

    list_display = ("quoted_at", "key", "sec_type", "bid", "ask", "last", "implied_vol", "delta")
    search_fields = ("=key",)


@admin.register(DriftEvent)
class DriftEventAdmin(ReadOnlyAdmin):
    """Drift of the feed (docs/ingestion_drift.md): read-only, but an operator with the change permission can
    acknowledge events from the list."""

    list_display = (
        "id",
        "stream",
        "kind",
        "field",
        "expected",
        "observed",
        "occurrences",
        "first_seen",
        "last_seen",
        "acknowledged_at",
        "acknowledged_by",
    )
    list_filter = ("kind", ("acknowledged_at", admin.EmptyFieldListFilter))  # a small table: filters are cheap
    list_defer = ("sample",)
    search_fields = ("=stream", "=field")
    ordering = ("-last_seen",)
    actions = ("acknowledge_selected",)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Only the list (and its action) asks without an object; every event's own page stays read-only.
        if obj is not None:
            return False
        opts = self.model._meta
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")

    @admin.action(permissions=["change"], description="Acknowledge selected drift events")
    def acknowledge_selected(self, request: HttpRequest, queryset: QuerySet[DriftEvent]) -> None:
        count = drift.acknowledge(event_ids=queryset.values_list("id", flat=True), user=request.user.get_username())
        self.message_user(request, f"{count} drift event(s) acknowledged.")


class StreamControlForm(forms.ModelForm):
    class Meta:
        model = StreamControl
        fields = ("feed", "paused", "reason")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The listener is the feed meant when none is named (as before feeds had names).
        self.fields["feed"].required = False

    def clean_feed(self) -> str:
        return str(self.cleaned_data.get("feed") or "uw_stream")


@admin.register(StreamControl)
class StreamControlAdmin(admin.ModelAdmin):
    """Adding a row pauses or resumes a feed (the ``feed_pause``/``feed_resume`` controls, which also set Redis and
    audit); the list's title shows what the UW listener last reported and which feeds are paused."""

    list_display = ("at", "feed", "paused", "by", "reason")
    list_filter = ("feed", "paused")
    form = StreamControlForm
    fields = ("feed", "paused", "reason")
    ordering = ("-at", "-id")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        state = stream_state()
        if state.get("status"):
            age = max(0.0, time.time() - float(state.get("updated_at") or 0))
            title = (
                f"UW listener: {state['status']}{' (paused)' if state['paused'] else ''}, reported {age:.0f} s ago, "
                f"{state.get('frames', 0)} frames, {state.get('dropped_frames', 0)} dropped"
            )
        else:
            title = "UW listener: not reporting" + (" (paused)" if state["paused"] else "")
        paused = [feed for feed, feed_state in feeds_state().items() if feed_state["paused"]]
        title += f"; paused feeds: {', '.join(paused)}" if paused else "; no feed paused"
        return super().changelist_view(request, {**(extra_context or {}), "title": title})

    def has_add_permission(self, request: HttpRequest) -> bool:
        return control_allowed("feed_pause", user=request.user)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: StreamControl, form: Any, change: bool) -> None:
        name = "feed_pause" if form.cleaned_data["paused"] else "feed_resume"
        params = {"feed": form.cleaned_data["feed"], "reason": form.cleaned_data["reason"]}
        try:
            result = control_run(name, user=request.user, params=params, channel="admin")
        except (ControlRefused, ControlError) as exc:
            messages.error(request, f"Not done: {exc}")
            return
        control = StreamControl.objects.get(pk=result.detail["control_id"])
        obj.pk, obj.at, obj.by = control.pk, control.at, control.by
