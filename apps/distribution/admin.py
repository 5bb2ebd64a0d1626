"""Lean admin for the distribution tables (they grow with every trade: no counts over joins, raw ids for FKs)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from apps.distribution.models import DistributionLog, DistributionPost


class DistributionLogInline(admin.TabularInline):
    model = DistributionLog
    extra = 0
    can_delete = False
    fields = ("at", "outcome", "status_code", "sink", "response_excerpt")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: DistributionPost | None = None) -> bool:
        return False


@admin.register(DistributionPost)
class DistributionPostAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "ref", "tier", "status", "sink", "due_at", "sent_at", "late", "attempts")
    list_filter = ("status", "tier", "kind", "sink", "late")
    search_fields = ("ref", "message_id")
    date_hierarchy = "due_at"
    ordering = ("-due_at",)
    show_full_result_count = False
    list_per_page = 100
    readonly_fields = [f.name for f in DistributionPost._meta.fields]
    inlines = [DistributionLogInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(DistributionLog)
class DistributionLogAdmin(admin.ModelAdmin):
    list_display = ("id", "at", "tier", "outcome", "status_code", "sink", "post_id")
    list_filter = ("outcome", "tier", "sink")
    raw_id_fields = ("post",)
    ordering = ("-at",)
    show_full_result_count = False
    list_per_page = 100
    readonly_fields = ("post", "tier", "sink", "outcome", "status_code", "response_excerpt", "at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
