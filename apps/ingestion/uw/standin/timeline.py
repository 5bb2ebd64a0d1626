"""A recorded session as the stand-in replays it: data frames in received order, re-timed and re-identified per lap.

Session lines are ``{"received_at": <epoch ms>, "frame": [channel, payload]}``.  Broken lines and join
acknowledgements are not frames the server would send, so they are left out; every other frame is kept as recorded
(duplicates, drifted fields and channels the platform does not know included), because those are what the real
socket delivers and what the clients under test must survive.
"""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

# Payload fields that carry epoch milliseconds; shifted on every lap so a looped day keeps moving forward.
MS_FIELDS = ("executed_at", "created_at", "start_time", "end_time", "time", "timestamp")
LAP_GAP_MS = 1000  # a second of silence between the end of one lap and the start of the next
_LAP_NAMESPACE = uuid.UUID("6f1d2c1e-0b7a-4c55-9d51-2b6f0f1e7a10")


@dataclass(frozen=True, slots=True)
class SessionFrame:
    received_at: int  # epoch ms, as recorded
    channel: str
    payload: Any
    text: bytes  # the frame as sent on lap 0: ``[channel, payload]`` JSON


def _is_ack(payload: object) -> bool:
    return isinstance(payload, dict) and "status" in payload and "response" in payload


def _read_lines(source: Path) -> Iterator[str]:
    opener = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rt", encoding="utf-8") as handle:
        yield from handle


def load_frames(lines: Iterable[str] | Path | str | None) -> list[SessionFrame]:
    """The session's data frames sorted by ``received_at`` (stable), from lines or a file (``.gz`` read as gzip).

    ``None`` is an empty session (a stand-in used only for injected frames or the firehose).
    """
    if lines is None:
        return []
    source: Iterable[str] = _read_lines(Path(lines)) if isinstance(lines, Path | str) else lines
    frames = []
    for line in source:
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
            received_at = int(record["received_at"])
            channel, payload = record["frame"]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # a broken line was never a frame on the wire
        if not isinstance(channel, str) or _is_ack(payload):
            continue
        frames.append(SessionFrame(received_at, channel, payload, orjson.dumps([channel, payload])))
    frames.sort(key=lambda frame: frame.received_at)
    return frames


def lap_shift_ms(frames: list[SessionFrame]) -> int:
    """How far each lap is moved after the previous one: the session's span plus a short gap."""
    if not frames:
        return LAP_GAP_MS
    return frames[-1].received_at - frames[0].received_at + LAP_GAP_MS


def _fresh_id(value: object, lap: int) -> object:
    if not isinstance(value, str):
        return value
    # a UUID stays a UUID, so clients that validate the id's shape still accept it
    return str(uuid.uuid5(_LAP_NAMESPACE, f"{lap}:{value}"))


def _shift_iso(value: str, shift_ms: int) -> str:
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return (instant + timedelta(milliseconds=shift_ms)).isoformat().replace("+00:00", "Z")


def relap_payload(payload: Any, lap: int, shift_ms: int) -> Any:
    """``payload`` as it appears on lap ``lap``: times moved by ``shift_ms`` and ids replaced by fresh ones.

    Lap 0 is the recording itself.  Non-object payloads are returned unchanged.
    """
    if lap == 0 or not isinstance(payload, dict):
        return payload
    moved = dict(payload)
    for key in MS_FIELDS:
        value = moved.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            moved[key] = value + shift_ms
        elif isinstance(value, str) and key == "timestamp":
            moved[key] = _shift_iso(value, shift_ms)
    if "id" in moved:
        moved["id"] = _fresh_id(moved["id"], lap)
    if isinstance(moved.get("trade_ids"), list):
        moved["trade_ids"] = [_fresh_id(item, lap) for item in moved["trade_ids"]]
    return moved
