"""Signal engine in the operations console: strategy parameters (each save is a new version) and the signal audit."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest

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

    def get_readonly_fields(self, request: HttpRequest, obj: Signal | None = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Signal | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Signal | None = None) -> bool:
        return False
