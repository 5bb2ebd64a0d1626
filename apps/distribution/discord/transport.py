"""Posting one payload to a Discord webhook with the ``discord-webhook`` client.

``wait=true`` makes Discord answer with the created message, whose id is the proof of delivery we store.  Every
non-success is raised as ``TransportError`` carrying what the caller needs to decide: ``permanent`` (stop trying:
the webhook is gone or the payload is refused), ``retry_after`` (a rate limit: try again no sooner than this).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import requests

from apps.core.transport import TransportError

__all__ = ["Delivery", "TransportError", "webhook_send"]  # TransportError re-exported: callers catch it here
from discord_webhook import DiscordWebhook

logger = logging.getLogger(__name__)

HTTP_TIMEOUT_SECONDS = 10.0
EXCERPT_CHARS = 300
# 4xx answers that will never succeed on a retry with the same payload: gone, unauthorized, forbidden, malformed.
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 405, 413})


@dataclass(frozen=True)
class Delivery:
    message_id: str
    status_code: int
    excerpt: str
    # Discord's bucket state after this request: when nothing remains, the next send would be a 429.
    remaining: int | None
    reset_after: float | None


def _float_header(response: requests.Response, name: str) -> float | None:
    raw = response.headers.get(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _retry_after(response: requests.Response, body: Any) -> float:
    """Seconds to wait after a 429: the ``Retry-After`` header, else the body's ``retry_after``, else one second."""
    header = _float_header(response, "Retry-After")
    if header is not None:
        return max(header, 0.0)
    if isinstance(body, dict):
        try:
            return max(float(body.get("retry_after", 1.0)), 0.0)
        except (TypeError, ValueError):
            return 1.0
    return 1.0


def webhook_send(*, url: str, payload: dict[str, Any], timeout: float = HTTP_TIMEOUT_SECONDS) -> Delivery:
    """Send ``payload`` (``content``, ``embeds``, ``allowed_mentions``) to ``url`` and return the created message."""
    webhook = DiscordWebhook(
        url=url,
        content=payload.get("content") or None,
        embeds=list(payload.get("embeds") or []),
        allowed_mentions=payload.get("allowed_mentions") or {"parse": []},
        username=payload.get("username") or False,
        wait=True,
        timeout=timeout,
        # Rate limits are the caller's to schedule: the library's own retry sleeps inside the worker.
        rate_limit_retry=False,
    )
    try:
        # api_post_request returns the raw response; execute() would try to parse non-JSON error pages and raise.
        response = webhook.api_post_request()
    except requests.RequestException as exc:
        raise TransportError(f"webhook unreachable: {exc.__class__.__name__}: {exc}", permanent=False) from exc

    text = response.text or ""
    excerpt = text[:EXCERPT_CHARS]
    try:
        body: Any = response.json() if text else None
    except (ValueError, json.JSONDecodeError):
        body = None

    status = response.status_code
    if status == 429:
        raise TransportError(
            "rate limited",
            permanent=False,
            status_code=status,
            retry_after=_retry_after(response, body),
            excerpt=excerpt,
        )
    if status in PERMANENT_STATUSES:
        raise TransportError(f"webhook refused with {status}", permanent=True, status_code=status, excerpt=excerpt)
    if not 200 <= status < 300:
        raise TransportError(f"webhook answered {status}", permanent=False, status_code=status, excerpt=excerpt)
    # With wait=true a success carries the created message.  A 2xx without one (a proxy that drops bodies) still
    # means Discord accepted the post: sending it again would show it twice, so it counts as delivered, id unknown.
    message_id = str(body.get("id", "")) if isinstance(body, dict) else ""
    if not message_id:
        logger.warning("discord webhook answered %s without a message id", status)
    remaining = _float_header(response, "X-RateLimit-Remaining")
    return Delivery(
        message_id=message_id,
        status_code=status,
        excerpt=excerpt,
        remaining=int(remaining) if remaining is not None else None,
        reset_after=_float_header(response, "X-RateLimit-Reset-After"),
    )
