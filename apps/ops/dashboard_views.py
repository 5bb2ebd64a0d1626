"""The operations dashboard inside the admin: the page, the JSON it polls, and the control endpoint its buttons post to.

All three are wrapped by ``OpsAdminSite.admin_view`` (staff only, the admin's login, never cached, CSRF on POST).  The
page embeds a first snapshot so it draws at once; the script then polls ``data/`` every ``DASHBOARD_REFRESH_SECONDS``
and appends the chart samples newer than the last one it has.  Every button goes through ``control_run`` with channel
``dashboard``: the permission check and the audit entry are the control layer's, the same as the admin's, the API's
and Telegram's.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from apps.ops.controls import CONTROLS, ControlError, ControlRefused, control_allowed, control_run
from apps.ops.dashboard_selectors import dashboard_series, dashboard_snapshot

# Form fields that are not parameters of the control.
_NOT_PARAMS = {"csrfmiddlewaretoken", "control"}


def control_permissions(request: HttpRequest) -> dict[str, dict[str, Any]]:
    """Each control with whether this user may run it and the permission it needs (the page disables the rest)."""
    return {
        name: {
            "allowed": control_allowed(name, user=request.user),
            "permission": control.permission,
            "label": control.label,
        }
        for name, control in CONTROLS.items()
    }


@require_GET
def dashboard_page(request: HttpRequest) -> TemplateResponse:
    config = {
        "data_url": reverse("admin:ops_dashboard_data"),
        "control_url": reverse("admin:ops_dashboard_control"),
        "refresh_seconds": settings.DASHBOARD_REFRESH_SECONDS,
        "sample_seconds": settings.DASHBOARD_SAMPLE_SECONDS,
        "controls": control_permissions(request),
        "snapshot": dashboard_snapshot(),
        "series": dashboard_series(),
    }
    context = {
        **admin.site.each_context(request),
        "title": "Live dashboard",
        # The page wants the full width: the app list is one click away in the breadcrumbs.
        "is_nav_sidebar_enabled": False,
        "dashboard_config": config,
        "controls": config["controls"],
        "cache_patterns": (
            ("latest", "The next ticks write them again."),
            ("analytics", "The next analytics run writes them again."),
        ),
    }
    return TemplateResponse(request, "admin/ops/dashboard.html", context)


@require_GET
def dashboard_data(request: HttpRequest) -> JsonResponse:
    """The snapshot and the chart samples after ``since`` (epoch seconds; all of today's without it)."""
    since_text = request.GET.get("since", "")
    try:
        since = float(since_text) if since_text else None
    except ValueError:
        return JsonResponse({"error": f"since must be epoch seconds, not {since_text!r}"}, status=400)
    return JsonResponse({**dashboard_snapshot(), "series": dashboard_series(since=since)})


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


@require_POST
def dashboard_control(request: HttpRequest) -> HttpResponse:
    """Run the control named by the form's ``control`` field with the other fields as its parameters.

    The script posts with ``Accept: application/json`` and reads ``{ok, message, detail}``: 200 when the control ran,
    403 when the user lacks its permission, 400 when it could not run.  A plain form post (no script) gets the
    message on the dashboard after a redirect, or the 403 page.
    """
    name = request.POST.get("control", "")
    params = {
        key: value for key in request.POST if key not in _NOT_PARAMS and (value := request.POST.get(key, "")).strip()
    }
    try:
        result = control_run(name, user=request.user, params=params, channel="dashboard")
    except ControlRefused as exc:
        if _wants_json(request):
            return JsonResponse({"ok": False, "message": f"Refused: {exc}", "detail": {}}, status=403)
        return HttpResponseForbidden(f"Refused: {exc}", content_type="text/plain; charset=utf-8")
    except ControlError as exc:
        if _wants_json(request):
            return JsonResponse({"ok": False, "message": str(exc), "detail": {}}, status=400)
        messages.error(request, str(exc))
        return HttpResponseRedirect(reverse("admin:ops_dashboard"), status=303)
    if _wants_json(request):
        return JsonResponse({"ok": result.ok, "message": result.message, "detail": result.detail})
    messages.add_message(request, messages.SUCCESS if result.ok else messages.WARNING, result.message)
    return HttpResponseRedirect(reverse("admin:ops_dashboard"), status=303)
