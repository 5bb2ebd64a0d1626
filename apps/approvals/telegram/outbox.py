"""The bot's side of the bookkeeping: show every request ``selectors.to_present()`` returns in the approver chat, and
update every message ``selectors.to_close()`` returns with the outcome (buttons removed).

The database is the truth: a request counts as shown only once ``presented_mark`` recorded its message, so a send
that failed (429 beyond the retries, a timeout, a crash) is simply sent again by the next step.  The price is
at-least-once: a crash between Telegram's answer and the mark shows a request twice, and the older message's
buttons are then refused as stale only if the text changed meanwhile (the same revision may be decided from either).
"""

from __future__ import annotations

import asyncio
import logging
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections
from telegram import Bot, Message
from telegram.error import BadRequest, RetryAfter, TelegramError
from telegram.warnings import PTBDeprecationWarning

from apps.approvals import selectors, services
from apps.approvals.telegram.messages import RequestView, closed_text, keyboard, pending_text, superseded_text

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_FLOOD_WAITS = 5  # per call; then the step gives up and the next step tries again
MAX_FLOOD_WAIT_SECONDS = 120.0


def retry_after_seconds(error: RetryAfter) -> float:
    """Telegram's ``parameters.retry_after`` in seconds (PTB gives an int or a timedelta by version and setting)."""
    with warnings.catch_warnings():
        # PTB 22 warns that the int becomes a timedelta one day; both are handled here.
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _pending_views() -> list[RequestView]:
    close_old_connections()  # a long-running process: drop connections the database closed meanwhile
    return [RequestView.of(request) for request in selectors.to_present()]


def _closing_views() -> list[RequestView]:
    return [RequestView.of(request) for request in selectors.to_close()]


def _delivery_log(*, request_id: int, chat_id: str, outcome: str, status_code: int | None, excerpt: str) -> None:
    """Mirror a sent (or failed) approval message into ``distribution_logs`` with the other channels' deliveries."""
    from apps.distribution import services as distribution

    distribution.log_delivery(
        channel="telegram",
        ref=f"approval:{request_id}",
        target=chat_id,
        outcome=outcome,
        status_code=status_code,
        excerpt=excerpt[:200],
    )


@dataclass
class StepResult:
    expired: int = 0
    presented: int = 0
    closed: int = 0
    failed: int = 0


class Outbox:
    """One ``step`` at a time (the bot runs it in a loop; tests call it directly)."""

    def __init__(self, *, bot: Bot, chat_id: str, min_send_interval: float = 3.0) -> None:
        self.bot = bot
        self.chat_id = chat_id
        # Telegram allows about 20 messages a minute in a group: space our own sends in the approver chat.
        self.min_send_interval = min_send_interval
        self._last_send = 0.0

    async def _paced(self) -> None:
        wait = self._last_send + self.min_send_interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_send = time.monotonic()

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` with Telegram's flood control honoured: wait ``retry_after`` and try again."""
        for _ in range(MAX_FLOOD_WAITS):
            await self._paced()
            try:
                return await call()
            except RetryAfter as error:
                seconds = min(retry_after_seconds(error), MAX_FLOOD_WAIT_SECONDS)
                logger.warning("telegram: %s hit flood control; waiting %.0f s", what, seconds)
                await asyncio.sleep(seconds)
        await self._paced()
        return await call()

    async def step(self) -> StepResult:
        result = StepResult()
        result.expired = await sync_to_async(services.requests_expire_due)()
        for view in await sync_to_async(_pending_views)():
            try:
                await self._present(view)
                result.presented += 1
            except TelegramError as error:
                result.failed += 1
                logger.error("telegram: approval #%s not shown (tried again next step): %s", view.id, error)
                await sync_to_async(_delivery_log)(
                    request_id=view.id,
                    chat_id=self.chat_id,
                    outcome="rate_limited" if isinstance(error, RetryAfter) else "failed",
                    status_code=429 if isinstance(error, RetryAfter) else None,
                    excerpt=str(error),
                )
        for view in await sync_to_async(_closing_views)():
            try:
                await self._close(view)
                result.closed += 1
            except TelegramError as error:
                result.failed += 1
                logger.error("telegram: approval #%s message not closed (tried again next step): %s", view.id, error)
        return result

    async def _present(self, view: RequestView) -> None:
        message: Message = await self._call(
            f"approval #{view.id}",
            lambda: self.bot.send_message(chat_id=self.chat_id, text=pending_text(view), reply_markup=keyboard(view)),
        )
        await sync_to_async(services.presented_mark)(
            request_id=view.id, chat_id=str(message.chat_id), message_id=message.message_id, revision=view.revision
        )
        await sync_to_async(_delivery_log)(
            request_id=view.id,
            chat_id=str(message.chat_id),
            outcome="sent",
            status_code=200,
            excerpt=f"revision {view.revision}: {view.title}",
        )
        if view.message_id is not None and view.chat_id:
            # The earlier revision's buttons would only be refused as stale: take them away.
            try:
                await self._call(
                    f"approval #{view.id} superseded",
                    lambda: self.bot.edit_message_text(
                        chat_id=view.chat_id, message_id=view.message_id, text=superseded_text(view), reply_markup=None
                    ),
                )
            except BadRequest as error:
                logger.info("telegram: approval #%s earlier message left as is: %s", view.id, error)

    async def _close(self, view: RequestView) -> None:
        try:
            await self._call(
                f"approval #{view.id} outcome",
                lambda: self.bot.edit_message_text(
                    chat_id=view.chat_id, message_id=view.message_id, text=closed_text(view), reply_markup=None
                ),
            )
        except BadRequest as error:
            # Permanent (the message was deleted, or already says this): nothing left to update.
            logger.warning("telegram: approval #%s message could not be closed: %s", view.id, error)
        await sync_to_async(services.closed_mark)(request_id=view.id)
