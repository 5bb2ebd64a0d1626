"""Commentary tasks: thin wrappers over the report service."""

from __future__ import annotations

from celery import shared_task

from apps.commentary import services
from apps.core import calendar, clock


@shared_task(name="commentary.market_report", acks_late=True)
def market_report(kind: str = "post_market", day: str | None = None) -> int | None:
    """Write the ``kind`` report for ``day`` (default: today in New York); nothing on days the market is closed.

    Safe to run twice: reports are unique per (kind, day) and an existing one is returned, not rewritten.
    """
    report_day = calendar.market_day(clock.now()) if day is None else services.parse_day(day)
    if not calendar.is_trading_day(report_day):
        return None
    return services.report_generate(kind=kind, day=report_day).pk
