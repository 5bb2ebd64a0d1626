"""The market reports.

``report_generate`` is idempotent per (kind, day): a report that exists (and did not fail) is returned as it is, so
a beat tick delivered twice costs one Claude call.  The report is only text for people; nothing on the order path
reads it, and it goes nowhere until a person approves it: a new report opens its approval request (Telegram) in the
transaction that stores it and is listed on ``ai:reports:pending`` until it is decided.
"""

from __future__ import annotations

import json
import logging
from datetime import date
from typing import Any

from django.conf import settings
from django.db import transaction

from apps.commentary import selectors
from apps.commentary.claude.transport import TransportError
from apps.commentary.models import AiReport, CallPurpose, ReportKind
from apps.commentary.services.calls import claude_call
from apps.commentary.services.storage import text_row_store
from apps.core import store

logger = logging.getLogger(__name__)

PENDING_KEY = "ai:reports:pending"  # list of report ids waiting for approval, oldest first
TEMPLATE_MODEL = "template"
TEMPLATE_NOTICE = "TEMPLATE REPORT: written by the built-in template, no AI was used (ANTHROPIC_API_KEY is not set)."
MAX_OUTPUT_TOKENS = 1024

SYSTEM_PROMPT = (
    "You are the market commentator of an automated options-trading platform that trades SPY, QQQ and IWM options. "
    "Write a {title} for the platform's subscribers from the JSON facts you are given. Use only those facts: never "
    "invent a number, a trade or a level, and say plainly when a section is not available. Cover what the strategies "
    "signalled, what risk approved or rejected, the trades and realized PnL, the biggest options flow and the gamma "
    "exposure levels. Plain text, short paragraphs or bullet lines, at most 350 words. End with the line: "
    "'Automated commentary, not investment advice.'"
)

TITLES = {
    ReportKind.PRE_MARKET: "pre-market report",
    ReportKind.INTRADAY: "intraday report",
    ReportKind.POST_MARKET: "post-market report",
}


def parse_day(day: date | str) -> date:
    return day if isinstance(day, date) else date.fromisoformat(day)


def _push_pending(report_id: int) -> None:
    client = store.get_redis()
    # LREM first: a regenerated report is listed once.
    client.lrem(PENDING_KEY, 0, str(report_id))
    client.rpush(PENDING_KEY, str(report_id))


def pending_remove(report_id: int) -> None:
    """The report was decided (approved, rejected or expired): it no longer waits."""
    store.get_redis().lrem(PENDING_KEY, 0, str(report_id))


def report_title(report: AiReport) -> str:
    return f"{TITLES[ReportKind(report.kind)].capitalize()} {report.day.isoformat()}"


def report_ref(report: AiReport) -> str:
    """The report's stable name outside this table (``ai_calls.ref``, the Discord posts' ref)."""
    return f"{report.kind}:{report.day.isoformat()}"


def _section_lines(facts: dict[str, Any]) -> list[str]:
    lines: list[str] = []

    def unavailable(section: dict[str, Any]) -> bool:
        if not section.get("available"):
            lines.append(f"  not available ({section.get('reason', 'no data')})")
            return True
        return False

    lines.append("Signals")
    signals = facts["signals"]
    if not unavailable(signals):
        lines.append(f"  {signals['total']} signals")
        for strategy, counts in signals["by_strategy"].items():
            detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "total")
            lines.append(f"  {strategy}: {counts['total']} ({detail})")

    lines.append("Risk")
    risk = facts["risk"]
    if not unavailable(risk):
        lines.append(f"  approved {risk['approved']}, rejected {risk['rejected']}")
        for item in risk["top_rejection_reasons"]:
            lines.append(f"  rejected {item['count']}x: {item['reason']}")

    lines.append("Trades")
    trades = facts["trades"]
    if not unavailable(trades):
        lines.append(
            f"  opened {trades['opened']}, closed {trades['closed']}, still open {trades['still_open']}; "
            f"wins {trades['wins']}, losses {trades['losses']}"
        )
        lines.append(f"  realized PnL ${trades['realized_pnl']} (fees ${trades['fees']})")
        for strategy, row in trades["by_strategy"].items():
            lines.append(f"  {strategy}: {row['closed']} closed, ${row['realized_pnl']}")
        for label in ("best", "worst"):
            row = trades.get(label)
            if row:
                pnl, reason = row["realized_pnl"], row["exit_reason"]
                lines.append(f"  {label}: {row['option_symbol']} x{row['quantity']} ${pnl} ({reason})")

    lines.append("Biggest flow")
    flow = facts["flow"]
    if not unavailable(flow):
        lines.append(f"  {flow['count']} flow alerts")
        for alert in flow["biggest"]:
            sweep = " sweep" if alert["sweep"] else ""
            lines.append(f"  {alert['option_symbol']} ${alert['total_premium']} premium{sweep}")

    lines.append("Gamma exposure")
    gex = facts["gex"]
    if not unavailable(gex):
        if not gex["by_ticker"]:
            lines.append("  no GEX snapshots in the window")
        for ticker, levels in gex["by_ticker"].items():
            strikes = ", ".join(s["strike"] for s in levels.get("largest_gamma_strikes", []))
            line = f"  {ticker}: price {levels['price']}, gamma (OI) {levels['gamma_oi']}"
            lines.append(line + (f"; largest gamma strikes {strikes}" if strikes else ""))
    return lines


