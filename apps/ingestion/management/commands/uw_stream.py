"""``manage.py uw_stream``: the long-lived Unusual Whales socket listener (see ``apps.ingestion.uw.stream``)."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.ingestion.uw.stream import StreamConfig, StreamListener, celery_backfill, redacted
from apps.ops.exporter import metrics_endpoint_start


class Command(BaseCommand):
    help = "Listen to the Unusual Whales socket and hand its frames to the ingestion workers until SIGTERM."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--channels",
            help="comma-separated channels to join instead of UW_CHANNELS (a name ending in ':' is per ticker)",
        )
        parser.add_argument("--no-backfill", action="store_true", help="do not request a REST gap backfill")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.UW_API_TOKEN:
            raise CommandError("UW_API_TOKEN is not set: the Unusual Whales socket needs your API token")
        if not settings.REDIS_URL:
            raise CommandError("REDIS_URL is not set: the listener hands frames to Celery workers through Redis")
        config = StreamConfig.from_settings()
        if options["channels"]:
            names: list[str] = []
            for part in options["channels"].split(","):
                part = part.strip()
                if part.endswith(":"):
                    names.extend(f"{part}{ticker}" for ticker in settings.TRACKED_TICKERS)
                elif part:
                    names.append(part)
            config.channels = tuple(dict.fromkeys(names))
        listener = StreamListener(config, request_backfill=None if options["no_backfill"] else celery_backfill)
        metrics_endpoint_start()  # METRICS_PORT (0: not served)

        def stop(signum: int, frame: FrameType | None) -> None:
            self.stderr.write(f"uw_stream: {signal.Signals(signum).name} received, flushing and stopping")
            listener.request_stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(
            f"uw_stream: {redacted(config.url)}, {len(config.channels)} channels "
            f"({', '.join(config.channels[:6])}{', …' if len(config.channels) > 6 else ''})"
        )
        listener.run()
        stats = listener.stats
        self.stdout.write(
            f"uw_stream stopped: {stats.frames} frames read, {stats.frames_published} published, "
            f"{stats.dropped_frames} dropped, {listener.queued_frames} unpublished, {stats.reconnects} reconnects"
        )
