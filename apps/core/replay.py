"""Replay a recorded session through every stage on the simulated clock — the platform's main job.

Lines are read in order and grouped into small batches by their ``received_at``; before each batch the clock moves to
the batch's time and the simulated beat fires whatever periodic work fell due (the distribution sweep, reports), just
as the live beat would.  Each batch goes through ``ingest_lines``, which hands over to analytics, signals, risk,
execution and distribution through the same Celery tasks as live (executed in-process on the embedded default).
Every input line is accounted for: accepted + duplicates + quarantined == lines.
"""

from __future__ import annotations

import gzip
import io
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from celery import current_app

from apps.core import calendar, clock
from apps.core.beat import PeriodicDeclaration, SimulatedBeat
from apps.core.logging import correlated

logger = logging.getLogger(__name__)

# Analytics recomputes a ticker at most once a minute of market time (unless a new flow alert arrives), so batches of
# up to 30 s of frames cost little precision; the simulated beat still fires every sweep at its own due time.
DEFAULT_BATCH_SECONDS = 30.0
DEFAULT_BATCH_LINES = 1000
# After the last frame the day is played on to this New York time, so exits, delayed posts and the post-market
# report happen as they would live.
END_OF_DAY_NY = (16, 35)
# ... and it starts no later than this, before the 09:00 pre-market report.
START_OF_DAY_NY = (8, 59)


class SessionFileError(ValueError):
    """The session path cannot be read as a session file."""


@dataclass
class ReplayCounts:
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    by_channel: Counter[str] = field(default_factory=Counter)
    quarantine_reasons: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    first_received_at: datetime | None = None
    last_received_at: datetime | None = None


def _open_lines(path: Path) -> Iterator[str]:
    """The file's lines as text (gzip detected by its magic bytes); undecodable bytes are kept, replaced."""
    if not path.exists():
        raise SessionFileError(f"session file not found: {path}")
    if path.is_dir():
        raise SessionFileError(f"session path is a directory: {path}")
    with path.open("rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    raw = gzip.open(path, "rb") if gzipped else path.open("rb")
    with raw, io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="\n") as text:
        for line in text:
            yield line[:-1] if line.endswith("\n") else line


def count_lines(path: Path) -> int:
    return sum(1 for _ in _open_lines(path))


def _received_at(line: str) -> datetime | None:
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    value = data.get("received_at")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _run_periodic(declaration: PeriodicDeclaration) -> None:
    task = current_app.tasks.get(declaration.task)
    if task is None:
        logger.warning("replay: periodic task %s is declared but not registered", declaration.task)
        return
    task.apply(kwargs=declaration.kwargs, throw=True)


def _day_start(first: datetime) -> datetime:
    """Where the simulated day begins: just before the pre-market report when the recording starts later, so a
    replayed trading day sees its 09:00 New York work as a live one would."""
    day = calendar.market_day(first)
    if calendar.session_for(day) is None:
        return first
    hour, minute = START_OF_DAY_NY
    start = datetime(day.year, day.month, day.day, hour, minute, tzinfo=calendar.NEW_YORK).astimezone(UTC)
    return min(first, start)


def _end_of_day(day: date) -> datetime | None:
    session = calendar.session_for(day)
    if session is None:
        return None
    hour, minute = END_OF_DAY_NY
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=calendar.NEW_YORK).astimezone(UTC)


def replay_session(
    path: Path,
    *,
    batch_seconds: float = DEFAULT_BATCH_SECONDS,
    batch_lines: int = DEFAULT_BATCH_LINES,
    progress: Callable[[int], None] | None = None,
) -> ReplayCounts:
    """Play ``path`` through every stage. Leaves the clock simulated at the end of the played day."""
    from apps.ingestion.services import ingest_lines

    counts = ReplayCounts()
    source = path.name
    batch: list[str] = []
    batch_start: datetime | None = None
    batch_end: datetime | None = None
    beat: SimulatedBeat | None = None
    window = timedelta(seconds=batch_seconds)

    def flush() -> None:
        nonlocal batch, batch_start, batch_end
        if not batch:
            return
        if beat is not None and batch_end is not None:
            beat.run_until(batch_end, clock.advance_to)
            clock.advance_to(batch_end)
        # One id per batch, as a live batch gets from its ingestion task: every stage the batch leads to logs it.
        with correlated(f"replay-{counts.batches + 1}"):
            result = ingest_lines(lines=batch, source=source)
        counts.accepted += result.accepted
        counts.duplicates += result.duplicates
        counts.quarantined += result.quarantined
        counts.by_channel.update(result.by_channel)
        counts.quarantine_reasons.update(getattr(result, "quarantine_reasons", {}) or {})
        counts.batches += 1
        if progress is not None:
            progress(len(batch))
        batch, batch_start, batch_end = [], None, None

    for line in _open_lines(path):
        counts.lines += 1
        at = _received_at(line)
        if at is not None:
            if beat is None:
                start = _day_start(at)
                clock.set_simulated(start)
                # Faithful: every sweep of a quiet stretch runs, so a delayed post is released when due, not later.
                beat = SimulatedBeat(start=start, run=_run_periodic, max_catch_up=None)
                counts.first_received_at = at
            if batch_start is not None and (at - batch_start >= window or len(batch) >= batch_lines):
                flush()
            if batch_start is None:
                batch_start = at
            batch_end = at if batch_end is None else max(batch_end, at)
            counts.last_received_at = at if counts.last_received_at is None else max(counts.last_received_at, at)
        elif len(batch) >= batch_lines:
            flush()
        batch.append(line)
    if beat is None and batch:
        # A file without a single timestamp: nothing to play, but every line is still accounted for.
        clock.set_simulated(clock.now())
    flush()

    if beat is not None and counts.last_received_at is not None:
        end = _end_of_day(calendar.market_day(counts.last_received_at))
        if end is not None and end > counts.last_received_at:
            beat.run_until(end, clock.advance_to)
            clock.advance_to(end)
    return counts


