"""Read-only admin for dead letters and the audit log: both are records, never edited by hand."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from apps.ops.models import AuditLog, DeadLetter


class _ReadOnlyAdmin(admin.ModelAdmin):
    # These tables grow without bound: no full COUNT(*) on every page, and no per-row queries.
    show_full_result_count = False
    list_per_page = 100
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(DeadLetter)
class DeadLetterAdmin(_ReadOnlyAdmin):
    list_display = ("at", "task_name", "task_id", "exception")
    list_filter = ("task_name",)
    search_fields = ("=task_id", "task_name")


@admin.register(AuditLog)
class AuditLogAdmin(_ReadOnlyAdmin):
    list_display = ("at", "actor", "action", "target")
    list_filter = ("action",)
    search_fields = ("=actor", "target")
