"""The operations API: read-only views of the platform's tables, its health and feeds, and the operator controls.

Authentication is a token (``Authorization: Token <key>``, from ``manage.py api_token --user NAME``) or the admin's
session.  Reading a table needs the model's ``view`` permission; running a control needs the control's own permission
(``apps.ops.controls``), checked and audited by ``control_run`` — the API adds nothing and skips nothing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from django.db.models import Model, QuerySet
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.api import serializers as api_serializers
from apps.api.pagination import NoCountLimitOffsetPagination
from apps.commentary.models import AiReport
from apps.distribution.models import DistributionPost
from apps.execution.models import Order, Position, Trade
from apps.ingestion.models import StreamControl
from apps.ops.controls import CONTROLS, Control, ControlError, ControlRefused, control_run
from apps.ops.models import Alert
from apps.risk.models import RiskDecision
from apps.signals.models import Signal


class ModelViewPermission(permissions.DjangoModelPermissions):
    """Reading needs the model's ``view`` permission (DRF's own map asks nothing for GET)."""

    perms_map: ClassVar[dict[str, list[str]]] = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
    }


# --- query filters ----------------------------------------------------------------------------------------------------
def _instant(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    value = parse_datetime(raw)
    if value is None:
        day = parse_date(raw)
        if day is None:
            raise ValidationError({name: f"{raw!r} is not an ISO date or date-time"})
        value = datetime(day.year, day.month, day.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _day(request: Request, name: str) -> date | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    value = parse_date(raw)
    if value is None:
        raise ValidationError({name: f"{raw!r} is not an ISO date"})
    return value


def _flag(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise ValidationError({name: f"{raw!r} is not true or false"})


def _choice(request: Request, name: str, choices: list[str]) -> str | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    if raw not in choices:
        raise ValidationError({name: f"{raw!r} is not one of {', '.join(choices)}"})
    return raw


def _since_until(queryset: QuerySet[Any], request: Request, field: str) -> QuerySet[Any]:
    since, until = _instant(request, "since"), _instant(request, "until")
    if since is not None:
        queryset = queryset.filter(**{f"{field}__gte": since})
    if until is not None:
        queryset = queryset.filter(**{f"{field}__lt": until})
    return queryset


def _param(
    name: str, description: str, kind: Any = OpenApiTypes.STR, enum: list[str] | None = None
) -> OpenApiParameter:
    return OpenApiParameter(name, kind, OpenApiParameter.QUERY, description=description, enum=enum)


def _window(field: str) -> list[OpenApiParameter]:
    return [
        _param("since", f"{field} at or after this ISO date or date-time (UTC unless it says)", OpenApiTypes.DATETIME),
        _param("until", f"{field} before this ISO date or date-time (UTC unless it says)", OpenApiTypes.DATETIME),
    ]


def _values(model: type[Model], field: str) -> list[str]:
    choices = getattr(model._meta.get_field(field), "choices", None) or []
    return [str(value) for value, _ in choices]


class _ReadOnlyViewSet(viewsets.ReadOnlyModelViewSet):
    permission_classes = (permissions.IsAuthenticated, ModelViewPermission)


# --- tables -----------------------------------------------------------------------------------------------------------
@extend_schema_view(
    list=extend_schema(
        summary="Signals, newest first",
        parameters=[
            _param("ticker", "underlying, e.g. SPY"),
            _param("status", "signal status", enum=_values(Signal, "status")),
            _param("strategy", "strategy", enum=_values(Signal, "strategy")),
            *_window("as_of"),
        ],
    ),
    retrieve=extend_schema(summary="One signal"),
)
class SignalViewSet(_ReadOnlyViewSet):
    serializer_class = api_serializers.SignalSerializer
    pagination_class = NoCountLimitOffsetPagination
    queryset = Signal.objects.all()

    def get_queryset(self) -> QuerySet[Signal]:
        queryset = Signal.objects.order_by("-as_of", "-id")
        request = self.request
        if ticker := request.query_params.get("ticker"):
            queryset = queryset.filter(ticker=ticker.upper())
        if value := _choice(request, "status", _values(Signal, "status")):
            queryset = queryset.filter(status=value)
        if value := _choice(request, "strategy", _values(Signal, "strategy")):
            queryset = queryset.filter(strategy=value)
        return _since_until(queryset, request, "as_of")


@extend_schema_view(
    list=extend_schema(
        summary="Risk decisions, newest first",
        parameters=[
            _param("ticker", "underlying of the signal"),
            _param("approved", "true or false", OpenApiTypes.BOOL),
            *_window("decided_at"),
        ],
    ),
    retrieve=extend_schema(summary="One risk decision with every check"),
)
class RiskDecisionViewSet(_ReadOnlyViewSet):
    serializer_class = api_serializers.RiskDecisionSerializer
    pagination_class = NoCountLimitOffsetPagination
    queryset = RiskDecision.objects.all()

    def get_queryset(self) -> QuerySet[RiskDecision]:
        queryset = RiskDecision.objects.select_related("signal").order_by("-decided_at", "-id")
        request = self.request
        if ticker := request.query_params.get("ticker"):
            queryset = queryset.filter(signal__ticker=ticker.upper())
        approved = _flag(request, "approved")
        if approved is not None:
            queryset = queryset.filter(approved=approved)
        return _since_until(queryset, request, "decided_at")


@extend_schema_view(
    list=extend_schema(
        summary="Orders, newest first",
        parameters=[
            _param("ticker", "underlying of the signal"),
            _param("status", "order status", enum=_values(Order, "status")),
            _param("leg", "entry or exit", enum=_values(Order, "leg")),
            *_window("created_at"),
        ],
    ),
    retrieve=extend_schema(summary="One order"),
)
class OrderViewSet(_ReadOnlyViewSet):
    serializer_class = api_serializers.OrderSerializer
    pagination_class = NoCountLimitOffsetPagination
    queryset = Order.objects.all()

    def get_queryset(self) -> QuerySet[Order]:
        queryset = Order.objects.select_related("signal").order_by("-created_at", "-id")
        request = self.request
        if ticker := request.query_params.get("ticker"):
            queryset = queryset.filter(signal__ticker=ticker.upper())
        if value := _choice(request, "status", _values(Order, "status")):
            queryset = queryset.filter(status=value)
        if value := _choice(request, "leg", _values(Order, "leg")):
            queryset = queryset.filter(leg=value)
        return _since_until(queryset, request, "created_at")


@extend_schema_view(
    list=extend_schema(
        summary="Positions (the book per option symbol)",
        parameters=[
            _param("ticker", "underlying"),
            _param("open", "true: only symbols held now; false: only flat ones", OpenApiTypes.BOOL),
        ],
    ),
    retrieve=extend_schema(summary="One position"),
)
class PositionViewSet(_ReadOnlyViewSet):
    serializer_class = api_serializers.PositionSerializer
    pagination_class = NoCountLimitOffsetPagination
    queryset = Position.objects.all()

    def get_queryset(self) -> QuerySet[Position]:
        queryset = Position.objects.order_by("-updated_at", "-id")
        request = self.request
        if ticker := request.query_params.get("ticker"):
            queryset = queryset.filter(ticker=ticker.upper())
        held = _flag(request, "open")
        if held is True:
            queryset = queryset.exclude(quantity=0)
        elif held is False:
            queryset = queryset.filter(quantity=0)
        return queryset


@extend_schema_view(
    list=extend_schema(
        summary="Trades (round trips), newest entry first",
        parameters=[
            _param("ticker", "underlying"),
            _param("status", "open or closed", enum=_values(Trade, "status")),
            _param("strategy", "strategy", enum=_values(Signal, "strategy")),
            *_window("entry_at"),
        ],
    ),
    retrieve=extend_schema(summary="One trade"),
)
class TradeViewSet(_ReadOnlyViewSet):
    serializer_class = api_serializers.TradeSerializer
    pagination_class = NoCountLimitOffsetPagination
    queryset = Trade.objects.all()

    def get_queryset(self) -> QuerySet[Trade]:
        queryset = Trade.objects.select_related("signal").order_by("-entry_at", "-id")
        request = self.request
        if ticker := request.query_params.get("ticker"):
            queryset = queryset.filter(ticker=ticker.upper())
        if value := _choice(request, "status", _values(Trade, "status")):
            queryset = queryset.filter(status=value)
        if value := _choice(request, "strategy", _values(Signal, "strategy")):
            queryset = queryset.filter(strategy=value)
        return _since_until(queryset, request, "entry_at")


@extend_schema_view(
    list=extend_schema(
        summary="Discord posts, newest due first",
        parameters=[
            _param("status", "post status", enum=_values(DistributionPost, "status")),
            _param("tier", "subscriber tier, e.g. premium"),
            _param("kind", "post kind", enum=_values(DistributionPost, "kind")),
            *_window("due_at"),
        ],
    ),
    retrieve=extend_schema(summary="One post"),
)
class DistributionPostViewSet(_ReadOnlyViewSet):
    serializer_class = api_serializers.DistributionPostSerializer
    pagination_class = NoCountLimitOffsetPagination
    queryset = DistributionPost.objects.all()

    def get_queryset(self) -> QuerySet[DistributionPost]:
        queryset = DistributionPost.objects.order_by("-due_at", "-id")
        request = self.request
        if value := _choice(request, "status", _values(DistributionPost, "status")):
            queryset = queryset.filter(status=value)
        if tier := request.query_params.get("tier"):
            queryset = queryset.filter(tier=tier)
        if value := _choice(request, "kind", _values(DistributionPost, "kind")):
            queryset = queryset.filter(kind=value)
        return _since_until(queryset, request, "due_at")


@extend_schema_view(
    list=extend_schema(
        summary="AI market reports, newest day first",
        parameters=[
            _param("kind", "report kind", enum=_values(AiReport, "kind")),
            _param("status", "report status", enum=_values(AiReport, "status")),
            _param("since", "reports about this New York day or later", OpenApiTypes.DATE),
            _param("until", "reports about days before this one", OpenApiTypes.DATE),
        ],
    ),
    retrieve=extend_schema(summary="One report with the facts it was written from"),
)
class AiReportViewSet(_ReadOnlyViewSet):
    pagination_class = NoCountLimitOffsetPagination
    queryset = AiReport.objects.all()

    def get_serializer_class(self) -> type[serializers.Serializer]:
        if self.action == "retrieve":
            return api_serializers.AiReportDetailSerializer
        return api_serializers.AiReportSerializer

    def get_queryset(self) -> QuerySet[AiReport]:
        queryset = AiReport.objects.order_by("-day", "kind", "-id")
        request = self.request
        if value := _choice(request, "kind", _values(AiReport, "kind")):
            queryset = queryset.filter(kind=value)
        if value := _choice(request, "status", _values(AiReport, "status")):
            queryset = queryset.filter(status=value)
        since, until = _day(request, "since"), _day(request, "until")
        if since is not None:
            queryset = queryset.filter(day__gte=since)
        if until is not None:
            queryset = queryset.filter(day__lt=until)
        return queryset


@extend_schema_view(
    list=extend_schema(
        summary="Alerts, newest first",
        parameters=[
            _param("open", "true: not resolved; false: resolved", OpenApiTypes.BOOL),
            _param("acknowledged", "true or false", OpenApiTypes.BOOL),
            _param("severity", "severity", enum=_values(Alert, "severity")),
            _param("rule", "alert rule, e.g. FeedStale"),
            *_window("raised_at"),
        ],
    ),
    retrieve=extend_schema(summary="One alert"),
)
class AlertViewSet(_ReadOnlyViewSet):
    serializer_class = api_serializers.AlertSerializer
    pagination_class = NoCountLimitOffsetPagination
    queryset = Alert.objects.all()

    def get_queryset(self) -> QuerySet[Alert]:
        queryset = Alert.objects.order_by("-raised_at", "-id")
        request = self.request
        is_open = _flag(request, "open")
        if is_open is not None:
            queryset = queryset.filter(resolved_at__isnull=is_open)
        acknowledged = _flag(request, "acknowledged")
        if acknowledged is not None:
            queryset = queryset.filter(acknowledged_at__isnull=not acknowledged)
        if value := _choice(request, "severity", _values(Alert, "severity")):
            queryset = queryset.filter(severity=value)
        if rule := request.query_params.get("rule"):
            queryset = queryset.filter(rule=rule)
        return _since_until(queryset, request, "raised_at")


# --- health and feeds -------------------------------------------------------------------------------------------------
class HealthApi(APIView):
    """The platform's health (``manage.py health``): 200 when healthy, 503 when not, the same body either way."""

    permission_classes = (permissions.IsAuthenticated,)

    @extend_schema(
        summary="Health: database, Redis, queues, canary, kill switch, broker, feeds",
        responses={200: api_serializers.HealthSerializer, 503: api_serializers.HealthSerializer},
    )
    def get(self, request: Request) -> Response:
        from apps.ops.selectors import health_snapshot

        snapshot = health_snapshot()
        body = snapshot.as_dict()
        return Response(body, status=status.HTTP_200_OK if snapshot.ok else status.HTTP_503_SERVICE_UNAVAILABLE)


