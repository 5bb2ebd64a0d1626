"""Trade explanations: why the platform entered a trade, citing the evidence it rests on.

``explanation_generate`` is idempotent per trade: an explanation that exists (and did not fail) is returned as it
is.  It runs on the commentary queue after the entry fill (``commentary.explain_trade``), never on the order path:
the trade is already placed and booked when the explanation is written.

The writer (Claude, or the labelled template without an API key) is given the evidence as JSON, each item with a
citation id (S1 signal, F1..Fn flow alerts, G1..Gn GEX levels, R1 risk decision), and must cite them as ``[S1]``.
The citation check: an answer that cites nothing, or cites an id that is not in the evidence, is asked for once
more with a stricter instruction naming the problem; if the second answer fails the check too the explanation is
stored ``failed`` (with the text and the offending ids, for a person to read) and is not sent for approval.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction

from apps.commentary import selectors
from apps.commentary.claude.transport import TransportError
from apps.commentary.models import AiExplanation, CallPurpose
from apps.commentary.services.calls import Answer, claude_call
from apps.commentary.services.storage import text_row_store
from apps.core import calendar, store

logger = logging.getLogger(__name__)

EXPLANATIONS_KEY = "ai:explainability"  # hash: trade id -> JSON {explanation_id, status, citations, is_template}
TEMPLATE_MODEL = "template"
TEMPLATE_NOTICE = (
    "TEMPLATE EXPLANATION: written by the built-in template, no AI was used (ANTHROPIC_API_KEY is not set)."
)
MAX_OUTPUT_TOKENS = 600
CLAUDE_ATTEMPTS = 2  # the first answer and one stricter retry when it fails the citation check
Status = AiExplanation.Status

# "[S1]", "[F1, F2]", "[G2; R1]": every bracketed letter+number id counts as a citation, known or not.
_CITATION_GROUP = re.compile(r"\[\s*([A-Za-z]{1,2}\d{1,3}(?:\s*[,;]\s*[A-Za-z]{1,2}\d{1,3})*)\s*\]")
_CITATION_ID = re.compile(r"[A-Za-z]{1,2}\d{1,3}")

SYSTEM_PROMPT = (
    "You explain to the subscribers of an automated options-trading platform why it entered a trade. You are given "
    "the trade and the evidence it rests on as JSON; each evidence item has an id: S1 the strategy's signal, F1..Fn "
    "the biggest options flow alerts on the ticker before the signal, G1..Gn the gamma exposure (GEX) levels, R1 the "
    "risk manager's decision and sizing. Use only that evidence: never invent a number, a level or a reason. Cite "
    "the evidence behind every statement with its id in square brackets, e.g. [S1], [F2], [G1], [R1]; cite only ids "
    "that appear in the evidence. Plain text, at most 150 words. End with the line: "
    "'Automated commentary, not investment advice.'"
)
STRICTER = (
    "Your previous answer was not usable: {problem}. Write the explanation again. Every sentence must cite the "
    "evidence it uses in square brackets, and the only ids that exist are: {ids}."
)


def market_time(instant_iso: str) -> str:
    """A stored New York ISO time as people read it ("Fri 2026-11-20 09:36 ET")."""
    return datetime.fromisoformat(instant_iso).astimezone(calendar.NEW_YORK).strftime("%a %Y-%m-%d %H:%M ET")


class TradeNotFound(LookupError):
    """The trade to explain does not exist; the failed task is kept as a dead letter."""


def citations_parse(text: str) -> list[str]:
    """The ids ``text`` cites in square brackets, upper-cased, once each, in order of first use."""
    seen: dict[str, None] = {}
    for group in _CITATION_GROUP.findall(text):
        for citation in _CITATION_ID.findall(group):
            seen.setdefault(citation.upper(), None)
    return list(seen)


def citation_problem(citations: list[str], known: list[str]) -> str:
    """Why a text with these citations may not be sent for approval, or "" when it may."""
    if not citations:
        return "it cites no evidence"
    unknown = [c for c in citations if c not in known]
    if unknown:
        return f"it cites {', '.join(unknown)}, which {'is' if len(unknown) == 1 else 'are'} not in the evidence"
    return ""


def _evidence_ids(evidence: dict[str, Any]) -> list[str]:
    return [item["id"] for item in evidence["items"]]


def explanation_template(evidence: dict[str, Any]) -> str:
    """The explanation without AI: the evidence laid out plainly, each line citing its item, the first line saying
    it is a template."""
    trade = evidence["trade"]
    items = evidence["items"]
    lines = [
        TEMPLATE_NOTICE,
        f"Trade {trade['id']}: bought {trade['quantity']} x {trade['option_symbol']} at ${trade['entry_price']} "
        f"({trade['strategy']}), {market_time(trade['entry_at'])}.",
    ]
    signal = next(item for item in items if item["kind"] == "signal")
    lines.append(
        f"Signal: {signal['strategy']} rule {signal['rule']}, {signal['direction']}, confidence "
        f"{signal['confidence']}. {signal['rationale']} [S1]"
    )
    flow = [item for item in items if item["kind"] == "flow_alert"]
    if flow:
        lines.append("Flow before the signal:")
        for alert in flow:
            sweep = ", sweep" if alert["sweep"] else ""
            at = market_time(alert["executed_at"])
            lines.append(f"  {alert['option_symbol']} ${alert['total_premium']} premium{sweep} at {at} [{alert['id']}]")
    else:
        since = market_time(evidence["window"]["flow_from"])
        lines.append(f"Flow before the signal: no flow alerts on {trade['ticker']} since {since}.")
    gex = [item for item in items if item["kind"] in ("gex_snapshot", "gex_strike")]
    if gex:
        lines.append("Gamma exposure:")
        for level in gex:
            if level["kind"] == "gex_snapshot":
                at = market_time(level["ts"])
                lines.append(f"  price {level['price']}, gamma (OI) {level['gamma_oi']} at {at} [{level['id']}]")
            else:
                lines.append(f"  strike {level['strike']}, net gamma (OI) {level['net_gamma_oi']} [{level['id']}]")
    else:
        lines.append("Gamma exposure: no GEX levels before the signal.")
    risk = next((item for item in items if item["kind"] == "risk_decision"), None)
    if risk is not None:
        passed = sum(1 for check in risk["checks"] if check.get("passed"))
        verdict = "approved" if risk["approved"] else "rejected"
        lines.append(
            f"Risk: {verdict} {risk['quantity']} contracts at up to ${risk['limit_price']}; {passed} of "
            f"{len(risk['checks'])} checks passed ({risk['reason']}). [R1]"
        )
    else:
        lines.append("Risk: no risk decision is recorded for this signal.")
    lines.append("Automated explanation, not investment advice.")
    return "\n".join(lines)


def _mirror(explanation_id: int) -> None:
    """Write the explanation's summary into ``ai:explainability`` (after commit; the table is the truth)."""
    row = AiExplanation.objects.filter(pk=explanation_id).first()
    if row is None:
        return
    summary = {
        "explanation_id": row.pk,
        "status": row.status,
        "citations": row.citations,
        "is_template": row.is_template,
        "updated_at": row.updated_at.isoformat(),
    }
    store.get_redis().hset(EXPLANATIONS_KEY, str(row.trade_id), json.dumps(summary))


