"""Posting one tweet through X API v2 (``POST /2/tweets``) with ``requests`` and an OAuth 2.0 user-context token.

Answers: 201 carries ``data.id``, the proof of publication.  429 is a rate limit: X says when the window resets
(``x-rate-limit-reset``, epoch seconds) and sometimes ``retry-after``; we wait for it.  400/401/403 will never succeed
with the same token and text (403 includes "duplicate content": X refuses the same text twice), so they are
permanent.  5xx, timeouts and connection errors are transient.
"""

from __future__ import annotations

import time
from typing import Any

import requests

from apps.social.delivery import Published, TransportError, excerpt, header_seconds

TWEET_URL = "https://x.com/i/web/status/{id}"
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 413, 422})
DEFAULT_RATE_LIMIT_WAIT = 60.0  # a 429 that says nothing about when: X's windows are 15 minutes, retry in one


def _rate_limit_wait(response: requests.Response) -> float:
    retry_after = header_seconds(response, "retry-after")
    if retry_after is not None:
        return max(retry_after, 0.0)
    reset = header_seconds(response, "x-rate-limit-reset")
    if reset is not None:
        # X's own clock against ours: the header is an epoch instant, so compare with the real wall clock (not the
        # platform clock, which a rehearsal may shift).
        return max(reset - time.time(), 0.0)
    return DEFAULT_RATE_LIMIT_WAIT


def _problem(body: Any) -> str:
    """X's explanation of a refusal (``detail`` of an RFC 7807 problem, or the first ``errors`` message)."""
    if not isinstance(body, dict):
        return ""
    if body.get("detail"):
        return str(body["detail"])
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("message") or errors[0].get("detail") or "")
    return ""


def tweet_create(*, base_url: str, token: str, text: str, timeout: float) -> Published:
    """Publish ``text`` as a tweet and return its id and address; every other outcome raises ``TransportError``."""
    try:
        response = requests.post(
            f"{base_url.rstrip('/')}/2/tweets",
            json={"text": text},
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )
    except requests.RequestException as exc:
        raise TransportError(f"X unreachable: {exc.__class__.__name__}: {exc}", permanent=False) from exc

    try:
        body: Any = response.json() if response.text else None
    except ValueError:
        body = None
    status = response.status_code
    if status == 429:
        raise TransportError(
            "X rate limit",
            permanent=False,
            status_code=status,
            retry_after=_rate_limit_wait(response),
            excerpt=excerpt(response),
        )
    if status in PERMANENT_STATUSES:
        reason = _problem(body) or f"status {status}"
        raise TransportError(
            f"X refused the tweet: {reason}", permanent=True, status_code=status, excerpt=excerpt(response)
        )
    if not 200 <= status < 300:
        raise TransportError(f"X answered {status}", permanent=False, status_code=status, excerpt=excerpt(response))
    data = body.get("data") if isinstance(body, dict) else None
    tweet_id = str(data.get("id", "")) if isinstance(data, dict) else ""
    if not tweet_id:
        # A 2xx means X created it; posting again would duplicate (and draw a 403), so it counts as published.
        return Published(external_id="", external_url="", status_code=status, excerpt=excerpt(response))
    return Published(
        external_id=tweet_id,
        external_url=TWEET_URL.format(id=tweet_id),
        status_code=status,
        excerpt=excerpt(response),
    )