class FeedsApi(APIView):
    """Each pausable feed: paused or not, by whom, since when, why."""

    permission_classes = (permissions.IsAuthenticated, ModelViewPermission)
    queryset = StreamControl.objects.none()  # what ModelViewPermission asks about: ingestion.view_streamcontrol

    @extend_schema(
        summary="Feeds and their pause state", responses={200: api_serializers.FeedStateSerializer(many=True)}
    )
    def get(self, request: Request) -> Response:
        from apps.ingestion.feeds import FEEDS, feeds_state

        rows = [{"feed": feed, "description": FEEDS[feed], **state} for feed, state in feeds_state().items()]
        return Response(api_serializers.FeedStateSerializer(rows, many=True).data)


# --- controls ---------------------------------------------------------------------------------------------------------
class ControlListApi(APIView):
    """Every control, its parameters and permission, and whether the caller may run it."""

    permission_classes = (permissions.IsAuthenticated,)

    @extend_schema(summary="The operator controls", responses={200: api_serializers.ControlSerializer(many=True)})
    def get(self, request: Request) -> Response:
        data = api_serializers.ControlSerializer(list(CONTROLS.values()), many=True, context={"request": request}).data
        return Response(data)


class ControlRunApi(APIView):
    """``POST /api/controls/<name>/`` with the control's parameters as a JSON object: ``control_run(...,
    channel="api")``.  200 with the result, 400 on bad parameters or a state the control cannot act on, 403 with the
    reason when the caller lacks the control's permission; every attempt is in the audit log."""

    permission_classes = (permissions.IsAuthenticated,)
    control_name: ClassVar[str] = ""

    def post(self, request: Request) -> Response:
        params = request.data
        if not isinstance(params, dict):
            return Response({"detail": "the body must be a JSON object of parameters"}, status=400)
        try:
            result = control_run(self.control_name, user=request.user, params=params, channel="api")
        except ControlRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_403_FORBIDDEN)
        except ControlError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"ok": result.ok, "message": result.message, "detail": result.detail})


def control_run_view(control: Control) -> type[ControlRunApi]:
    """``ControlRunApi`` for one control, with its parameters in the schema."""
    request_serializer = api_serializers.control_params_serializer(control)
    permission = f"needs the permission `{control.permission}`"
    described = extend_schema(
        operation_id=f"control_{control.name}",
        summary=control.label,
        description=f"Runs the `{control.name}` control; {permission}.  Audited as `control.{control.name}`.",
        request=request_serializer,
        responses={
            200: api_serializers.ControlResultSerializer,
            400: OpenApiResponse(api_serializers.ErrorSerializer, description="bad parameters or nothing to do"),
            403: OpenApiResponse(api_serializers.ErrorSerializer, description=f"refused: {permission}"),
        },
        tags=["controls"],
    )
    name = "".join(part.capitalize() for part in control.name.split("_")) + "Api"
    view = type(name, (ControlRunApi,), {"control_name": control.name, "__doc__": ControlRunApi.__doc__})
    return extend_schema_view(post=described)(view)