def report_template(*, kind: str, day: date, facts: dict[str, Any]) -> str:
    """The report without AI: the facts laid out plainly, the first line saying it is a template."""
    title = TITLES[ReportKind(kind)].capitalize()
    window = facts["window"]
    lines = [TEMPLATE_NOTICE, f"{title} for {day.isoformat()} (covers {window['start']} to {window['end']})", ""]
    lines += _section_lines(facts)
    lines += ["", "Automated summary, not investment advice."]
    return "\n".join(lines)


def _write(*, kind: str, day: date, values: dict[str, Any]) -> tuple[AiReport, bool]:
    """Store the report unless a concurrent run stored a good one first; returns (report, stored_by_us)."""
    with transaction.atomic():
        report, stored = text_row_store(AiReport, key={"kind": kind, "day": day}, values=values)
        if not stored:
            return report, False
        if report.status == AiReport.Status.PENDING_APPROVAL:
            from apps.approvals.services import request_open

            request_open(
                subject_type="ai_report", subject_id=report.pk, title=report_title(report), text=report.content
            )
            transaction.on_commit(lambda: _push_pending(report.pk))
    return report, True


def report_generate(*, kind: str, day: date | str) -> AiReport:
    """The (kind, day) market report: the stored one if it exists and did not fail, else a new one written by Claude
    (with ``ANTHROPIC_API_KEY``) or by the labelled template (without).  A Claude failure that outlasts the SDK's
    retries is stored as ``failed`` with the error; calling again retries it.  Every Claude call is an ``ai_calls``
    row.  A new report opens its approval request and is listed on ``ai:reports:pending`` (after commit).
    """
    kind = ReportKind(kind).value
    day = parse_day(day)
    existing = AiReport.objects.filter(kind=kind, day=day).first()
    if existing is not None and existing.status != AiReport.Status.FAILED:
        return existing

    facts = selectors.report_facts(kind=kind, day=day)
    values: dict[str, Any] = {"facts": facts, "error": "", "input_tokens": 0, "output_tokens": 0}
    if not settings.ANTHROPIC_API_KEY:
        values.update(
            model=TEMPLATE_MODEL,
            is_template=True,
            content=report_template(kind=kind, day=day, facts=facts),
            cost_usd=None,
            status=AiReport.Status.PENDING_APPROVAL,
        )
    else:
        system = SYSTEM_PROMPT.format(title=TITLES[ReportKind(kind)])
        prompt = f"Facts for the {TITLES[ReportKind(kind)]} of {day.isoformat()}:\n" + json.dumps(facts, indent=1)
        try:
            answer = claude_call(
                purpose=CallPurpose.REPORT,
                ref=f"{kind}:{day.isoformat()}",
                system=system,
                prompt=prompt,
                max_tokens=MAX_OUTPUT_TOKENS,
            )
        except TransportError as error:
            values.update(
                model=settings.ANTHROPIC_MODEL,
                is_template=False,
                content="",
                cost_usd=None,
                status=AiReport.Status.FAILED,
                error=str(error),
            )
        else:
            completion = answer.completion
            values.update(
                model=completion.model,
                is_template=False,
                content=completion.text,
                input_tokens=completion.input_tokens,
                output_tokens=completion.output_tokens,
                cost_usd=answer.cost_usd,
                status=AiReport.Status.PENDING_APPROVAL,
            )
    report, stored = _write(kind=kind, day=day, values=values)
    if not stored:
        logger.info("commentary: %s report for %s was written concurrently; kept the stored one", kind, day)
    return report
