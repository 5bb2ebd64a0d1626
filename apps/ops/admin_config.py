"""The admin app with the operations console's own site (``apps.ops.admin_site.OpsAdminSite``).

Django's documented way to replace the default ``admin.site``: every ``@admin.register`` in every app lands on the
console site, so the dashboard lives inside the same admin, behind the same login, with the same permissions.  This
module holds only the config (it is imported while the app registry loads, before any model exists).
"""

from __future__ import annotations

from django.contrib.admin.apps import AdminConfig


class OpsAdminConfig(AdminConfig):
    default_site = "apps.ops.admin_site.OpsAdminSite"
