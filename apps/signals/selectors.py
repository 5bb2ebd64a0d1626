"""Reads of the signal engine's state."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import orjson
from django.db.models import QuerySet

from apps.core.store import get_redis
from apps.signals.models import Signal
from apps.signals.services import PENDING_KEY


def pending_signals() -> dict[str, dict[str, Any]]:
    """``signals:pending`` decoded: signal_id -> summary."""
    pending = cast(dict[str, str], get_redis().hgetall(PENDING_KEY))  # decode_responses
    return {key: orjson.loads(value) for key, value in pending.items()}


def signals_between(*, start: datetime, end: datetime, strategy: str | None = None) -> QuerySet[Signal]:
    rows = Signal.objects.filter(as_of__gte=start, as_of__lt=end)
    if strategy:
        rows = rows.filter(strategy=strategy)
    return rows.order_by("as_of", "signal_id")