def mirror_on_commit(explanation_id: int) -> None:
    transaction.on_commit(lambda: _mirror(explanation_id))


def explanation_title(evidence: dict[str, Any]) -> str:
    trade = evidence["trade"]
    return f"Why we entered {trade['option_symbol']} ({trade['strategy']}, trade {trade['id']})"


def _write(*, trade_id: int, values: dict[str, Any]) -> tuple[AiExplanation, bool]:
    """Store the explanation unless a concurrent run stored a good one first; returns (row, stored_by_us).  A new
    ``pending_approval`` row opens its approval request in the same transaction."""
    with transaction.atomic():
        row, stored = text_row_store(AiExplanation, key={"trade_id": trade_id}, values=values)
        if not stored:
            return row, False
        if row.status == Status.PENDING_APPROVAL:
            from apps.approvals.services import request_open

            request_open(
                subject_type="ai_explanation",
                subject_id=row.pk,
                title=explanation_title(row.evidence),
                text=row.content,
            )
        mirror_on_commit(row.pk)
    return row, True


def _ask_claude(*, trade_id: int, evidence: dict[str, Any]) -> dict[str, Any]:
    """Claude's explanation checked for citations (one stricter retry), as the row's values (``failed`` with the
    reason when no usable answer came back)."""
    known = _evidence_ids(evidence)
    missing = [
        label
        for kind, label in (("flow_alert", "flow alerts"), ("gex_snapshot", "GEX snapshot"), ("risk_decision", "risk"))
        if not any(item["kind"] == kind for item in evidence["items"])
    ]
    prompt = (
        f"Explain why the platform entered trade {trade_id}. Evidence ids you may cite: {', '.join(known)}."
        + (f" Not available: {', '.join(missing)}." if missing else "")
        + "\n"
        + json.dumps(evidence, indent=1)
    )
    values: dict[str, Any] = {"model": settings.ANTHROPIC_MODEL, "is_template": False, "input_tokens": 0}
    values.update(output_tokens=0, cost_usd=None, content="", citations=[], unknown_citations=[])
    problem = ""
    for attempt in range(1, CLAUDE_ATTEMPTS + 1):
        ask = prompt if attempt == 1 else prompt + "\n\n" + STRICTER.format(problem=problem, ids=", ".join(known))
        try:
            answer: Answer = claude_call(
                purpose=CallPurpose.EXPLANATION,
                ref=f"trade:{trade_id}",
                system=SYSTEM_PROMPT,
                prompt=ask,
                max_tokens=MAX_OUTPUT_TOKENS,
            )
        except TransportError as error:
            values.update(status=Status.FAILED, error=str(error))
            return values
        completion = answer.completion
        values["input_tokens"] += completion.input_tokens
        values["output_tokens"] += completion.output_tokens
        if answer.cost_usd is not None:
            values["cost_usd"] = (values["cost_usd"] or 0) + answer.cost_usd
        citations = citations_parse(completion.text)
        values.update(
            model=completion.model,
            content=completion.text,
            citations=citations,
            unknown_citations=[c for c in citations if c not in known],
        )
        problem = citation_problem(citations, known)
        if not problem:
            values.update(status=Status.PENDING_APPROVAL, error="")
            return values
        logger.warning("commentary: explanation of trade %s attempt %d: %s", trade_id, attempt, problem)
    values.update(
        status=Status.FAILED,
        error=f"failed the citation check after {CLAUDE_ATTEMPTS} answers: {problem}; not sent for approval",
    )
    return values


