"""Risk in the operations console: the limits (a save creates a new version), the kill switch, the decisions."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.risk.models import KillSwitchEvent, RiskDecision, RiskLimits
from apps.risk.selectors import kill_switch_is_on
from apps.risk.services import EDITABLE_LIMITS, kill_switch_engage, kill_switch_release, limits_update


@admin.register(RiskLimits)
class RiskLimitsAdmin(admin.ModelAdmin):
    list_display = ("version", "active", *EDITABLE_LIMITS, "created_at", "created_by")
    list_filter = ("active",)
    ordering = ("-version",)
    fields = (*EDITABLE_LIMITS, "note")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Decisions point at the version they were judged by.
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Only the active version can be "edited", and editing it saves a new version.
        return obj is None or bool(obj.active)

    def save_model(self, request: HttpRequest, obj: RiskLimits, form: Any, change: bool) -> None:
        changes = {name: form.cleaned_data[name] for name in EDITABLE_LIMITS}
        new = limits_update(by=request.user.get_username(), note=form.cleaned_data.get("note", ""), **changes)
        obj.pk, obj.version, obj.active = new.pk, new.version, new.active


@admin.register(KillSwitchEvent)
class KillSwitchEventAdmin(admin.ModelAdmin):
    """Adding a row engages or releases the kill switch (through the service, which also sets Redis)."""

    list_display = ("at", "engaged", "by", "reason")
    list_filter = ("engaged",)
    fields = ("engaged", "reason")
    ordering = ("-at", "-id")

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        extra_context = {**(extra_context or {}), "title": f"Kill switch: {'ON' if kill_switch_is_on() else 'off'}"}
        return super().changelist_view(request, extra_context)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: KillSwitchEvent, form: Any, change: bool) -> None:
        service = kill_switch_engage if form.cleaned_data["engaged"] else kill_switch_release
        event = service(by=request.user.get_username(), reason=form.cleaned_data["reason"])
        obj.pk, obj.at, obj.by = event.pk, event.at, event.by


@admin.register(RiskDecision)
class RiskDecisionAdmin(admin.ModelAdmin):
    list_display = ("decided_at", "signal", "approved", "quantity", "limit_price", "reason")
    list_filter = ("approved",)
    search_fields = ("signal__signal_id", "signal__ticker", "signal__option_symbol")
    list_select_related = ("signal",)
    date_hierarchy = "decided_at"
    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
