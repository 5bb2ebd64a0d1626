"""Read-only admin for dead letters, the audit log and alerts: records, never edited by hand (an alert is only
acknowledged, through the ``alert_acknowledge`` control)."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import F, QuerySet
from django.http import HttpRequest

from apps.ops.admin_controls import control_action_run
from apps.ops.controls import control_allowed
from apps.ops.models import Alert, AuditLog, DeadLetter


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


class AlertOpenFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("open", "open"), ("unacknowledged", "open, not acknowledged"), ("resolved", "resolved")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Alert]) -> QuerySet[Alert]:
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "unacknowledged":
            return queryset.filter(resolved_at__isnull=True, acknowledged_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


class AlertDeliveryFilter(admin.SimpleListFilter):
    title = "delivery"
    parameter_name = "delivery"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("owed", "notice owed"), ("failing", "last attempt failed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Alert]) -> QuerySet[Alert]:
        if self.value() == "owed":
            return queryset.filter(delivered_at__isnull=True)
        if self.value() == "failing":
            return queryset.filter(delivered_at__isnull=True).exclude(delivery_error="")
        return queryset


@admin.action(description="Acknowledge the selected alerts", permissions=["acknowledge"])
def acknowledge_alerts(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
    # The alert_acknowledge control (one run and one audit entry per alert), like the dashboard and the API.
    ids = queryset.filter(acknowledged_at__isnull=True).values_list("pk", flat=True)
    control_action_run(modeladmin, request, "alert_acknowledge", ({"alert_id": pk} for pk in ids))


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    """Unacknowledged alerts first, newest first; rows are written by the evaluator and Alertmanager only."""

    list_display = (
        "raised_at",
        "severity",
        "rule",
        "summary",
        "source",
        "last_seen_at",
        "resolved_at",
        "acknowledged_by",
        "delivered_at",
    )
    list_filter = (AlertOpenFilter, "severity", "rule", "source", AlertDeliveryFilter)
    search_fields = ("=key", "summary")
    date_hierarchy = "raised_at"
    show_full_result_count = False
    list_per_page = 100
    actions = [acknowledge_alerts]
    readonly_fields = (
        "key",
        "rule",
        "severity",
        "source",
        "summary",
        "detail",
        "raised_at",
        "last_seen_at",
        "resolved_at",
        "acknowledged_at",
        "acknowledged_by",
        "delivered_at",
        "delivery_error",
    )

    def get_ordering(self, request: HttpRequest) -> list[object]:  # type: ignore[override]  # expressions are allowed
        # NULLs (not acknowledged) first on every database, then the newest.
        return [F("acknowledged_at").asc(nulls_first=True), "-raised_at", "-id"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_acknowledge_permission(self, request: HttpRequest) -> bool:
        return control_allowed("alert_acknowledge", user=request.user)
