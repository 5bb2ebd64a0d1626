"""Ingestion's REST tasks: thin wrappers over ``apps.ingestion.rest_services``, fired by beat (``schedules.py``)."""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta
from typing import Any

import redis
from celery import Task, shared_task
from django.db import OperationalError

from apps.core import calendar, clock
from apps.ingestion import rest_services
from apps.ingestion.feeds import UW_REST, feed_is_paused
from apps.ingestion.uw.rest import UWDailyLimitReached, UWRestError

logger = logging.getLogger(__name__)

TRANSIENT_INFRA = (OperationalError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.WatchError)
MAX_RETRIES = 5
RETRY_BACKOFF_MAX_SECONDS = 60
# Polls run from shortly before the open to shortly after the options close; beat's crontab hours are coarse.
SESSION_MARGIN = timedelta(minutes=30)


def market_is_open(moment: datetime) -> bool:
    """Whether ``moment`` is within a trading day's session (with a margin): holidays and early closes included."""
    session = calendar.session_for(calendar.market_day(moment))
    if session is None:
        return False
    return session.open - SESSION_MARGIN <= moment <= session.options_close + SESSION_MARGIN


def _should_skip(market_hours_only: bool) -> bool:
    # REST polls are live only: in a replay the simulated beat fires these entries too, but the recorded session is
    # the data, and asking the live API would mix today's answers into a past day (and spend the real budget).
    if clock.is_simulated():
        return True
    return market_hours_only and not market_is_open(clock.now())


def _paused_answer(**what: Any) -> dict[str, Any] | None:
    # An operator paused the REST feed (a vendor incident, a budget to keep): the poll is skipped, not queued for
    # later; beat fires the next one on schedule and it runs once the feed is resumed.
    if not feed_is_paused(UW_REST):
        return None
    logger.info("ingestion REST poll %s skipped: the uw_rest feed is paused", what)
    return {**what, "skipped": "the uw_rest feed is paused"}


def _retry_transient(task: Task, exc: UWRestError) -> None:
    """Retry a transient UW error after what UW asked for, else exponential backoff; both with jitter."""
    retries = task.request.retries
    base = exc.retry_after if exc.retry_after is not None else min(RETRY_BACKOFF_MAX_SECONDS, 2 ** (retries + 1))
    countdown = base + random.uniform(0, 1 + base / 4)
    raise task.retry(exc=exc, countdown=countdown, max_retries=MAX_RETRIES)


@shared_task(
    bind=True,
    name="ingestion.rest_poll",
    acks_late=True,
    autoretry_for=TRANSIENT_INFRA,
    retry_backoff=2,
    retry_backoff_max=RETRY_BACKOFF_MAX_SECONDS,
    retry_jitter=True,
    max_retries=MAX_RETRIES,
)
def rest_poll(
    self: Task, endpoint: str, ticker: str | None = None, market_hours_only: bool = False
) -> dict[str, Any] | None:
    """Poll one Unusual Whales endpoint into its table (``rest_services.rest_poll``).

    Does nothing on a simulated clock (a replay), with ``market_hours_only`` outside the session, or while the
    ``uw_rest`` feed is paused (``apps.ingestion.feeds``).
    Running it twice is safe: every table is keyed on the feed's natural key and written with ``ON CONFLICT``, so a
    second run of the same page adds no row (option contracts are updated in place, never to an older snapshot); the
    second response is archived as what it is, another request.  Transient failures (429, 5xx, timeouts, the minute
    budget) are retried with backoff and jitter; permanent ones (other 4xx, the daily limit) are logged and not
    retried, because repeating the request cannot change the answer.
    """
    if _should_skip(market_hours_only):
        return None
    paused = _paused_answer(endpoint=endpoint, ticker=ticker)
    if paused is not None:
        return paused
    try:
        return rest_services.rest_poll(endpoint=endpoint, ticker=ticker).summary()
    except UWDailyLimitReached as exc:
        logger.warning("ingestion.rest_poll %s %s skipped: %s", endpoint, ticker or "", exc)
        return {"endpoint": endpoint, "ticker": ticker, "skipped": str(exc)}
    except UWRestError as exc:
        if exc.permanent:
            logger.error("ingestion.rest_poll %s %s failed permanently: %s", endpoint, ticker or "", exc)
            return {"endpoint": endpoint, "ticker": ticker, "error": str(exc), "status": exc.status}
        _retry_transient(self, exc)
        raise AssertionError("unreachable: task.retry raises") from exc


@shared_task(
    bind=True,
    name="ingestion.flow_alerts_backfill",
    acks_late=True,
    autoretry_for=TRANSIENT_INFRA,
    retry_backoff=2,
    retry_backoff_max=RETRY_BACKOFF_MAX_SECONDS,
    retry_jitter=True,
    max_retries=MAX_RETRIES,
)
def flow_alerts_backfill(
    self: Task, since: str | None = None, market_hours_only: bool = False
) -> dict[str, Any] | None:
    """Fill the gap between the newest stored flow alert (or ``since``, ISO) and now from REST.

    Does nothing on a simulated clock (a replay), with ``market_hours_only`` outside the session, or while the
    ``uw_rest`` feed is paused (``apps.ingestion.feeds``).
    Running it twice is safe: the second run starts from the newest alert the first one stored and finds nothing
    missing; alerts are unique by UW id, and an id-less REST copy of a socket alert is recognised and skipped.  All
    pages are stored in one transaction, so a retry after a failure starts from the same place.
    """
    if _should_skip(market_hours_only):
        return None
    paused = _paused_answer(backfill_since=since)
    if paused is not None:
        return paused
    start = datetime.fromisoformat(since) if since else None
    try:
        return rest_services.flow_alerts_backfill(since=start).summary()
    except UWDailyLimitReached as exc:
        logger.warning("ingestion.flow_alerts_backfill skipped: %s", exc)
        return {"skipped": str(exc)}
    except UWRestError as exc:
        if exc.permanent:
            logger.error("ingestion.flow_alerts_backfill failed permanently: %s", exc)
            return {"error": str(exc), "status": exc.status}
        _retry_transient(self, exc)
        raise AssertionError("unreachable: task.retry raises") from exc
