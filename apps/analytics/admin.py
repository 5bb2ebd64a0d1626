"""Analytics snapshots in the operations console: a big, append-only table, so the list stays lean."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from apps.analytics.models import AnalyticsSnapshot


@admin.register(AnalyticsSnapshot)
class AnalyticsSnapshotAdmin(admin.ModelAdmin):
    list_display = ("as_of", "ticker", "bucket", "confidence", "schema_version")
    list_filter = ("bucket", "ticker")
    date_hierarchy = "as_of"
    ordering = ("-as_of",)
    show_full_result_count = False
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
