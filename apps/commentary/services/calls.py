"""Every call to Claude goes through ``claude_call``, which writes one ``ai_calls`` row whatever the outcome."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from apps.commentary.claude import pricing
from apps.commentary.claude.transport import Completion, TransportError, message_create
from apps.commentary.models import AiCall
from apps.core import clock
from apps.ops import metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    completion: Completion
    cost_usd: Decimal | None  # None: the model's price is not in claude/pricing.py
    call_id: int


def claude_call(*, purpose: str, ref: str, system: str, prompt: str, max_tokens: int) -> Answer:
    """Ask Claude once (the SDK retries transient errors inside this one call) and record the call in ``ai_calls``:
    tokens, cost, latency and attempts when it answered; status code and error when it did not, before the
    ``TransportError`` reaches the caller.  Never called inside a transaction that holds locks (a call can take
    ``ANTHROPIC_TIMEOUT_SECONDS`` times the attempts)."""
    at = clock.now()
    started = time.monotonic()
    try:
        completion = message_create(system=system, prompt=prompt, max_tokens=max_tokens)
    except TransportError as error:
        AiCall.objects.create(
            purpose=purpose,
            ref=ref,
            model=settings.ANTHROPIC_MODEL,
            latency_ms=round((time.monotonic() - started) * 1000),
            attempts=error.attempts,
            status=AiCall.Status.ERROR,
            status_code=error.status_code,
            error=str(error),
            at=at,
        )
        logger.error("commentary: Claude call for %s %s failed: %s", purpose, ref, error)
        raise
    latency_ms = round((time.monotonic() - started) * 1000)
    metrics.ai_tokens(kind=purpose, input_tokens=completion.input_tokens, output_tokens=completion.output_tokens)
    cost = pricing.call_cost(
        model=completion.model, input_tokens=completion.input_tokens, output_tokens=completion.output_tokens
    )
    if cost is None:
        logger.warning("commentary: no price for model %s; cost_usd left empty", completion.model)
    call = AiCall.objects.create(
        purpose=purpose,
        ref=ref,
        model=completion.model,
        input_tokens=completion.input_tokens,
        output_tokens=completion.output_tokens,
        cost_usd=cost,
        latency_ms=latency_ms,
        attempts=completion.attempts,
        status=AiCall.Status.OK,
        at=at,
    )
    return Answer(completion=completion, cost_usd=cost, call_id=call.pk)
