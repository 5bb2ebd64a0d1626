"""The schema-versioned event envelope every stage emits (analytics events, signals, decisions, fills)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import orjson

from apps.core import clock


@dataclass(frozen=True)
class Envelope:
    kind: str
    schema_version: int
    payload: dict[str, Any]
    occurred_at: datetime = field(default_factory=clock.now)
    correlation_id: str = ""
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            digest = hashlib.sha256(self.kind.encode() + b"|" + dumps(self.payload)).hexdigest()[:32]
            object.__setattr__(self, "id", digest)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["occurred_at"] = self.occurred_at.isoformat()
        return data

    def to_json(self) -> bytes:
        return dumps(self.to_dict())


def _default(obj: object) -> object:
    from decimal import Decimal

    if isinstance(obj, Decimal):
        return str(obj)
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def dumps(data: object) -> bytes:
    """Canonical JSON (sorted keys; Decimals as strings), so equal payloads hash equally."""
    return orjson.dumps(data, default=_default, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)


def deterministic_id(*parts: object, length: int = 32) -> str:
    """A stable id from its parts: the same evidence always yields the same id (idempotent stages)."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:length]
