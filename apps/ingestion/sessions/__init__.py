"""Recorded sessions: a realistic synthetic trading day in the Unusual Whales socket format.

``generate_session`` yields the records, ``session_lines`` the exact text lines (what ``ingest_lines`` takes) and
``write_session`` writes a session file (gzip for ``.gz``).  See ``docs/sessions.md``.
"""

from .generator import (
    DEFAULT_NOISE,
    DEFAULT_TICKERS,
    NOISE_KINDS,
    NotATradingDay,
    Session,
    SessionLine,
    SessionStats,
    build_session,
    generate_session,
    session_lines,
    write_session,
)

__all__ = [
    "DEFAULT_NOISE",
    "DEFAULT_TICKERS",
    "NOISE_KINDS",
    "NotATradingDay",
    "Session",
    "SessionLine",
    "SessionStats",
    "build_session",
    "generate_session",
    "session_lines",
    "write_session",
]
