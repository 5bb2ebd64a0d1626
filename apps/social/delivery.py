"""What the X and Reddit transports share: the error every non-success becomes, and the proof of a publication.

``TransportError`` carries what the publish service needs to decide: ``permanent`` (stop trying: refused content,
bad credentials), ``retry_after`` (a rate limit: try again no sooner than this many seconds).  Anything else is
transient and retried with backoff.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests

from apps.core.transport import TransportError

__all__ = ["Published", "TransportError", "excerpt"]  # TransportError re-exported: callers catch it from here

EXCERPT_CHARS = 300


@dataclass(frozen=True)
class Published:
    """The platform accepted the post: its id and address are the proof we store."""

    external_id: str
    external_url: str
    status_code: int | None  # None: the local sink, no HTTP involved
    excerpt: str


def excerpt(response: requests.Response) -> str:
    return (response.text or "")[:EXCERPT_CHARS]


def header_seconds(response: requests.Response, name: str) -> float | None:
    """A numeric header as a float, or None when it is missing or not a number."""
    raw = response.headers.get(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        return None
