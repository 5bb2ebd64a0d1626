"""Ingest a recorded NDJSON file (plain or .gz) of socket lines, in batches, straight through ``ingest_lines``."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.ingestion.services import IngestResult, ingest_lines


def _lines(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            yield line.rstrip("\r\n")


class Command(BaseCommand):
    help = "Ingest an NDJSON file of Unusual Whales socket lines (re-running it only counts duplicates)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="NDJSON file, one {received_at, frame} object per line; .gz is read as gzip")
        parser.add_argument("--source", help="source recorded on each row (default: the file name)")
        parser.add_argument("--batch-lines", type=int, default=500, help="lines per ingest_lines call")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"])
        if not path.is_file():
            raise CommandError(f"{path} is not a file")
        size = options["batch_lines"]
        if size < 1:
            raise CommandError("--batch-lines must be at least 1")
        source = options["source"] or path.name
        total = IngestResult()
        batch: list[str] = []
        for line in _lines(path):
            if not line.strip():
                continue  # a trailing blank line is file layout, not a frame
            batch.append(line)
            if len(batch) >= size:
                total.merge(ingest_lines(lines=batch, source=source))
                batch = []
        if batch:
            total.merge(ingest_lines(lines=batch, source=source))
        self.stdout.write(
            f"{path.name}: {total.accepted} accepted, {total.duplicates} duplicates, {total.quarantined} quarantined"
            + (f" {dict(sorted(total.quarantine_reasons.items()))}" if total.quarantined else "")
        )
