"""``POST /ops/alertmanager/``: Alertmanager's webhook receiver, authenticated with a bearer token."""

from __future__ import annotations

import hmac
import json
import logging

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from apps.ops.alertmanager import PayloadError, payload_apply

logger = logging.getLogger(__name__)


def _authorized(request: HttpRequest) -> bool:
    """``Authorization: Bearer <ALERTMANAGER_WEBHOOK_TOKEN>``, compared in constant time; no token set refuses all."""
    expected = settings.ALERTMANAGER_WEBHOOK_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if not expected or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def _deliver_after_commit() -> None:
    from apps.ops.tasks import alerts_deliver

    alerts_deliver.delay()


@csrf_exempt  # a machine caller with a bearer token, not a browser session
@require_POST
def alertmanager_webhook(request: HttpRequest) -> JsonResponse:
    """Apply Alertmanager's payload (``apps.ops.alertmanager``) and queue the notices; 401 without the token, 400
    for a body that is not a version 4 payload (Alertmanager logs the answer; it retries only 5xx)."""
    if not _authorized(request):
        logger.warning("alertmanager webhook refused: missing or wrong bearer token")
        return JsonResponse({"error": "a valid bearer token is required"}, status=401)
    try:
        payload = json.loads(request.body or b"null")
    except ValueError:
        return JsonResponse({"error": "the body is not JSON"}, status=400)
    try:
        with transaction.atomic():
            report = payload_apply(payload)
            transaction.on_commit(_deliver_after_commit)
    except PayloadError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    return JsonResponse(report.as_dict())
