"""Commentary tasks: thin wrappers over the report and explanation services (queue ``commentary``)."""

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


@shared_task(name="commentary.explain_trade", acks_late=True)
def explain_trade(trade_id: int) -> int:
    """Write the explanation of an entered trade (enqueued by ``distribution.announce`` after the entry fill, on the
    commentary queue: the order path never waits for it).  Returns the explanation id.

    Safe to run twice: explanations are unique per trade and a stored one (unless it failed) is returned, not
    rewritten, so a redelivered task costs no second Claude call and opens no second approval request.
    """
    return services.explanation_generate(trade_id=trade_id).pk


@shared_task(name="commentary.report_social_drafts", acks_late=True)
def report_social_drafts(report_id: int) -> None:
    """Draft the X and Reddit posts of an approved report (enqueued after the approval commits).

    Safe to run twice: the social app drafts once per report and returns the existing drafts on a second call.
    """
    from apps.social.services import drafts_for_report

    drafts_for_report(report_id=report_id)
