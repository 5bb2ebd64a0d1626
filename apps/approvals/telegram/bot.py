"""The PTB ``Application`` of the approvals bot and its run loop: long polling for presses, commands and edit
replies, and the outbox stepped every ``outbox_interval`` seconds (at once after a decision or an edit).

``ApproverBot.run(stop=...)`` returns when ``stop`` is set (the management command sets it on SIGTERM and SIGINT),
after PTB has stopped polling and confirmed the updates it took, so a restart does not see them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.db import DatabaseError
from redis import RedisError
from telegram import BotCommand, ForceReply, Update
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from apps.approvals.telegram import commands, presses
from apps.approvals.telegram.outbox import Outbox

logger = logging.getLogger(__name__)

DEFAULT_API_ROOT = "https://api.telegram.org"
ALLOWED_UPDATES = ["message", "callback_query"]


@dataclass(frozen=True)
class BotConfig:
    token: str
    api_root: str  # "https://api.telegram.org" or a stand-in; "/bot<token>" is appended by PTB
    chat_id: str
    poll_timeout: int = 30
    outbox_interval: float = 5.0
    min_send_interval: float = 3.0


class ApproverBot:
    def __init__(self, config: BotConfig) -> None:
        self.config = config
        root = (config.api_root or DEFAULT_API_ROOT).rstrip("/")
        self.application: Application = (
            ApplicationBuilder()
            .token(config.token)
            .base_url(f"{root}/bot")
            .base_file_url(f"{root}/file/bot")
            # The long poll holds the request open for poll_timeout seconds; PTB adds it to this read timeout.
            .get_updates_read_timeout(10)
            .build()
        )
        self.outbox = Outbox(
            bot=self.application.bot, chat_id=config.chat_id, min_send_interval=config.min_send_interval
        )
        self._wake = asyncio.Event()
        self._handlers_add()

    # -- updates -------------------------------------------------------------------------------------------------
    def _handlers_add(self) -> None:
        app = self.application
        app.add_handler(CallbackQueryHandler(self._on_press))
        app.add_handler(CommandHandler("cancel", self._on_cancel))
        # Every other command, known or not, goes to commands.command_run, which records each attempt.
        app.add_handler(MessageHandler(filters.COMMAND, self._on_command))
        app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, self._on_text))
        app.add_error_handler(self._on_error)

    async def _on_press(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        chat_id = query.message.chat.id if query.message is not None else 0
        try:
            answer = await sync_to_async(presses.press_handle)(
                chat_id=chat_id,
                telegram_user_id=query.from_user.id,
                username=query.from_user.username or "",
                data=query.data or "",
            )
        except (DatabaseError, RedisError):
            # Telegram shows a spinner until answered: answer even when the decision could not be made.
            await query.answer("The platform could not record this; try again in a minute.", show_alert=True)
            raise
        await query.answer(answer.text, show_alert=answer.alert)
        if answer.prompt:
            mention = f"@{query.from_user.username} " if query.from_user.username else ""
            await context.bot.send_message(
                chat_id=chat_id,
                text=f"{mention}{answer.prompt}",
                reply_markup=ForceReply(selective=True, input_field_placeholder="the new text"),
            )
        if answer.decided:
            self._wake.set()

    async def _on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        user = update.effective_user
        if message is None or user is None or not message.text:
            return
        command, _, addressee = message.text.split()[0].lstrip("/").partition("@")
        if addressee and addressee.lower() != (context.bot.username or "").lower():
            return  # "/status@another_bot" in a group is not for us
        command = command.lower()
        if command == "start":
            command = "help"
        reply = await sync_to_async(commands.command_run)(
            command=command,
            args=message.text.split()[1:],
            chat_id=message.chat.id,
            chat_type=message.chat.type,
            telegram_user_id=user.id,
            username=user.username or "",
        )
        await message.reply_text(reply)

    async def _on_cancel(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        user = update.effective_user
        if message is None or user is None:
            return
        had = await sync_to_async(presses.edit_cancel)(chat_id=message.chat.id, telegram_user_id=user.id)
        await message.reply_text("Edit cancelled; the text is unchanged." if had else "You were not editing anything.")

    async def _on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        user = update.effective_user
        if message is None or user is None or not message.text:
            return
        reply = await sync_to_async(presses.edit_reply)(
            chat_id=message.chat.id, telegram_user_id=user.id, username=user.username or "", text=message.text
        )
        if reply is None:
            return  # ordinary conversation in the chat
        await message.reply_text(reply)
        self._wake.set()

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        logger.error("telegram: an update failed: %s", context.error, exc_info=context.error)
        if isinstance(update, Update) and update.effective_message is not None and update.callback_query is None:
            with contextlib.suppress(TelegramError):
                await update.effective_message.reply_text("That failed on the platform's side; see the bot's log.")

    # -- the loop ------------------------------------------------------------------------------------------------
    async def _commands_publish(self) -> None:
        menu = [BotCommand(name, text) for name, text in commands.COMMAND_DESCRIPTIONS.items()]
        try:
            await self.application.bot.set_my_commands(menu)
        except TelegramError as error:
            logger.warning("telegram: the command menu was not set (commands still work): %s", error)

    async def outbox_step(self) -> None:
        """One pass of the outbox; a database, Redis or Telegram failure is logged and the next pass retries."""
        try:
            result = await self.outbox.step()
        except (DatabaseError, RedisError, TelegramError) as error:
            logger.error("telegram: outbox step failed (retried): %s", error)
            return
        if result.presented or result.closed or result.expired or result.failed:
            logger.info("telegram: outbox %s", result)

    async def run(self, *, stop: asyncio.Event) -> None:
        app = self.application
        async with app:  # getMe (an invalid token fails here) ... shutdown
            await self._commands_publish()
            await app.start()
            assert app.updater is not None  # built by ApplicationBuilder
            await app.updater.start_polling(
                timeout=self.config.poll_timeout,
                allowed_updates=ALLOWED_UPDATES,
                bootstrap_retries=5,
            )
            logger.info("telegram: polling as @%s; approver chat %s", app.bot.username, self.config.chat_id)
            try:
                while not stop.is_set():
                    self._wake.clear()  # before the step: a wake during it means one more step
                    await self.outbox_step()
                    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
                    await asyncio.wait(
                        waiters, timeout=self.config.outbox_interval, return_when=asyncio.FIRST_COMPLETED
                    )
                    for waiter in waiters:
                        waiter.cancel()
            finally:
                await app.updater.stop()
                await app.stop()
        logger.info("telegram: stopped")
