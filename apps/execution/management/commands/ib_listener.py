"""``manage.py ib_listener``: own the Interactive Brokers connection (one process per IB client id)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from apps.execution.ib.dispatch import TaskSink
from apps.execution.ib.gateway import IBGateway
from apps.execution.ib.listener import IBListener
from apps.ops.exporter import metrics_endpoint_start


class Command(BaseCommand):
    help = "Own the IB connection: reconnect, reconcile, carry out order commands, turn TWS's reports into tasks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=None, help=f"TWS / IB Gateway host (IB_HOST, {settings.IB_HOST})")
        parser.add_argument("--port", type=int, default=None, help=f"its API port (IB_PORT, {settings.IB_PORT})")
        parser.add_argument("--client-id", type=int, default=None, help=f"IB_CLIENT_ID, {settings.IB_CLIENT_ID}")

    def handle(self, *args: Any, **options: Any) -> None:
        metrics_endpoint_start()  # METRICS_PORT (0: not served)
        gateway = IBGateway(sink=TaskSink(), host=options["host"], port=options["port"], client_id=options["client_id"])
        IBListener(gateway=gateway).run()
