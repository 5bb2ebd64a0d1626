"""Read-only, lean admin for the ingestion tables: they grow by millions of rows, so no full counts, no payloads in
lists, no filters that scan the table, and exact-match searches on indexed columns."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.ingestion.models import (
    FlowAlert,
    GexSnapshot,
    GexStrike,
    NewsItem,
    OptionTrade,
    PriceTick,
    QuarantinedFrame,
    RawFrame,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """The feed writes these rows; the console only looks at them."""

    show_full_result_count = False
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
    search_fields = ("=frame_hash", "=channel")


@admin.register(QuarantinedFrame)
class QuarantinedFrameAdmin(ReadOnlyAdmin):
    list_display = ("id", "channel", "received_at", "short_reason", "source", "stored_at")
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
    search_fields = ("headline",)

    @admin.display(description="headline")
    def short_headline(self, obj: NewsItem) -> str:
        return obj.headline[:100]
