"""Risk in the operations console: the limits (a save creates a new version), the kill switch, the decisions.

The kill switch has three actions on its history page, each behind its own permission (``risk.engage_kill_switch``,
``risk.flatten_positions``, ``risk.release_kill_switch``), each asking for a reason; the services record every one of
them in the ops audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from apps.risk.models import KillSwitchEvent, RiskDecision, RiskLimits
from apps.risk.selectors import broker_connected, kill_switch_is_on
from apps.risk.services import EDITABLE_LIMITS, limits_update


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


@dataclass(frozen=True)
class KillSwitchAction:
    name: str
    label: str
    permission: str
    explanation: str


# Each admin action is an operator control (apps/ops/controls.py).
_KILL_SWITCH_CONTROLS = {
    "engage": "kill_switch_engage",
    "engage_flatten": "flatten_all",
    "release": "kill_switch_release",
}

KILL_SWITCH_ACTIONS = {
    action.name: action
    for action in (
        KillSwitchAction(
            "engage",
            "Engage kill switch",
            "risk.engage_kill_switch",
            "Every new signal is rejected from now on; open positions stay and are managed by their exits.",
        ),
        KillSwitchAction(
            "engage_flatten",
            "Engage and flatten",
            "risk.flatten_positions",
            "Every new signal is rejected from now on, and every open trade is closed through the broker at once"
            " (the execution worker runs the pass; what it cannot close is recorded on the event).",
        ),
        KillSwitchAction(
            "release",
            "Release kill switch",
            "risk.release_kill_switch",
            "Signals are judged on their merits again.",
        ),
    )
}


class KillSwitchForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 80}), help_text="kept in the audit log")


@admin.register(KillSwitchEvent)
class KillSwitchEventAdmin(admin.ModelAdmin):
    """The kill switch's history; its actions (engage, engage and flatten, release) go through the services, which
    set Redis and write the audit log."""

    list_display = ("at", "engaged", "flatten", "by", "reason", "flattened_at", "still_open")
    list_filter = ("engaged",)
    ordering = ("-at", "-id")

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "kill-switch/<str:action>/",
                self.admin_site.admin_view(self.kill_switch_view),
                name="risk_killswitchevent_action",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        connected, connection = broker_connected()
        title = f"Kill switch: {'ON' if kill_switch_is_on() else 'off'}" + (
            "" if connected else f" (reduce-only: {connection})"
        )
        actions = [
            {"url": reverse("admin:risk_killswitchevent_action", args=[a.name]), "label": a.label}
            for a in KILL_SWITCH_ACTIONS.values()
            if request.user.has_perm(a.permission)
        ]
        extra_context = {**(extra_context or {}), "title": title, "kill_switch_actions": actions}
        return super().changelist_view(request, extra_context)

    def kill_switch_view(self, request: HttpRequest, action: str) -> HttpResponse:
        spec = KILL_SWITCH_ACTIONS.get(action)
        if spec is None:
            raise Http404(f"no kill switch action {action!r}")
        if not request.user.has_perm(spec.permission):
            raise PermissionDenied(f"{spec.label} needs the permission {spec.permission}")
        form = KillSwitchForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            # The same control as the dashboard, the API and Telegram: same permission, same audit entry.
            from apps.ops.controls import ControlError, ControlRefused, control_run

            reason = form.cleaned_data["reason"]
            try:
                control_run(
                    _KILL_SWITCH_CONTROLS[spec.name], user=request.user, params={"reason": reason}, channel="admin"
                )
            except (ControlRefused, ControlError) as exc:
                self.message_user(request, f"{spec.label}: not done: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{spec.label}: done ({reason})", messages.WARNING)
            return redirect("admin:risk_killswitchevent_changelist")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": spec.label,
            "action": spec,
            "form": form,
            "kill_switch_on": kill_switch_is_on(),
        }
        return TemplateResponse(request, "admin/risk/killswitchevent/action.html", context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # The actions above are the only way in: each has its own permission and asks for a reason.
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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
