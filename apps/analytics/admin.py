"""Analytics snapshots in the operations console: a big, append-only table, so the list stays lean (bounded count,
no ``features`` payload in the list, newest first by primary key, filters that never scan the table)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.analytics.models import AnalyticsSnapshot
from apps.core.lean_admin import LeanListAdmin


class TrackedTickerFilter(admin.SimpleListFilter):
    """The tracked tickers from settings: Django's own filter on a plain column would list them with a
    ``SELECT DISTINCT ticker`` over the whole table on every page."""

    title = "ticker"
    parameter_name = "ticker"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(ticker, ticker) for ticker in settings.TRACKED_TICKERS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[AnalyticsSnapshot]) -> QuerySet[AnalyticsSnapshot]:
        value = self.value()
        return queryset.filter(ticker=value) if value else queryset


@admin.register(AnalyticsSnapshot)
class AnalyticsSnapshotAdmin(LeanListAdmin):
    list_display = ("as_of", "ticker", "bucket", "confidence", "schema_version")
    list_defer = ("features",)
    # bucket has choices (no query); no date_hierarchy: it reads MIN/MAX and DISTINCT dates of as_of over the table.
    list_filter = ("bucket", TrackedTickerFilter)
    # Rows are appended as the market data arrives: the primary key orders them like as_of, through its index.
    ordering = ("-id",)
    list_per_page = 50
    readonly_fields = (
        "ticker",
        "bucket",
        "as_of",
        "schema_version",
        "event_id",
        "features",
        "confidence",
        "created_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AnalyticsSnapshot | None = None) -> bool:
        return False
