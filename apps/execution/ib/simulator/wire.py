"""TWS socket framing: a 4-byte big-endian length, then ASCII fields each ended by NUL.

The handshake is the one exception: the client sends the raw prefix ``API\\0`` before its first frame, and that first
frame (``v100..157`` with optional connection options after a space) carries no trailing NUL.
"""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Iterable, Sequence
from decimal import Decimal

API_PREFIX = b"API\0"
MAX_FRAME = 0xFFFFFF
SERVER_VERSION = 157
MIN_CLIENT_VERSION = 100
# IB's "unset" double, written where a value is deliberately absent (e.g. realizedPNL on an opening fill).
UNSET_DOUBLE = "1.7976931348623157E308"

_VERSION_RE = re.compile(r"^v(\d+)(?:\.\.(\d+))?")


class ConnectionClosed(Exception):
    """The peer closed the socket (or it broke) while a frame was being read."""


class ProtocolError(Exception):
    """The peer sent something that is not the TWS protocol."""


def encode_frame(fields: Sequence[str | int]) -> bytes:
    """One length-prefixed message; every field is written as text followed by NUL."""
    # A NUL inside a field would split it in two on the client's side.
    payload = "".join(f"{str(field).replace(chr(0), '')}\0" for field in fields).encode("ascii", errors="replace")
    if len(payload) > MAX_FRAME:
        raise ProtocolError(f"message of {len(payload)} bytes exceeds the protocol maximum")
    return struct.pack("!I", len(payload)) + payload


def encode_raw_frame(text: str) -> bytes:
    """A length-prefixed frame without field terminators (the client's version offer)."""
    payload = text.encode("ascii")
    return struct.pack("!I", len(payload)) + payload


def split_fields(payload: bytes) -> list[str]:
    """The NUL-terminated fields of one frame's payload (the empty tail after the last NUL dropped)."""
    parts = payload.decode("ascii", errors="replace").split("\0")
    return parts[:-1] if parts and parts[-1] == "" else parts


def recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionClosed("peer closed the connection")
        chunks.extend(chunk)
    return bytes(chunks)


def read_frame(sock: socket.socket) -> bytes:
    """The payload of the next frame (blocking)."""
    (size,) = struct.unpack("!I", recv_exact(sock, 4))
    if size > MAX_FRAME:
        raise ProtocolError(f"frame of {size} bytes announced")
    return recv_exact(sock, size) if size else b""


def read_handshake(sock: socket.socket) -> int:
    """Consume ``API\\0`` and the version offer; the highest version the client speaks."""
    prefix = recv_exact(sock, len(API_PREFIX))
    if prefix != API_PREFIX:
        raise ProtocolError(f"expected the API prefix, got {prefix!r}")
    offer = read_frame(sock).decode("ascii", errors="replace").rstrip("\0")
    match = _VERSION_RE.match(offer)
    if not match:
        raise ProtocolError(f"bad version offer {offer!r}")
    low = int(match.group(1))
    high = int(match.group(2) or low)
    if high < MIN_CLIENT_VERSION or low > SERVER_VERSION:
        raise ProtocolError(f"no common version with the client's {offer!r}")
    return high


def fmt_decimal(value: Decimal | None) -> str:
    """A price or amount as TWS writes it: plain notation, empty when unset."""
    if value is None:
        return ""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".") or "0"
    return text


def fmt_bool(value: bool) -> str:
    return "1" if value else "0"


def join_fields(fields: Iterable[str]) -> str:
    """Fields shown for logs, NULs as ``|``."""
    return "|".join(fields)