def explanation_generate(*, trade_id: int) -> AiExplanation:
    """The explanation of a trade: the stored one if it exists and did not fail, else a new one written by Claude
    (with ``ANTHROPIC_API_KEY``; every call an ``ai_calls`` row) or by the labelled template (without).  Only an
    explanation that cites its evidence and nothing else is stored ``pending_approval`` and opens its approval
    request; anything else is stored ``failed`` with the reason, and calling again writes it anew.  Raises
    ``TradeNotFound`` for an unknown trade.
    """
    existing = AiExplanation.objects.filter(trade_id=trade_id).first()
    if existing is not None and existing.status != Status.FAILED:
        return existing
    evidence = selectors.explanation_evidence(trade_id=trade_id)
    if evidence is None:
        raise TradeNotFound(f"trade {trade_id} does not exist")
    if not settings.ANTHROPIC_API_KEY:
        content = explanation_template(evidence)
        citations = citations_parse(content)
        values: dict[str, Any] = {
            "model": TEMPLATE_MODEL,
            "is_template": True,
            "content": content,
            "citations": citations,
            "unknown_citations": [c for c in citations if c not in _evidence_ids(evidence)],
            "input_tokens": 0,
            "output_tokens": 0,
            "cost_usd": None,
            "status": Status.PENDING_APPROVAL,
            "error": "",
        }
    else:
        values = _ask_claude(trade_id=trade_id, evidence=evidence)
    values["evidence"] = evidence
    row, stored = _write(trade_id=trade_id, values=values)
    if not stored:
        logger.info("commentary: explanation of trade %s was written concurrently; kept the stored one", trade_id)
    elif row.status == Status.FAILED:
        logger.error("commentary: explanation of trade %s failed: %s", trade_id, row.error)
    return row