def _decimal_str(value: Decimal | None) -> str:
    return str((value or Decimal("0")).quantize(Decimal("0.01")))


def summarize(counts: ReplayCounts) -> dict[str, Any]:
    """The replay's summary: this run's frame accounting and the played day's state in every stage."""
    from django.db.models import Count, Q, Sum

    from apps.approvals.models import ApprovalRequest
    from apps.commentary.models import AiExplanation, AiReport
    from apps.distribution.models import DistributionPost
    from apps.execution.models import Order, Position, Trade
    from apps.risk.models import RiskDecision
    from apps.signals.models import Signal
    from apps.social.models import SocialPost

    day = calendar.market_day(counts.first_received_at) if counts.first_received_at else None
    summary: dict[str, Any] = {
        "day": day.isoformat() if day else None,
        "lines": counts.lines,
        "batches": counts.batches,
        "frames": {
            "accepted": counts.accepted,
            "duplicates": counts.duplicates,
            "quarantined": counts.quarantined,
            "by_channel": dict(sorted(counts.by_channel.items())),
            "quarantine_reasons": dict(sorted(counts.quarantine_reasons.items())),
        },
    }
    if day is None:
        signals = Signal.objects.none()
    else:
        start = datetime(day.year, day.month, day.day, tzinfo=calendar.NEW_YORK).astimezone(UTC)
        signals = Signal.objects.filter(as_of__gte=start, as_of__lt=start + timedelta(days=1))
    by_strategy = dict(signals.values_list("strategy").annotate(n=Count("id")).order_by("strategy"))
    decisions = RiskDecision.objects.filter(signal__in=signals)
    orders = Order.objects.filter(signal__in=signals)
    trades = Trade.objects.filter(signal__in=signals)
    order_counts = orders.aggregate(
        submitted=Count("id"),
        filled=Count("id", filter=Q(status="filled")),
        rejected=Count("id", filter=Q(status="rejected")),
    )
    posts = DistributionPost.objects.filter(trade_id__in=trades.values("id"))
    by_tier = {
        tier: {"sent": sent, "late": late, "scheduled": scheduled}
        for tier, sent, late, scheduled in posts.values_list("tier")
        .annotate(
            sent=Count("id", filter=Q(status="sent")),
            late=Count("id", filter=Q(status="sent", late=True)),
            scheduled=Count("id", filter=Q(status="scheduled")),
        )
        .order_by("tier")
    }
    reports = AiReport.objects.filter(day=day) if day else AiReport.objects.none()
    explanations = AiExplanation.objects.filter(trade_id__in=trades.values("id"))
    social = SocialPost.objects.filter(source_ref__in=[f"trade:{pk}" for pk in trades.values_list("id", flat=True)])
    summary.update(
        {
            "signals": {"total": sum(by_strategy.values()), "by_strategy": by_strategy},
            "risk": {
                "approved": decisions.filter(approved=True).count(),
                "rejected": decisions.filter(approved=False).count(),
                # how often each check failed among the rejections (a rejection may fail several)
                "rejected_by_check": dict(
                    sorted(
                        Counter(
                            check["check"]
                            for checks in decisions.filter(approved=False).values_list("checks", flat=True)
                            for check in checks
                            if not check.get("passed", True)
                        ).items()
                    )
                ),
            },
            "orders": {
                "submitted": order_counts["submitted"],
                "filled": order_counts["filled"],
                "rejected": order_counts["rejected"],
            },
            "trades": {
                "opened": trades.count(),
                "closed": trades.filter(status="closed").count(),
                "by_exit_reason": dict(
                    trades.filter(status="closed").values_list("exit_reason").annotate(n=Count("id")).order_by()
                ),
            },
            "positions": {"open": Position.objects.exclude(quantity=0).count()},
            "pnl": {"realized": _decimal_str(trades.aggregate(total=Sum("realized_pnl"))["total"])},
            "distribution": {"by_tier": by_tier},
            "reports": {
                "count": reports.count(),
                "by_kind": {r.kind: ("template" if r.is_template else r.model) for r in reports.order_by("kind")},
            },
            "explanations": {
                "count": explanations.count(),
                "by_status": dict(explanations.values_list("status").annotate(n=Count("id")).order_by()),
                "template": explanations.filter(is_template=True).count(),
            },
            "social": {"by_status": dict(social.values_list("status").annotate(n=Count("id")).order_by())},
            "approvals": {
                "pending": dict(
                    ApprovalRequest.objects.filter(status="pending")
                    .values_list("subject_type")
                    .annotate(n=Count("id"))
                    .order_by()
                )
            },
        }
    )
    return summary
