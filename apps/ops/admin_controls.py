"""Admin actions that run operator controls (``apps.ops.controls``): the Django admin is one more console, so its
actions call ``control_run(..., channel="admin")`` and show what it says — a result per row, a refusal or an error as
an admin error message.

An action is offered only to a user who may run its control: the action says ``permissions=["<control>"]`` and the
model admin's ``has_<control>_permission`` asks ``control_allowed``; ``control_run`` checks again and audits every
attempt, so a permission withdrawn between the page and the press is still refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from apps.ops.controls import CONTROLS, ControlError, ControlRefused, control_run


class ControlReasonForm(forms.Form):
    reason = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="why: kept in the audit log (and, for a rejection, in the signal's risk decision)",
    )


def control_action_run(
    modeladmin: admin.ModelAdmin, request: HttpRequest, name: str, param_sets: Iterable[dict[str, Any]]
) -> int:
    """Run control ``name`` once per parameter set; one admin message per run.  A refusal stops the batch (the next
    rows would be refused for the same reason).  Returns how many runs succeeded."""
    succeeded = 0
    for params in param_sets:
        try:
            result = control_run(name, user=request.user, params=params, channel="admin")
        except ControlRefused as exc:
            modeladmin.message_user(request, f"Refused: {exc}", messages.ERROR)
            break
        except ControlError as exc:
            modeladmin.message_user(request, f"Not done: {exc}", messages.ERROR)
            continue
        succeeded += int(result.ok)
        modeladmin.message_user(request, result.message, messages.SUCCESS if result.ok else messages.WARNING)
    return succeeded


def control_action_with_reason(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    name: str,
    action: str,
    explanation: str,
    params_of: Callable[[Any], dict[str, Any]],
) -> HttpResponse | None:
    """An action that asks for a reason first: the intermediate page lists the rows and a reason field, and posting
    it (``apply``) runs control ``name`` for each row with ``params_of(row) | {"reason": ...}``."""
    form = ControlReasonForm(request.POST if "apply" in request.POST else None)
    rows: list[Model] = list(queryset)
    if form.is_valid():
        reason = form.cleaned_data["reason"]
        control_action_run(modeladmin, request, name, ({**params_of(row), "reason": reason} for row in rows))
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "opts": modeladmin.model._meta,
        "title": CONTROLS[name].label,
        "explanation": explanation,
        "rows": rows,
        "form": form,
        "action_name": action,
        "checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/ops/control_action.html", context)
