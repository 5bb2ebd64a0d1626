"""The nightly export of one New York day of the execution books: the order state log and the trades, as CSV files.

``trade_log-YYYY-MM-DD.csv`` holds every ``trade_logs`` row whose ``at`` falls in the day, ``trades-YYYY-MM-DD.csv``
every trade entered or exited in it.  Times are ISO in UTC; decimals are written exactly as stored (``str`` of the
``Decimal``), never through a float; an empty cell is a value the row does not have.
"""

from __future__ import annotations

import csv
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time
from pathlib import Path

from django.conf import settings
from django.db.models import Q

from apps.core import calendar
from apps.execution.models import Trade, TradeLog
from apps.execution.selectors import day_bounds

logger = logging.getLogger(__name__)

TRADE_LOG_COLUMNS = (
    "at",
    "client_order_id",
    "signal_id",
    "leg",
    "side",
    "quantity",
    "option_symbol",
    "from_status",
    "to_status",
    "applied",
    "detail",
)
TRADE_COLUMNS = (
    "id",
    "signal_id",
    "strategy",
    "ticker",
    "option_symbol",
    "quantity",
    "entry_price",
    "entry_at",
    "exit_price",
    "exit_at",
    "exit_reason",
    "realized_pnl",
    "fees",
    "status",
)
TRADE_FIELDS = {"signal_id": "signal__signal_id"}  # columns read through a relation
CHUNK = 2000


def exports_dir() -> Path:
    """Where the nightly exports go unless told otherwise: ``TP_DATA_DIR/exports``."""
    return Path(settings.DATA_DIR) / "exports"


def export_paths(*, day: date, out_dir: Path) -> tuple[Path, Path]:
    """The trade log's and the trades file's paths for ``day`` in ``out_dir``."""
    return out_dir / f"trade_log-{day.isoformat()}.csv", out_dir / f"trades-{day.isoformat()}.csv"


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    # A Decimal's str is its exact stored value ("1.200000" for numeric(18, 6)); ints and text as they are.
    return str(value)


def _write_atomically(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    """Write the CSV beside ``path`` and rename it over ``path``: a reader sees the old file or the new one, never a
    half-written one.  Returns the data rows written."""
    count = 0
    handle = tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False, newline="", encoding="utf-8"
    )
    try:
        with handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for row in rows:
                writer.writerow([_cell(value) for value in row])
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return count


def trade_log_export(*, day: date, out_dir: Path | None = None) -> Path:
    """Write the trade log and the trades of the New York calendar day ``day`` to ``out_dir`` (default
    ``TP_DATA_DIR/exports``, created when missing); return the trade log's path.

    Guarantees: the trade log holds exactly the ``trade_logs`` rows with ``at`` in the day (New York midnight to
    midnight), ordered by ``at`` then ``id``; the trades file the trades whose ``entry_at`` or ``exit_at`` is in the
    day, ordered by ``entry_at`` then ``id``; each file replaces any previous export of the day atomically (temporary
    file, then rename), so running it again rewrites both files with the books as they are then and an interrupted
    run leaves the previous files whole.
    """
    directory = exports_dir() if out_dir is None else out_dir
    directory.mkdir(parents=True, exist_ok=True)
    start, end = day_bounds(datetime.combine(day, time(12), tzinfo=calendar.NEW_YORK))
    logs = (
        TradeLog.objects.filter(at__gte=start, at__lt=end)
        .order_by("at", "id")
        .values_list(
            "at",
            "order__client_order_id",
            "order__signal__signal_id",
            "order__leg",
            "order__side",
            "order__quantity",
            "order__option_symbol",
            "from_status",
            "to_status",
            "applied",
            "detail",
        )
    )
    trades = (
        Trade.objects.filter(Q(entry_at__gte=start, entry_at__lt=end) | Q(exit_at__gte=start, exit_at__lt=end))
        .order_by("entry_at", "id")
        .values_list(*(TRADE_FIELDS.get(column, column) for column in TRADE_COLUMNS))
    )
    trade_log_path, trades_path = export_paths(day=day, out_dir=directory)
    # The trade log last: its path is what the caller gets back, so once it is there the trades file is too.
    trade_count = _write_atomically(trades_path, TRADE_COLUMNS, trades.iterator(chunk_size=CHUNK))
    log_count = _write_atomically(trade_log_path, TRADE_LOG_COLUMNS, logs.iterator(chunk_size=CHUNK))
    logger.info(
        "trade log export %s: %d log rows to %s, %d trades to %s",
        day.isoformat(),
        log_count,
        trade_log_path,
        trade_count,
        trades_path,
    )
    return trade_log_path
