"""Pausing the market data feeds from the operations console, one Redis flag per feed.

Three feeds can be paused on their own: ``uw_stream`` (the Unusual Whales socket listener closes its socket),
``uw_rest`` (the UW REST pollers and the flow-alert backfill skip their request) and ``ib_market`` (Interactive Brokers
ticks are dropped instead of stored).  A pause is for an incident upstream (bad data, a vendor outage, a budget about
to run out): the rest of the platform keeps running on what it already has.

Each change is a ``StreamControl`` row (the feed, by whom, why) and an ops audit entry, written first; the Redis flag
``control:<feed>:paused`` (its value the actor) is set after the commit, so a failed write never leaves a flag nobody
can account for.  The readers (listener, pollers, tick ingestion) only ask Redis, one GET, never the database.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

import redis
from django.db import transaction

from apps.core import clock
from apps.core.store import get_redis

if TYPE_CHECKING:
    from apps.ingestion.models import StreamControl

UW_STREAM = "uw_stream"
UW_REST = "uw_rest"
IB_MARKET = "ib_market"
# feed -> what pausing it stops, in the words the console and the API show.
FEEDS: dict[str, str] = {
    UW_STREAM: "Unusual Whales socket listener (closes the socket, reads nothing)",
    UW_REST: "Unusual Whales REST pollers and the flow-alert backfill (skip their requests)",
    IB_MARKET: "Interactive Brokers market data (ticks are dropped, not stored)",
}


class UnknownFeed(ValueError):
    """A feed name that is not one of ``FEEDS``."""


class FeedState(TypedDict):
    paused: bool
    by: str
    since: datetime | None
    reason: str


def feed_pause_key(feed: str) -> str:
    """The Redis flag of ``feed`` (``control:uw_stream:paused`` is the listener's historical key, kept as is)."""
    return f"control:{feed_check(feed)}:paused"


def feed_check(feed: str) -> str:
    """``feed`` when it is a known feed; ``UnknownFeed`` naming the known ones otherwise."""
    if feed not in FEEDS:
        raise UnknownFeed(f"unknown feed {feed!r}: one of {', '.join(FEEDS)}")
    return feed


def feed_is_paused(feed: str, *, store: redis.Redis | None = None) -> bool:
    """Whether ``feed`` is paused now (one Redis GET; the hot paths call this per batch or per poll)."""
    client = store if store is not None else get_redis()
    return bool(client.get(feed_pause_key(feed)))


def feed_pause_set(*, feed: str, paused: bool, actor: str, reason: str = "") -> StreamControl:
    """Pause or resume ``feed``: a ``StreamControl`` row and an audit entry (``<feed>.pause``/``<feed>.resume``) in
    one transaction, the Redis flag after it commits.  Setting the state a feed already has is recorded again (who
    confirmed it and why is worth keeping) and leaves the flag as it is."""
    from apps.ingestion.models import StreamControl
    from apps.ops.services import audit_record

    key = feed_pause_key(feed)
    actor = actor or "operator"

    def flag() -> None:
        client = get_redis()
        if paused:
            client.set(key, actor)
        else:
            client.delete(key)

    with transaction.atomic():
        control = StreamControl.objects.create(feed=feed, paused=paused, by=actor, reason=reason, at=clock.now())
        audit_record(
            actor=actor,
            action=f"{feed}.pause" if paused else f"{feed}.resume",
            target=feed,
            detail={"reason": reason, "control_id": control.pk},
        )
        transaction.on_commit(flag)
    return control


def feeds_state() -> dict[str, FeedState]:
    """Each feed's pause flag (from Redis, what the readers obey) with who set it, since when and why (the feed's
    newest ``StreamControl`` row).  A flag without a row (set by hand in Redis) shows its value as ``by``."""
    from apps.ingestion.models import StreamControl

    client = get_redis()
    flags = client.mget([feed_pause_key(feed) for feed in FEEDS])
    state: dict[str, FeedState] = {}
    for feed, flag in zip(FEEDS, flags, strict=True):
        newest = StreamControl.objects.filter(feed=feed).order_by("-at", "-id").first()
        paused = bool(flag)
        if newest is not None and newest.paused == paused:
            state[feed] = {"paused": paused, "by": newest.by, "since": newest.at, "reason": newest.reason}
        else:
            state[feed] = {"paused": paused, "by": str(flag or ""), "since": None, "reason": ""}
    return state
