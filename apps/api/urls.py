"""``/api/``: read-only tables (router), health, feeds, and one URL per operator control."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path
from rest_framework.routers import DefaultRouter

from apps.api import views
from apps.ops.controls import CONTROLS

router = DefaultRouter()
router.register("signals", views.SignalViewSet, basename="api-signal")
router.register("risk-decisions", views.RiskDecisionViewSet, basename="api-risk-decision")
router.register("orders", views.OrderViewSet, basename="api-order")
router.register("positions", views.PositionViewSet, basename="api-position")
router.register("trades", views.TradeViewSet, basename="api-trade")
router.register("posts", views.DistributionPostViewSet, basename="api-post")
router.register("reports", views.AiReportViewSet, basename="api-report")
router.register("alerts", views.AlertViewSet, basename="api-alert")

urlpatterns: list[URLPattern | URLResolver] = [
    path("health/", views.HealthApi.as_view(), name="api-health"),
    path("feeds/", views.FeedsApi.as_view(), name="api-feeds"),
    path("controls/", views.ControlListApi.as_view(), name="api-controls"),
    *(
        path(f"controls/{name}/", views.control_run_view(control).as_view(), name=f"api-control-{name}")
        for name, control in CONTROLS.items()
    ),
    *router.urls,
]
