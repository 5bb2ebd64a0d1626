"""Execution in the operations console: read-only books (orders, fills, positions, trades, the order log), with
actions to close trades through the execution services; and the Interactive Brokers side: the commands to the
listener, the broker's messages (alerts acknowledged from the list) and the reconciliation issues an operator resolves
(docs/operations.md, "Interactive Brokers in the console").

The two actions that write (resolve, acknowledge) need the model's ``change`` permission, change only rows still
open, and leave an ops audit entry; every row's own page stays read-only."""

from __future__ import annotations

from typing import Any

import redis
from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from apps.execution import broker_events
from apps.execution.models import (
    BrokerCommand,
    BrokerMessage,
    Fill,
    IBOrderIdCounter,
    Order,
    Position,
    ReconciliationIssue,
    StopAdjustment,
    Trade,
    TradeLog,
)
from apps.ops.admin_controls import control_action_run
from apps.ops.controls import control_allowed
from apps.risk.selectors import broker_connected


class ReadOnlyAdmin(admin.ModelAdmin):
    """Audit records: viewed, never edited by hand (the services own every write)."""

    show_full_result_count = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    """Rows an order's page shows as they were recorded: nothing added, changed or deleted by hand."""

    extra = 0
    can_delete = False

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return list(self.readonly_fields)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TradeLogInline(ReadOnlyInline):
    model = TradeLog
    readonly_fields = ("at", "from_status", "to_status", "applied", "detail")


class BrokerCommandInline(ReadOnlyInline):
    model = BrokerCommand
    readonly_fields = ("kind", "status", "created_at", "sent_at", "answered_at", "result")


class BrokerMessageInline(ReadOnlyInline):
    model = BrokerMessage
    readonly_fields = ("at", "code", "category", "alert", "acknowledged", "message")


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "client_order_id",
        "leg",
        "attempt",
        "side",
        "quantity",
        "option_symbol",
        "limit_price",
        "status",
        "avg_fill_price",
        "broker",
        "ib_order_id",
        "reject_reason",
    )
    list_filter = ("status", "leg", "side", "broker")
    # broker_order_id holds the IB order id as text once TWS acknowledged the order.
    search_fields = ("client_order_id", "broker_order_id", "option_symbol", "signal__signal_id")
    list_select_related = ("signal",)
    raw_id_fields = ("decision", "signal", "trade")
    # Per order, a handful of rows each: what was sent to the listener and what TWS said about it.
    inlines = (TradeLogInline, BrokerCommandInline, BrokerMessageInline)
    actions = ("cancel_selected",)

    def has_order_cancel_permission(self, request: HttpRequest) -> bool:
        return control_allowed("order_cancel", user=request.user)

    @admin.action(permissions=["order_cancel"], description="Cancel the selected working orders")
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        control_action_run(
            self, request, "order_cancel", ({"order_id": pk} for pk in queryset.values_list("pk", flat=True))
        )


@admin.register(Fill)
class FillAdmin(ReadOnlyAdmin):
    list_display = ("at", "exec_id", "order", "quantity", "price", "commission")
    search_fields = ("exec_id", "order__client_order_id")
    list_select_related = ("order",)
    raw_id_fields = ("order",)


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = ("option_symbol", "ticker", "quantity", "avg_cost", "mark", "unrealized_pnl", "realized_pnl")
    list_filter = ("ticker",)
    search_fields = ("option_symbol",)


@admin.register(Trade)
class TradeAdmin(ReadOnlyAdmin):
    list_display = (
        "entry_at",
        "strategy",
        "ticker",
        "option_symbol",
        "quantity",
        "entry_price",
        "exit_price",
        "exit_reason",
        "realized_pnl",
        "status",
    )
    list_filter = ("status", "strategy", "ticker", "exit_reason")
    search_fields = ("option_symbol", "signal__signal_id")
    raw_id_fields = ("signal",)
    date_hierarchy = "entry_at"
    actions = ("close_selected",)

    def has_position_close_permission(self, request: HttpRequest) -> bool:
        return control_allowed("position_close", user=request.user)

    @admin.action(
        permissions=["position_close"],
        description="Close the selected open trades now (sell to close at the current quote)",
    )
    def close_selected(self, request: HttpRequest, queryset: QuerySet[Trade]) -> None:
        open_ids = queryset.filter(status=Trade.Status.OPEN).values_list("pk", flat=True)
        control_action_run(self, request, "position_close", ({"trade_id": pk} for pk in open_ids))


@admin.register(TradeLog)
class TradeLogAdmin(ReadOnlyAdmin):
    list_display = ("at", "order", "from_status", "to_status", "applied", "detail")
    list_filter = ("applied", "to_status")
    list_select_related = ("order",)
    raw_id_fields = ("order",)


