"""One call to Claude's Messages API with the official ``anthropic`` SDK.

The SDK retries connection errors, timeouts, 408, 409, 429 and 5xx (529 overloaded included)
``settings.ANTHROPIC_MAX_RETRIES`` times, honouring ``retry-after``; each attempt waits at most
``settings.ANTHROPIC_TIMEOUT_SECONDS``.  What still fails reaches the caller as ``TransportError``, with the number of
attempts the SDK made (read from the ``x-stainless-retry-count`` header of its last request).  ``permanent`` marks
errors a later retry cannot fix (bad key, bad request, unknown model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    import anthropic
    import httpx2

PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 413, 422})


class TransportError(Exception):
    def __init__(self, message: str, *, permanent: bool, status_code: int | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status_code = status_code
        self.attempts = attempts


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    input_tokens: int
    output_tokens: int
    stop_reason: str
    attempts: int  # HTTP attempts the SDK made: 1 + its retries


def client() -> anthropic.Anthropic:
    # Imported here: the SDK takes seconds to import, and only processes that actually call Claude should pay that.
    import anthropic

    return anthropic.Anthropic(
        api_key=settings.ANTHROPIC_API_KEY,
        base_url=settings.ANTHROPIC_BASE_URL or None,
        max_retries=settings.ANTHROPIC_MAX_RETRIES,
        timeout=settings.ANTHROPIC_TIMEOUT_SECONDS,
    )


def _attempts(request: httpx2.Request | None) -> int:
    """Attempts made up to and including ``request``: the SDK numbers its retries in a request header."""
    if request is None:
        return 1
    try:
        return int(request.headers.get("x-stainless-retry-count", "0")) + 1
    except ValueError:
        return 1


def message_create(*, system: str, prompt: str, max_tokens: int) -> Completion:
    """Ask Claude once (with the SDK's retries) and return the text and the token usage."""
    import anthropic

    try:
        raw = client().messages.with_raw_response.create(
            model=settings.ANTHROPIC_MODEL,
            max_tokens=max_tokens,
            system=system,
            messages=[{"role": "user", "content": prompt}],
        )
        message = raw.parse()
    except anthropic.APIStatusError as exc:
        attempts = _attempts(exc.request)
        raise TransportError(
            f"Anthropic API answered {exc.status_code} after {attempts} attempts: {exc.message}",
            permanent=exc.status_code in PERMANENT_STATUSES,
            status_code=exc.status_code,
            attempts=attempts,
        ) from exc
    except anthropic.APIConnectionError as exc:
        attempts = _attempts(exc.request)
        what = "timed out" if isinstance(exc, anthropic.APITimeoutError) else "unreachable"
        raise TransportError(
            f"Anthropic API {what} after {attempts} attempts "
            f"(timeout {settings.ANTHROPIC_TIMEOUT_SECONDS} s each): {exc.__class__.__name__}: {exc}",
            permanent=False,
            attempts=attempts,
        ) from exc
    attempts = raw.retries_taken + 1
    text = "".join(block.text for block in message.content if block.type == "text").strip()
    if not text:
        raise TransportError(
            f"Anthropic API returned no text (stop_reason={message.stop_reason})", permanent=False, attempts=attempts
        )
    return Completion(
        text=text,
        model=message.model or settings.ANTHROPIC_MODEL,
        input_tokens=message.usage.input_tokens,
        output_tokens=message.usage.output_tokens,
        stop_reason=message.stop_reason or "",
        attempts=attempts,
    )
