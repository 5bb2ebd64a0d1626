"""Lean, read-only admin for the commentator's tables: the text, the facts or evidence it came from, what it cost.

Decisions are made through the approvals app (Telegram or its admin), never by editing a status here.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.commentary.models import AiCall, AiExplanation, AiReport


class ReadOnlyAdmin(admin.ModelAdmin):
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AiReport)
class AiReportAdmin(ReadOnlyAdmin):
    list_display = ("day", "kind", "status", "model", "is_template", "input_tokens", "output_tokens", "cost_usd")
    list_filter = ("status", "kind", "is_template")
    date_hierarchy = "day"
    ordering = ("-day", "kind")


@admin.register(AiExplanation)
class AiExplanationAdmin(ReadOnlyAdmin):
    list_display = ("trade_id", "status", "model", "is_template", "citations", "cost_usd", "created_at")
    list_filter = ("status", "is_template")
    search_fields = ("=trade_id",)
    ordering = ("-created_at",)


@admin.register(AiCall)
class AiCallAdmin(ReadOnlyAdmin):
    list_display = ("at", "purpose", "ref", "status", "status_code", "model", "attempts", "latency_ms", "cost_usd")
    list_filter = ("purpose", "status")
    search_fields = ("=ref",)
    date_hierarchy = "at"
    ordering = ("-at",)
