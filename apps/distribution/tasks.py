"""Distribution tasks: thin wrappers that load by id and call a service."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from apps.distribution import services


@shared_task(name="distribution.announce", acks_late=True)
def announce(kind: str, trade_id: int) -> list[int]:
    """Schedule the entry/exit announcement of ``trade_id`` for every tier.

    Safe to run twice: posts are unique per (kind, trade, tier), so a redelivery finds the existing rows.
    """
    return [post.pk for post in services.post_schedule(kind=kind, trade_id=trade_id)]


@shared_task(name="distribution.release_due", acks_late=True)
def release_due() -> dict[str, Any]:
    """Send the posts that are due (beat, every few seconds).

    Safe to run twice or concurrently: each post is claimed with a conditional UPDATE (scheduled -> sending) before
    it is sent, so a second run finds nothing left to claim.
    """
    return services.posts_release_due()
