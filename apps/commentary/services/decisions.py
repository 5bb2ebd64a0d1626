"""What an approval decision does to a report or an explanation (registered with the approvals app).

Each handler runs inside the deciding transaction (``apps.approvals.services.request_decide`` or the expiry sweep),
so the decision, the row's new status and the scheduled Discord posts commit together or not at all.  The Discord
posts are rows in the distribution tables (released by its sweep), so scheduling them here is a database write, not
a network call.  Anything slower (social drafts) is a task enqueued after commit.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from django.db import transaction

from apps.commentary.models import AiExplanation, AiReport
from apps.commentary.services import explanations, reports
from apps.core import clock

if TYPE_CHECKING:
    from apps.approvals.models import ApprovalRequest

logger = logging.getLogger(__name__)


class DecisionMismatch(RuntimeError):
    """The approval was decided for a row that is not waiting for it (the decision is rolled back)."""


def _decide(row: AiReport | AiExplanation, request: ApprovalRequest, *, status: str) -> None:
    waiting = type(row).Status.PENDING_APPROVAL
    if row.status != waiting:
        raise DecisionMismatch(
            f"{row} is {row.status}, not {waiting}: approval request {request.pk} cannot move it to {status}"
        )
    row.status = status
    row.decided_at = request.decided_at or clock.now()
    row.decided_by = request.decided_by
    row.decision_note = request.decision_note
    if status == type(row).Status.PUBLISHED:
        row.published_text = request.text
    row.updated_at = clock.now()
    row.save()


def _report(request: ApprovalRequest) -> AiReport:
    return AiReport.objects.select_for_update().get(pk=request.subject_id)


def _explanation(request: ApprovalRequest) -> AiExplanation:
    return AiExplanation.objects.select_for_update().get(pk=request.subject_id)


def report_approved(request: ApprovalRequest) -> None:
    """Schedule the approved text (edits included) to every Discord tier, mark the report published, and draft the
    social posts after commit."""
    from apps.commentary.tasks import report_social_drafts
    from apps.distribution.services import report_post_schedule

    report = _report(request)
    _decide(report, request, status=AiReport.Status.PUBLISHED)
    report_post_schedule(report_ref=reports.report_ref(report), title=reports.report_title(report), text=request.text)
    report_id = report.pk
    transaction.on_commit(lambda: reports.pending_remove(report_id))
    transaction.on_commit(lambda: report_social_drafts.delay(report_id))
    logger.info("commentary: report %s approved by %s and scheduled", report, request.decided_by)


def _report_closed(request: ApprovalRequest, status: str) -> None:
    report = _report(request)
    _decide(report, request, status=status)
    report_id = report.pk
    transaction.on_commit(lambda: reports.pending_remove(report_id))
    logger.info("commentary: report %s %s (%s)", report, status, request.decided_by)


def report_rejected(request: ApprovalRequest) -> None:
    _report_closed(request, AiReport.Status.REJECTED)


def report_expired(request: ApprovalRequest) -> None:
    _report_closed(request, AiReport.Status.EXPIRED)


def explanation_approved(request: ApprovalRequest) -> None:
    """Schedule the approved text to every Discord tier (distribution holds each tier's copy until that tier got
    the trade's entry) and mark the explanation published."""
    from apps.distribution.services import explanation_post_schedule

    row = _explanation(request)
    _decide(row, request, status=AiExplanation.Status.PUBLISHED)
    explanation_post_schedule(
        explanation_id=row.pk,
        trade_id=row.trade_id,
        title=explanations.explanation_title(row.evidence),
        text=request.text,
    )
    explanations.mirror_on_commit(row.pk)
    logger.info("commentary: explanation of trade %s approved by %s", row.trade_id, request.decided_by)


def _explanation_closed(request: ApprovalRequest, status: str) -> None:
    row = _explanation(request)
    _decide(row, request, status=status)
    explanations.mirror_on_commit(row.pk)
    logger.info("commentary: explanation of trade %s %s (%s)", row.trade_id, status, request.decided_by)


def explanation_rejected(request: ApprovalRequest) -> None:
    _explanation_closed(request, AiExplanation.Status.REJECTED)


def explanation_expired(request: ApprovalRequest) -> None:
    _explanation_closed(request, AiExplanation.Status.EXPIRED)


def handlers_register() -> None:
    """Tell the approvals app what a decision on a report or an explanation does (from ``CommentaryConfig.ready``)."""
    from apps.approvals.services import handler_register

    handler_register("ai_report", on_approved=report_approved, on_rejected=report_rejected, on_expired=report_expired)
    handler_register(
        "ai_explanation",
        on_approved=explanation_approved,
        on_rejected=explanation_rejected,
        on_expired=explanation_expired,
    )
