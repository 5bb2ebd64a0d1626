"""``manage.py telegram_bot``: the approvals and operator bot, long polling Telegram until SIGTERM.

Runbook: docs/telegram.md."""

from __future__ import annotations

import asyncio
import logging
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from telegram.error import InvalidToken

from apps.approvals.telegram.bot import ApproverBot, BotConfig
from apps.ops.exporter import metrics_endpoint_start

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the Telegram bot: approval requests with Approve / Reject / Edit buttons, and operator commands."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--outbox-interval",
            type=float,
            default=5.0,
            help="seconds between passes over pending and decided requests (a decision in Telegram wakes it at once)",
        )
        parser.add_argument(
            "--min-send-interval",
            type=float,
            default=3.0,
            help="seconds between the bot's own messages in the approver chat (Telegram: ~20 a minute per group)",
        )

    def handle(self, *args: object, **options: object) -> None:
        if not settings.TELEGRAM_BOT_TOKEN:
            raise CommandError("TELEGRAM_BOT_TOKEN is not set: the Telegram bot has nothing to log in with")
        chat_id = settings.TELEGRAM_APPROVER_CHAT_ID
        try:
            int(chat_id)
        except ValueError:
            raise CommandError(
                f"TELEGRAM_APPROVER_CHAT_ID must be the numeric chat id (a group's is negative), not {chat_id!r}"
            ) from None
        config = BotConfig(
            token=settings.TELEGRAM_BOT_TOKEN,
            api_root=settings.TELEGRAM_BASE_URL or "",
            chat_id=chat_id,
            poll_timeout=settings.TELEGRAM_POLL_TIMEOUT_SECONDS,
            outbox_interval=float(options["outbox_interval"]),  # type: ignore[arg-type]
            min_send_interval=float(options["min_send_interval"]),  # type: ignore[arg-type]
        )
        metrics_endpoint_start()  # METRICS_PORT (0: not served)
        try:
            asyncio.run(self._serve(config))
        except InvalidToken as error:
            raise CommandError(f"Telegram refused TELEGRAM_BOT_TOKEN: {error}") from error

    async def _serve(self, config: BotConfig) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        self.stdout.write(f"telegram_bot: polling; approvals go to chat {config.chat_id}")
        self.stdout.flush()
        await ApproverBot(config).run(stop=stop)
        self.stdout.write("telegram_bot: stopped")
