"""Storing a written text (a report, an explanation) once per subject, whoever writes it at the same time."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import IntegrityError, transaction

from apps.commentary.models import AiExplanation, AiReport
from apps.core import clock

Row = TypeVar("Row", AiReport, AiExplanation)


def text_row_store(model: type[Row], *, key: dict[str, Any], values: dict[str, Any]) -> tuple[Row, bool]:
    """Within the caller's transaction: the ``model`` row for ``key`` written with ``values``, unless a row that did
    not fail exists already (a concurrent writer stored a good one first: it is kept).  A failed row is rewritten.
    Returns (row, stored_by_us)."""
    now = clock.now()
    existing = model._default_manager.select_for_update().filter(**key).first()
    if existing is not None and existing.status != "failed":
        return existing, False
    if existing is not None:
        for name, value in values.items():
            setattr(existing, name, value)
        existing.updated_at = now
        existing.save()
        return existing, True
    try:
        with transaction.atomic():
            return model._default_manager.create(**key, created_at=now, updated_at=now, **values), True
    except IntegrityError:
        return model._default_manager.get(**key), False