# --- Interactive Brokers ----------------------------------------------------------------------------------------------
def _broker_title(label: str) -> str:
    """The list's title with the broker connection as risk reads it (``execution:broker:state``)."""
    try:
        _connected, words = broker_connected()
    except redis.RedisError as exc:
        words = f"connection state unknown ({type(exc).__name__}: {exc})"
    return f"{label} — {words}"


def _order_link(order: Order | None) -> str:
    if order is None:
        return "—"
    return format_html(
        '<a href="{}">{}</a>', reverse("admin:execution_order_change", args=[order.pk]), order.client_order_id
    )


class OperatorActionAdmin(ReadOnlyAdmin):
    """Read-only rows whose list offers an action to users with the model's ``change`` permission: the action asks
    ``has_change_permission`` without an object, every row's own page asks with one and stays read-only."""

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None:
            return False
        opts = self.model._meta
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")


class ResolutionForm(forms.Form):
    resolution = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        max_length=2000,
        help_text="what was found and done (adopted, corrected at the broker, booked by hand…); kept on the issue and"
        " in the audit log",
    )


@admin.register(ReconciliationIssue)
class ReconciliationIssueAdmin(OperatorActionAdmin):
    """Differences between IB and the book that reconciliation did not adopt: an operator looks, acts at the broker
    or on the book, and marks the issue resolved with a note."""

    list_display = ("kind", "key", "broker_value", "platform_value", "detected_at", "last_seen_at", "resolved")
    list_filter = ("kind", "resolved")
    search_fields = ("key",)
    actions = ("resolve_selected",)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        title = _broker_title("Reconciliation issues")
        return super().changelist_view(request, {**(extra_context or {}), "title": title})

    @admin.action(permissions=["change"], description="Mark resolved (with a note)")
    def resolve_selected(self, request: HttpRequest, queryset: QuerySet[ReconciliationIssue]) -> Any:
        form = ResolutionForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            resolved = broker_events.reconciliation_issues_resolve(
                issue_ids=list(queryset.values_list("id", flat=True)),
                actor=request.user.get_username(),
                resolution=form.cleaned_data["resolution"],
            )
            self.message_user(request, f"{len(resolved)} reconciliation issue(s) marked resolved.", messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Mark reconciliation issues resolved",
            "issues": list(queryset.filter(resolved=False)),
            "form": form,
            "checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        if not context["issues"]:
            self.message_user(request, "The selected issues are resolved already.", messages.INFO)
            return None
        return TemplateResponse(request, "admin/execution/reconciliationissue/resolve.html", context)


@admin.register(BrokerMessage)
class BrokerMessageAdmin(OperatorActionAdmin):
    """Every code TWS sent: on its order when it concerns one, an alert otherwise (acknowledged from the list)."""

    list_display = ("at", "code", "category", "alert", "acknowledged", "order_link", "short_message")
    list_filter = ("alert", "category", "acknowledged", "code")
    search_fields = ("=code", "=order__client_order_id")
    list_select_related = ("order",)
    raw_id_fields = ("order",)
    list_per_page = 100
    actions = ("acknowledge_selected",)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        title = _broker_title("IB messages")
        return super().changelist_view(request, {**(extra_context or {}), "title": title})

    @admin.display(description="order")
    def order_link(self, obj: BrokerMessage) -> str:
        return _order_link(obj.order)

    @admin.display(description="message")
    def short_message(self, obj: BrokerMessage) -> str:
        return obj.message if len(obj.message) <= 120 else obj.message[:119] + "…"

    @admin.action(permissions=["change"], description="Acknowledge")
    def acknowledge_selected(self, request: HttpRequest, queryset: QuerySet[BrokerMessage]) -> None:
        count = broker_events.broker_messages_acknowledge(
            message_ids=list(queryset.values_list("id", flat=True)), actor=request.user.get_username()
        )
        self.message_user(request, f"{count} broker message(s) acknowledged.", messages.SUCCESS)


@admin.register(BrokerCommand)
class BrokerCommandAdmin(ReadOnlyAdmin):
    """What the platform asked the IB listener to do, and its answer; the listener writes every field."""

    list_display = ("id", "kind", "order_link", "status", "created_at", "sent_at", "answered_at", "result")
    list_filter = ("status", "kind")
    search_fields = ("=order__client_order_id",)
    list_select_related = ("order",)
    raw_id_fields = ("order",)
    ordering = ("-id",)

    @admin.display(description="order")
    def order_link(self, obj: BrokerCommand) -> str:
        return _order_link(obj.order)


@admin.register(IBOrderIdCounter)
class IBOrderIdCounterAdmin(ReadOnlyAdmin):
    list_display = ("client_id", "next_id", "updated_at")


@admin.register(StopAdjustment)
class StopAdjustmentAdmin(ReadOnlyAdmin):
    """Every move of a trade's stop, by the breakeven rule or an operator (``trade_stop_adjust``)."""

    list_display = ("at", "trade", "old_stop", "new_stop", "by", "reason")
    list_filter = ("by",)
    list_select_related = ("trade",)
    search_fields = ("=trade__option_symbol",)
