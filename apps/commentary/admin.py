"""Lean admin for the reports: read the text and the facts it came from; approval flows through Telegram later."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from apps.commentary.models import AiReport


@admin.register(AiReport)
class AiReportAdmin(admin.ModelAdmin):
    list_display = ("day", "kind", "status", "model", "is_template", "input_tokens", "output_tokens", "cost_usd")
    list_filter = ("status", "kind", "is_template")
    date_hierarchy = "day"
    ordering = ("-day", "kind")
    show_full_result_count = False
    readonly_fields = (
        "kind",
        "day",
        "model",
        "is_template",
        "facts",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "error",
        "created_at",
        "updated_at",
    )
    fields = ("status", "content", *readonly_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
