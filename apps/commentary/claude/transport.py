"""One call to Claude's Messages API with the official ``anthropic`` SDK.

The SDK retries connection errors, 408, 409, 429 and 5xx (529 overloaded included) ``MAX_RETRIES`` times, honouring
``retry-after``; what still fails reaches the caller as ``TransportError``.  ``permanent`` marks errors a later retry
cannot fix (bad key, bad request, unknown model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    import anthropic

MAX_RETRIES = 2
TIMEOUT_SECONDS = 30.0
PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 413, 422})


class TransportError(Exception):
    def __init__(self, message: str, *, permanent: bool, status_code: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.status_code = status_code


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    input_tokens: int
    output_tokens: int
    stop_reason: str


def client() -> anthropic.Anthropic:
    # Imported here: the SDK takes seconds to import, and only processes that actually call Claude should pay that.
    import anthropic

    return anthropic.Anthropic(
        api_key=settings.ANTHROPIC_API_KEY,
        base_url=settings.ANTHROPIC_BASE_URL or None,
        max_retries=MAX_RETRIES,
        timeout=TIMEOUT_SECONDS,
    )


def message_create(*, system: str, prompt: str, max_tokens: int) -> Completion:
    """Ask Claude once (with the SDK's retries) and return the text and the token usage."""
    import anthropic

    try:
        message = client().messages.create(
            model=settings.ANTHROPIC_MODEL,
            max_tokens=max_tokens,
            system=system,
            messages=[{"role": "user", "content": prompt}],
        )
    except anthropic.APIStatusError as exc:
        raise TransportError(
            f"Anthropic API answered {exc.status_code} after {MAX_RETRIES + 1} attempts: {exc.message}",
            permanent=exc.status_code in PERMANENT_STATUSES,
            status_code=exc.status_code,
        ) from exc
    except anthropic.APIConnectionError as exc:
        raise TransportError(
            f"Anthropic API unreachable after {MAX_RETRIES + 1} attempts: {exc.__class__.__name__}: {exc}",
            permanent=False,
        ) from exc
    text = "".join(block.text for block in message.content if block.type == "text").strip()
    if not text:
        raise TransportError(f"Anthropic API returned no text (stop_reason={message.stop_reason})", permanent=False)
    return Completion(
        text=text,
        model=message.model or settings.ANTHROPIC_MODEL,
        input_tokens=message.usage.input_tokens,
        output_tokens=message.usage.output_tokens,
        stop_reason=message.stop_reason or "",
    )
