"""Distribution tasks: thin wrappers that load by id and call a service."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from celery import Task, shared_task

from apps.core import calendar, clock
from apps.distribution import services

logger = logging.getLogger(__name__)

EXPLAIN_TASK = "commentary.explain_trade"


def _explain_after(trade_id: int) -> None:
    """Ask the commentator for the trade's explanation: a separate task on its own queue, off the order path."""
    from celery import current_app

    if EXPLAIN_TASK not in current_app.tasks:
        current_app.loader.import_default_modules()
    if EXPLAIN_TASK in current_app.tasks:
        current_app.tasks[EXPLAIN_TASK].apply_async(args=(trade_id,))
    else:
        logger.info("%s is not registered; trade %s gets no explanation", EXPLAIN_TASK, trade_id)


@shared_task(name="distribution.announce", acks_late=True)
def announce(kind: str, trade_id: int, adjustment_id: int | None = None) -> list[int]:
    """Schedule the announcement of a trade's ``entry``, ``exit`` or ``stop`` move (``adjustment_id``) for every tier;
    after an entry, ask for the AI explanation; after an exit, draft the social posts (they wait for approval).

    Safe to run twice: posts are unique per (kind, ref, tier), social drafts per (platform, trade), explanations per
    trade, so a redelivery finds the existing rows.
    """
    if kind == "stop":
        if adjustment_id is None:
            raise ValueError("a stop announcement needs the adjustment id")
        return [post.pk for post in services.stop_post_schedule(adjustment_id=adjustment_id)]
    posts = services.post_schedule(kind=kind, trade_id=trade_id)
    if kind == "entry":
        _explain_after(trade_id)
    else:
        from apps.social.services import drafts_for_trade

        drafts_for_trade(kind=kind, trade_id=trade_id)
    return [post.pk for post in posts]


@shared_task(name="distribution.send_post", acks_late=True, bind=True)
def send_post(self: Task, post_id: int) -> str | None:
    """Send one post at its release time (queued with a short countdown by the scheduler or the sweep).

    Safe to run twice: the post is claimed with a conditional UPDATE before it is sent; a second run finds it sent.
    A run redelivered after its worker died finds its own claim (the task id) and takes the post back at once.
    """
    return services.post_release(post_id=post_id, claim_token=str(self.request.id or ""))


@shared_task(name="distribution.release_due", acks_late=True)
def release_due() -> dict[str, Any]:
    """The sweep (beat, every 5 s): sends what is due and not on its way, queues what falls due soon.

    Safe to run twice or concurrently: each post is claimed with a conditional UPDATE (scheduled -> sending) before
    it is sent, and each release time is queued once.
    """
    return services.posts_release_due()


@shared_task(name="distribution.daily_summary", acks_late=True)
def daily_summary(day: str | None = None) -> list[int]:
    """Post the day's results to every tier (beat, after the close, New York); nothing on a day the market is closed.

    Safe to run twice: the summary posts are unique per (day, tier).
    """
    summary_day = calendar.market_day(clock.now()) if day is None else date.fromisoformat(day)
    if not calendar.is_trading_day(summary_day):
        return []
    return [post.pk for post in services.summary_post_schedule(day=summary_day)]
