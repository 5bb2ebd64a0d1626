from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from apps.ops.exporter import metrics_view
from apps.ops.webhooks import alertmanager_webhook

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The operations API: read-only tables, health, feeds and the operator controls (docs/api.md).
    path("api/", include("apps.api.urls")),
    # Every process of the web group plus the scrape-time platform gauges (apps/ops/exporter.py).
    path("metrics", metrics_view, name="prometheus-django-metrics"),
    # Alertmanager's webhook receiver (bearer token; docs/alerting.md).
    path("ops/alertmanager/", alertmanager_webhook, name="ops-alertmanager-webhook"),
]
