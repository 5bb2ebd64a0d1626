"""Flushing the platform's derived caches in Redis: the newest values (``latest:*``) and the analytics snapshots
(``analytics:*``).

Both are rebuilt by the pipeline from what arrives next (the next tick writes ``latest:*``, the next
``analytics.update_ticker`` writes ``analytics:*``), so an operator flushes them after bad data was ingested, rather
than wait for them to be overwritten.  Nothing else matches these prefixes; queues, flags and the kill switch are
never touched.

Keys are found with SCAN (never KEYS, which blocks Redis for the whole keyspace) and deleted in batches with UNLINK
(freed in the background), so a flush never stalls the feeds that share the server.
"""

from __future__ import annotations

from typing import cast

from apps.core.store import get_redis

# pattern name -> the key glob it deletes.  Only these: a free-form glob from the console could match anything.
CACHE_PATTERNS: dict[str, str] = {
    "latest": "latest:*",
    "analytics": "analytics:*",
}
FLUSH_BATCH_SIZE = 500


class UnknownCachePattern(ValueError):
    """A pattern name that is not one of ``CACHE_PATTERNS``."""


def caches_flush(*, pattern: str, batch_size: int = FLUSH_BATCH_SIZE) -> int:
    """Delete every key matching the glob of ``pattern`` (``latest`` or ``analytics``) and return how many were
    deleted.  Keys written while the scan runs may survive (SCAN guarantees only the keys present throughout); a
    second flush finds them."""
    glob = CACHE_PATTERNS.get(pattern)
    if glob is None:
        raise UnknownCachePattern(f"unknown cache pattern {pattern!r}: one of {', '.join(CACHE_PATTERNS)}")
    client = get_redis()
    deleted = 0
    batch: list[str] = []
    for key in client.scan_iter(match=glob, count=batch_size):
        batch.append(cast(str, key))
        if len(batch) >= batch_size:
            deleted += cast(int, client.unlink(*batch))
            batch = []
    if batch:
        deleted += cast(int, client.unlink(*batch))
    return deleted
