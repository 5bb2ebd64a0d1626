"""Re-run quarantined lines through the current normalizers (after a fix); release the ones that now pass."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.ingestion.services import quarantine_retry


class Command(BaseCommand):
    help = "Retry quarantined lines: ingest and delete those that now normalize; update the reason of the rest."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=1000, help="how many quarantined lines, oldest first")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1")
        outcome = quarantine_retry(limit=options["limit"])
        self.stdout.write(
            f"examined {outcome.examined}: released {outcome.released} "
            f"({outcome.ingested.accepted} accepted, {outcome.ingested.duplicates} duplicates), "
            f"still quarantined {outcome.still_quarantined} ({outcome.reasons_changed} with a new reason)"
        )
