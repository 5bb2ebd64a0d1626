"""What the API shows of each table (read-only), and the shapes of the health, feeds and control endpoints.

Serializers only shape data: every write goes through ``apps.ops.controls.control_run``.  Raw payloads that can be
large (a report's ``facts``) stay in the detail view.
"""

from __future__ import annotations

from rest_framework import serializers

from apps.commentary.models import AiReport
from apps.distribution.models import DistributionPost
from apps.execution.models import Order, Position, Trade
from apps.ops.controls import Control
from apps.ops.models import Alert
from apps.risk.models import RiskDecision
from apps.signals.models import Signal


class SignalSerializer(serializers.ModelSerializer):
    class Meta:
        model = Signal
        fields = (
            "id",
            "signal_id",
            "strategy",
            "bucket",
            "strategy_version",
            "ticker",
            "direction",
            "option_symbol",
            "expiry",
            "right",
            "strike",
            "limit_price",
            "quantity_hint",
            "profit_target_pct",
            "stop_loss_pct",
            "time_exit_at",
            "entry_deadline",
            "rule",
            "rationale",
            "features",
            "contributions",
            "evidence",
            "confidence",
            "status",
            "as_of",
            "created_at",
        )
        read_only_fields = fields


class RiskDecisionSerializer(serializers.ModelSerializer):
    signal_id = serializers.CharField(source="signal.signal_id", read_only=True)
    ticker = serializers.CharField(source="signal.ticker", read_only=True)

    class Meta:
        model = RiskDecision
        fields = (
            "id",
            "signal_id",
            "ticker",
            "approved",
            "quantity",
            "limit_price",
            "checks",
            "reason",
            "account",
            "decided_at",
        )
        read_only_fields = fields


class OrderSerializer(serializers.ModelSerializer):
    signal_id = serializers.CharField(source="signal.signal_id", read_only=True)
    ticker = serializers.CharField(source="signal.ticker", read_only=True)

    class Meta:
        model = Order
        fields = (
            "id",
            "client_order_id",
            "signal_id",
            "ticker",
            "trade",
            "leg",
            "attempt",
            "exit_reason",
            "option_symbol",
            "side",
            "quantity",
            "limit_price",
            "status",
            "broker",
            "broker_order_id",
            "ib_order_id",
            "reject_reason",
            "created_at",
            "submitted_at",
            "filled_at",
            "avg_fill_price",
            "filled_quantity",
        )
        read_only_fields = fields


class PositionSerializer(serializers.ModelSerializer):
    class Meta:
        model = Position
        fields = (
            "id",
            "option_symbol",
            "ticker",
            "quantity",
            "avg_cost",
            "realized_pnl",
            "mark",
            "unrealized_pnl",
            "updated_at",
        )
        read_only_fields = fields


class TradeSerializer(serializers.ModelSerializer):
    signal_id = serializers.CharField(source="signal.signal_id", read_only=True)

    class Meta:
        model = Trade
        fields = (
            "id",
            "signal_id",
            "strategy",
            "ticker",
            "option_symbol",
            "quantity",
            "entry_price",
            "entry_at",
            "exit_price",
            "exit_at",
            "exit_reason",
            "exit_note",
            "realized_pnl",
            "status",
            "fees",
            "last_mark",
            "last_mark_at",
            "target_price",
            "stop_price",
        )
        read_only_fields = fields


class DistributionPostSerializer(serializers.ModelSerializer):
    class Meta:
        model = DistributionPost
        fields = (
            "id",
            "kind",
            "trade_id",
            "ref",
            "amends",
            "tier",
            "due_at",
            "release_at",
            "status",
            "content",
            "sink",
            "message_id",
            "sent_at",
            "lateness_ms",
            "late",
            "attempts",
            "failures",
            "last_error",
            "created_at",
        )
        read_only_fields = fields


class AiReportSerializer(serializers.ModelSerializer):
    class Meta:
        model = AiReport
        fields: tuple[str, ...] = (
            "id",
            "kind",
            "day",
            "model",
            "is_template",
            "content",
            "published_text",
            "status",
            "error",
            "input_tokens",
            "output_tokens",
            "cost_usd",
            "decided_at",
            "decided_by",
            "decision_note",
            "created_at",
            "updated_at",
        )
        read_only_fields: tuple[str, ...] = fields


class AiReportDetailSerializer(AiReportSerializer):
    class Meta(AiReportSerializer.Meta):
        fields = (*AiReportSerializer.Meta.fields, "facts")
        read_only_fields = fields


class AlertSerializer(serializers.ModelSerializer):
    class Meta:
        model = Alert
        fields = (
            "id",
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
        read_only_fields = fields


class HealthSerializer(serializers.Serializer):
    """The main fields of ``apps.ops.selectors.health_snapshot()``; the response carries every field it has."""

    ok = serializers.BooleanField()
    at = serializers.CharField()
    database_ok = serializers.BooleanField()
    database_error = serializers.CharField()
    redis_ok = serializers.BooleanField()
    redis_error = serializers.CharField()
    redis_used_memory = serializers.IntegerField(allow_null=True)
    broker_ok = serializers.BooleanField()
    queue_depths = serializers.DictField(child=serializers.IntegerField())
    canary_age_seconds = serializers.FloatField(allow_null=True)
    canary_stale = serializers.BooleanField()
    kill_switch_on = serializers.BooleanField(allow_null=True)
    dead_letters_last_24h = serializers.IntegerField(allow_null=True)
    uw_stream = serializers.DictField()
    trading_broker = serializers.CharField()
    trading_broker_ok = serializers.BooleanField()
    ib = serializers.DictField()


class FeedStateSerializer(serializers.Serializer):
    feed = serializers.CharField()
    description = serializers.CharField()
    paused = serializers.BooleanField()
    by = serializers.CharField()
    since = serializers.DateTimeField(allow_null=True)
    reason = serializers.CharField()


class ControlParamSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.ChoiceField(choices=["text", "int", "choice"])
    help = serializers.CharField()
    required = serializers.BooleanField()
    choices = serializers.ListField(child=serializers.CharField())


class ControlSerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()
    permission = serializers.CharField()
    params = ControlParamSerializer(many=True)
    allowed = serializers.SerializerMethodField()

    def get_allowed(self, control: Control) -> bool:
        from apps.ops.controls import control_allowed

        return control_allowed(control.name, user=self.context["request"].user)


class ControlResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField(help_text="false when the service ran but did not get there (risk said no...)")
    message = serializers.CharField()
    detail = serializers.DictField()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


def control_params_serializer(control: Control) -> type[serializers.Serializer]:
    """A serializer describing ``control``'s parameters, for the schema (``control_run`` validates them itself)."""
    fields: dict[str, serializers.Field] = {}
    for param in control.params:
        common = {"required": param.required, "help_text": param.help}
        if param.kind == "int":
            fields[param.name] = serializers.IntegerField(min_value=1, **common)
        elif param.kind == "choice":
            fields[param.name] = serializers.ChoiceField(choices=list(param.choices), **common)
        else:
            fields[param.name] = serializers.CharField(max_length=500, allow_blank=not param.required, **common)
    name = "".join(part.capitalize() for part in control.name.split("_")) + "Params"
    return type(name, (serializers.Serializer,), fields)
