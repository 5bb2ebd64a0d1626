"""Execution in the operations console: read-only books (orders, fills, positions, trades, the order log), with
actions to close trades through the execution services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.execution.models import Fill, Order, Position, Trade, TradeLog
from apps.execution.services import position_close


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


class TradeLogInline(admin.TabularInline):
    model = TradeLog
    extra = 0
    can_delete = False
    readonly_fields = ("at", "from_status", "to_status", "applied", "detail")
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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
        "reject_reason",
    )
    list_filter = ("status", "leg", "side", "broker")
    search_fields = ("client_order_id", "broker_order_id", "option_symbol", "signal__signal_id")
    list_select_related = ("signal",)
    raw_id_fields = ("decision", "signal", "trade")
    inlines = (TradeLogInline,)


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

    @admin.action(description="Close the selected open trades now (sell to close at the current quote)")
    def close_selected(self, request: HttpRequest, queryset: QuerySet[Trade]) -> None:
        for trade in queryset.filter(status=Trade.Status.OPEN):
            result = position_close(trade_id=trade.pk)
            level = messages.SUCCESS if result.status == Trade.Status.CLOSED else messages.WARNING
            self.message_user(request, f"{trade}: {result.status}", level)


@admin.register(TradeLog)
class TradeLogAdmin(ReadOnlyAdmin):
    list_display = ("at", "order", "from_status", "to_status", "applied", "detail")
    list_filter = ("applied", "to_status")
    list_select_related = ("order",)
    raw_id_fields = ("order",)
