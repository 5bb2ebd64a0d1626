"""Access to the platform's Redis keys.

With ``REDIS_URL`` set this is a real Redis client; on the embedded default it is an in-process store with the same
interface (fakeredis), so services never branch on which one they talk to.  Values are strings (``decode_responses``).

redis-py types replies as ``bytes | str`` whatever ``decode_responses`` says, so readers ``cast`` them to ``str``;
and it types an ``hset`` mapping as ``Mapping[FieldT, EncodableT]``, a ``Mapping`` being invariant in its key, so
writers pass a ``dict[str, str]`` as ``cast(HashMapping, fields)``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TypeAlias

import redis
from django.conf import settings
from redis.typing import EncodableT, FieldT

HashMapping: TypeAlias = Mapping[FieldT, EncodableT]

_lock = threading.Lock()
_client: redis.Redis | None = None
_client_url: str | None = None


def get_redis() -> redis.Redis:
    global _client, _client_url
    url = settings.REDIS_URL
    if _client is not None and _client_url == url:
        return _client
    with _lock:
        if _client is None or _client_url != url:
            if url:
                _client = redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)
            else:
                import fakeredis

                _client = fakeredis.FakeRedis(decode_responses=True)
            _client_url = url
    return _client


def reset_client() -> None:
    """Forget the cached client (tests switching URLs; forked processes)."""
    global _client, _client_url
    with _lock:
        _client = None
        _client_url = None
