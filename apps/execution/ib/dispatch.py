"""The gateway's events as Celery tasks (in order, on the execution queue), run inline when tasks are eager."""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger(__name__)


class TaskSink:
    """Hands each platform event of the gateway to its task.  The execution queue has one consumer, so the events
    of one order are applied in the order TWS sent them."""

    def order_event(self, kind: str, data: dict[str, Any]) -> None:
        from apps.execution.tasks import ib_order_event

        ib_order_event.delay(kind, data)

    def broker_message(self, data: dict[str, Any]) -> None:
        from apps.execution.tasks import ib_broker_message

        ib_broker_message.delay(data)

    def account(self, values: dict[str, str]) -> None:
        from apps.execution.tasks import ib_account

        ib_account.delay(values)

    def ticks(self, ticks: list[dict[str, Any]]) -> None:
        import redis
        from celery import current_app

        from apps.ingestion.feeds import IB_MARKET, feed_is_paused

        # An operator paused IB market data: the batch is not even queued (the task would drop it; this spares the
        # ingestion queue).  Unable to ask Redis, it is queued and the task decides.
        try:
            if feed_is_paused(IB_MARKET):
                logger.debug("IB ticks: %d not sent, the ib_market feed is paused", len(ticks))
                return
        except redis.RedisError as exc:
            logger.warning("IB ticks: pause flag unreadable (%s); sending the batch", exc)
        if "ingestion.ib_ticks" not in current_app.tasks:
            current_app.loader.import_default_modules()
        current_app.tasks["ingestion.ib_ticks"].delay(ticks)

    def reconcile(self, snapshot: dict[str, Any]) -> None:
        from apps.execution.tasks import ib_reconcile

        ib_reconcile.delay(snapshot)
