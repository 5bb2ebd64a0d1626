"""Multi-row ``INSERT ... ON CONFLICT DO NOTHING [RETURNING]`` for the ingestion tables.

``bulk_create`` re-validates every value through each field (a decimal context per value, per row); normalized rows
are already typed and range-checked, so this writes them with only the backend's own adaptation (datetimes for
SQLite, JSON as text).  One statement per chunk; works on PostgreSQL and SQLite (>= 3.35 for RETURNING).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson
from django.db import connection, models

# Rows per statement: well under SQLite's 32766 bound variables and PostgreSQL's 65535 parameters.
CHUNK_ROWS = 500
_MAX_PARAMS = 30_000


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _adapter(field: models.Field) -> Callable[[Any], Any]:
    ops = connection.ops
    if isinstance(field, models.DateTimeField):
        return ops.adapt_datetimefield_value
    if isinstance(field, models.DateField):
        return ops.adapt_datefield_value
    if isinstance(field, models.JSONField):
        # An untyped literal: PostgreSQL reads it as jsonb, SQLite stores the text.
        return _json_text
    return _identity


def _identity(value: Any) -> Any:
    return value


def insert_values(
    table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, returning: Sequence[str] = ()
) -> list[tuple[Any, ...]]:
    """Insert already-adapted ``rows``; rows that hit a unique constraint are skipped (and not returned)."""
    if not rows:
        return []
    quote = connection.ops.quote_name
    column_list = ", ".join(quote(c) for c in columns)
    placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
    tail = f" RETURNING {', '.join(quote(c) for c in returning)}" if returning else ""
    per_chunk = max(1, min(CHUNK_ROWS, _MAX_PARAMS // len(columns)))
    returned: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_chunk):
            chunk = rows[start : start + per_chunk]
            # Only quoted identifiers and placeholders are formatted in; every value is a bound parameter.
            sql = (
                f"INSERT INTO {quote(table)} ({column_list}) VALUES "  # noqa: S608
                f"{', '.join([placeholder] * len(chunk))} ON CONFLICT DO NOTHING{tail}"
            )
            cursor.execute(sql, [value for row in chunk for value in row])
            if returning:
                returned.extend(cursor.fetchall())
    return returned


def insert_records(model: type[models.Model], records: Sequence[models.Model]) -> None:
    """Insert unsaved, already-validated instances of ``model`` (auto primary key left to the database)."""
    fields = [f for f in model._meta.concrete_fields if not (f.primary_key and f.auto_created)]
    adapters = [(f.attname, _adapter(f)) for f in fields]
    rows = [[adapt(getattr(record, attname)) for attname, adapt in adapters] for record in records]
    insert_values(model._meta.db_table, [f.column for f in fields], rows)
