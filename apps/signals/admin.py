"""Signal engine in the operations console: strategy parameters (each save is a new version) and the signal audit,
with the operator's overrides of pending signals (send to risk review now, reject with a reason) as actions that run
the ``signal_approve``/``signal_reject`` controls (``signals.override_signal``)."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from apps.ops.admin_controls import control_action_run, control_action_with_reason
from apps.ops.controls import control_allowed
from apps.signals.models import Signal, StrategyConfig
from apps.signals.services import UnknownParameter, strategy_config_revise


class StrategyConfigForm(forms.ModelForm):
    class Meta:
        model = StrategyConfig
        fields = ("strategy", "parameters", "enabled", "note")

    def clean(self) -> dict[str, Any]:
        # BaseModelForm.clean returns self.cleaned_data, a dict (the stubs say BaseForm's ``dict | None``).
        cleaned = cast(dict[str, Any], super().clean())
        parameters = cleaned.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise forms.ValidationError("parameters must be a JSON object")
        return cleaned


@admin.register(StrategyConfig)
class StrategyConfigAdmin(admin.ModelAdmin):
    """Saving (a new row or a change) stores the next version; the row being edited stays as it was."""

    form = StrategyConfigForm
    list_display = ("strategy", "version", "enabled", "note", "created_at")
    list_filter = ("strategy", "enabled")
    ordering = ("strategy", "-version")
    readonly_fields = ("version", "created_at")

    def save_model(self, request: HttpRequest, obj: StrategyConfig, form: Any, change: Any) -> None:
        try:
            revised = strategy_config_revise(
                strategy=obj.strategy, parameters=obj.parameters, enabled=obj.enabled, note=obj.note
            )
        except UnknownParameter as exc:
            messages.error(request, str(exc))
            obj.pk = None
            return
        # The admin's redirect and message name the object saved: point them at the new version.
        obj.pk, obj.version, obj.created_at = revised.pk, revised.version, revised.created_at
        messages.info(request, f"Saved as {revised}.")

    def has_delete_permission(self, request: HttpRequest, obj: StrategyConfig | None = None) -> bool:
        return False


@admin.register(Signal)
class SignalAdmin(admin.ModelAdmin):
    """Read-only audit of every signal with the rule, rationale and evidence."""

    list_display = ("as_of", "strategy", "ticker", "direction", "option_symbol", "limit_price", "confidence", "status")
    list_filter = ("strategy", "status", "ticker", "direction")
    search_fields = ("signal_id", "option_symbol")
    date_hierarchy = "as_of"
    ordering = ("-as_of",)
    show_full_result_count = False
    list_per_page = 50
    actions = ("approve_selected", "reject_selected")

    def has_signal_approve_permission(self, request: HttpRequest) -> bool:
        return control_allowed("signal_approve", user=request.user)

    def has_signal_reject_permission(self, request: HttpRequest) -> bool:
        return control_allowed("signal_reject", user=request.user)

    @admin.action(permissions=["signal_approve"], description="Send the selected pending signals to risk review now")
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[Signal]) -> None:
        # Risk still decides: the kill switch and every limit apply, and the decision may be a rejection.
        control_action_run(
            self,
            request,
            "signal_approve",
            ({"signal_id": s.signal_id, "reason": "approved in the admin"} for s in queryset.only("signal_id")),
        )

    @admin.action(permissions=["signal_reject"], description="Reject the selected pending signals (with a reason)")
    def reject_selected(self, request: HttpRequest, queryset: QuerySet[Signal]) -> HttpResponse | None:
        return control_action_with_reason(
            self,
            request,
            queryset,
            name="signal_reject",
            action="reject_selected",
            explanation="Each pending signal gets a rejected risk decision naming you and your reason; nothing is sent"
            " to the broker.  Signals already decided are left as they are.",
            params_of=lambda s: {"signal_id": s.signal_id},
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Signal | None = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Signal | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Signal | None = None) -> bool:
        return False
