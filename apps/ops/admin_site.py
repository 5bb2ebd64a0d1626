"""The operations console's admin site: Django's admin plus the live dashboard and a status headline on the index.

Installed as the default site by ``apps.ops.admin_config.OpsAdminConfig``, so every app's ``@admin.register`` lands
here.  The dashboard's views go through ``admin_view``: staff only, the admin's login, never cached.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path


class OpsAdminSite(admin.AdminSite):
    site_header = "Trading platform operations"
    site_title = "Trading platform"
    index_title = "Operations console"
    index_template = "admin/ops/index.html"

    def get_urls(self) -> list[URLResolver | URLPattern]:
        from apps.ops.dashboard_views import dashboard_control, dashboard_data, dashboard_page

        # Ahead of the admin's own patterns; "ops/dashboard/" is not a model, so nothing of the admin's shadows it.
        ours: list[URLResolver | URLPattern] = [
            path("ops/dashboard/", self.admin_view(dashboard_page), name="ops_dashboard"),
            path("ops/dashboard/data/", self.admin_view(dashboard_data), name="ops_dashboard_data"),
            path("ops/dashboard/control/", self.admin_view(dashboard_control), name="ops_dashboard_control"),
        ]
        return ours + super().get_urls()

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        from apps.ops.dashboard_selectors import headline_status

        # The headline is what a person opening the console should see first: is anything on fire.
        return super().index(request, {**(extra_context or {}), "ops_headline": headline_status()})
