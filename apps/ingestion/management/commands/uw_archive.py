"""``manage.py uw_archive --out PATH [--since T] [--until T]``: the raw archive written back out as a session file.

Both halves of the archive are read — the per-frame rows (``uw_raw_frames``) and the option tape's compressed
blocks (``uw_raw_batches``) — and merged in receive order, so the output replays (``manage.py replay``) or re-ingests
(``manage.py ingest_file``) exactly what the platform received.
"""

from __future__ import annotations

import gzip
import heapq
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.ingestion import tape
from apps.ingestion.models import RawBatch, RawFrame
from apps.ingestion.redis_keys import epoch_ms
from apps.ingestion.uw.normalize import parse_time


def _moment(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise CommandError(f"not a time: {text!r} (ISO, or epoch ms)") from exc


def _frame_lines(since: datetime | None, until: datetime | None) -> Iterator[tuple[int, str]]:
    rows = RawFrame.objects.order_by("received_at", "id")
    if since is not None:
        rows = rows.filter(received_at__gte=since)
    if until is not None:
        rows = rows.filter(received_at__lt=until)
    for received_at, channel, payload in rows.values_list("received_at", "channel", "payload").iterator(2000):
        ms = epoch_ms(received_at)
        yield ms, orjson.dumps({"received_at": ms, "frame": [channel, payload]}).decode()


def _tape_lines(since: datetime | None, until: datetime | None) -> Iterator[tuple[int, str]]:
    """The tape's lines in receive order.  Blocks come ordered by their first receive time and no line of a block is
    older than that, so a line older than the next block's start can be written out: memory holds about one block."""
    batches = RawBatch.objects.order_by("first_received_at", "id")
    if since is not None:
        batches = batches.filter(last_received_at__gte=since)
    if until is not None:
        batches = batches.filter(first_received_at__lt=until)
    low = epoch_ms(since) if since is not None else None
    high = epoch_ms(until) if until is not None else None
    pending: list[tuple[int, int, str]] = []
    order = 0
    for batch in batches.iterator(50):
        start = epoch_ms(batch.first_received_at)
        while pending and pending[0][0] < start:
            ms, _, line = heapq.heappop(pending)
            yield ms, line
        for line in tape.archived_lines(batch):
            value = orjson.loads(line)["received_at"]
            ms = value if type(value) is int else epoch_ms(parse_time(value))
            if (low is None or ms >= low) and (high is None or ms < high):
                order += 1
                heapq.heappush(pending, (ms, order, line))
    while pending:
        ms, _, line = heapq.heappop(pending)
        yield ms, line


class Command(BaseCommand):
    help = "Write the raw archive (frames and the option tape) back out as a session file, in receive order."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, type=Path, help="output path; .gz writes gzip")
        parser.add_argument("--since", help="first receive time to include (ISO or epoch ms)")
        parser.add_argument("--until", help="receive time to stop before (ISO or epoch ms)")

    def handle(self, *args: Any, **options: Any) -> None:
        since = _moment(options["since"]) if options["since"] else None
        until = _moment(options["until"]) if options["until"] else None
        if since is not None and until is not None and until <= since:
            raise CommandError("--until must be after --since")
        if not RawFrame.objects.exists() and not RawBatch.objects.exists():
            raise CommandError("the raw archive is empty")
        out: Path = options["out"]
        out.parent.mkdir(parents=True, exist_ok=True)
        count = 0
        handle: IO[str]
        with gzip.open(out, "wt", encoding="utf-8") if out.suffix == ".gz" else out.open("w") as handle:
            # Batches overlap in time (several workers, reconnects): merge the two ordered streams by receive time.
            for _, line in heapq.merge(_frame_lines(since, until), _tape_lines(since, until), key=lambda x: x[0]):
                handle.write(line)
                handle.write("\n")
                count += 1
        self.stdout.write(f"{count} lines written to {out}")
