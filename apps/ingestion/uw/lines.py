"""One input line -> a parsed frame with its hash, or a precise reason it cannot be one.

Input lines are ``{"received_at": <epoch ms>, "frame": [<channel>, <payload>]}`` (docs/pipeline.md).  A frame's
identity is the hash of its canonical bytes (sorted keys), so the same frame received again, on a reconnect or in a
replayed file, is recognised whatever the receive time or key order.  A rejected line is identified by the hash of its
raw text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from apps.ingestion.uw.channels import Channel, UnknownChannel, channel_resolve
from apps.ingestion.uw.normalize import NormalizationError, RejectKind, parse_time


@dataclass(frozen=True, slots=True)
class ParsedLine:
    received_at: datetime
    channel: Channel
    payload: Any
    frame_hash: str
    payload_json: str  # canonical JSON of the payload, archived as is


def digest(data: bytes) -> str:
    """64 hex characters: the width of the ``frame_hash`` and ``line_hash`` columns."""
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def line_bytes(line: object) -> bytes:
    """The raw line as bytes for hashing (lone surrogates kept, so distinct junk hashes distinctly)."""
    if isinstance(line, bytes | bytearray | memoryview):
        return bytes(line)
    if isinstance(line, str):
        return line.encode("utf-8", "surrogatepass")
    return repr(line).encode("utf-8", "backslashreplace")


def storable_text(line: object) -> str:
    """The raw line as text PostgreSQL can store: no NUL, no lone surrogates, undecodable bytes replaced."""
    if isinstance(line, bytes | bytearray | memoryview):
        text = bytes(line).decode("utf-8", "replace")
    elif isinstance(line, str):
        text = line.encode("utf-8", "replace").decode("utf-8")
    else:
        text = repr(line)
    return text.replace("\x00", "\ufffd")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def parse_line(line: object) -> ParsedLine:
    """The frame in ``line``; ``NormalizationError`` (kind and reason) when the line is not a well-formed frame."""
    if not isinstance(line, str | bytes | bytearray | memoryview):
        raise NormalizationError(RejectKind.NOT_TEXT, f"line is a {type(line).__name__}, not text")
    try:
        envelope = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise NormalizationError(RejectKind.BROKEN_JSON, f"broken JSON: {exc}") from exc
    if not isinstance(envelope, dict):
        raise NormalizationError(RejectKind.NOT_AN_OBJECT, f"line is a JSON {type(envelope).__name__}, not an object")
    if "received_at" not in envelope:
        raise NormalizationError(RejectKind.BAD_RECEIVED_AT, "line has no 'received_at'")
    try:
        received_at = parse_time(envelope["received_at"])
    except ValueError as exc:
        raise NormalizationError(RejectKind.BAD_RECEIVED_AT, f"bad 'received_at': {exc}") from exc
    frame = envelope.get("frame")
    if frame is None:
        raise NormalizationError(RejectKind.BAD_FRAME, "line has no 'frame'", received_at=received_at)
    if not isinstance(frame, list) or len(frame) != 2:
        raise NormalizationError(
            RejectKind.BAD_FRAME, "'frame' is not a two-element [channel, payload] array", received_at=received_at
        )
    name, payload = frame
    if not isinstance(name, str):
        raise NormalizationError(
            RejectKind.BAD_FRAME, f"frame channel is a {type(name).__name__}, not a string", received_at=received_at
        )
    try:
        channel = channel_resolve(name)
    except UnknownChannel as exc:
        raise NormalizationError(
            RejectKind.UNKNOWN_CHANNEL, str(exc), channel=name[:64], received_at=received_at
        ) from exc
    canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)
    # PostgreSQL's jsonb cannot hold U+0000; the escaped form is the cheap pre-check before walking the payload.
    if b"u0000" in canonical and _has_nul(payload):
        raise NormalizationError(
            RejectKind.UNSTORABLE, f"{name} payload contains a NUL character", channel=name, received_at=received_at
        )
    # The channel name cannot contain a newline (channel_resolve), so channel + newline + payload is unambiguous.
    return ParsedLine(
        received_at=received_at,
        channel=channel,
        payload=payload,
        frame_hash=digest(name.encode() + b"\n" + canonical),
        payload_json=canonical.decode(),
    )
