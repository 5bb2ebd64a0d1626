"""Reports and explanations reach Discord (and the social drafts) only after a person with the permission approves
them; rejections and expiries are recorded on the row."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from apps.approvals import services as approvals
from apps.approvals.models import ApprovalRequest
from apps.commentary import services
from apps.commentary.models import AiExplanation, AiReport
from apps.core import clock, store
from tests.commentary.evidence import ENTRY_AT, entered_trade

pytestmark = pytest.mark.django_db
DAY = date(2026, 11, 20)
AFTER_CLOSE = datetime(2026, 11, 20, 21, 30, tzinfo=UTC)


def _posts(kind: str):
    from apps.distribution.models import DistributionPost

    return list(DistributionPost.objects.filter(kind=kind).order_by("due_at"))


def _decide(row, *, decision: str, user, text: str | None = None, note: str = "") -> ApprovalRequest:
    subject_type = "ai_report" if isinstance(row, AiReport) else "ai_explanation"
    request = ApprovalRequest.objects.get(subject_type=subject_type, subject_id=row.pk)
    return approvals.request_decide(
        request_id=request.pk,
        decision=decision,
        user=user,
        channel="telegram",
        actor=f"telegram:42 ({user.get_username()})",
        text=text,
        note=note,
    )


@pytest.fixture
def report(no_api_key, django_capture_on_commit_callbacks) -> AiReport:
    clock.set_simulated(AFTER_CLOSE)
    with django_capture_on_commit_callbacks(execute=True):
        report = services.report_generate(kind="post_market", day=DAY)
    assert store.get_redis().lrange(services.PENDING_KEY, 0, -1) == [str(report.pk)]
    return report


@pytest.fixture
def explanation(no_api_key, django_capture_on_commit_callbacks) -> AiExplanation:
    clock.set_simulated(ENTRY_AT + timedelta(seconds=5))
    entered = entered_trade()
    with django_capture_on_commit_callbacks(execute=True):
        return services.explanation_generate(trade_id=entered.trade.pk)


def test_a_new_report_opens_its_approval_request_with_the_report_text(report):
    request = ApprovalRequest.objects.get(subject_type="ai_report", subject_id=report.pk)

    assert request.status == "pending"
    assert request.text == report.content and request.title == "Post-market report 2026-11-20"


def test_an_approved_report_is_scheduled_to_every_tier_drafted_for_social_and_published(
    report, approver, discord_tiers, django_capture_on_commit_callbacks
):
    from apps.social.models import SocialPost

    edited = report.content.replace("Automated summary", "Edited by the desk. Automated summary")
    with django_capture_on_commit_callbacks(execute=True):
        _decide(report, decision="approve", user=approver, text=edited)

    report.refresh_from_db()
    assert report.status == AiReport.Status.PUBLISHED
    assert report.published_text == edited and report.content != edited  # what the writer wrote is kept
    assert report.decided_by == "telegram:42 (approver)" and report.decided_at == AFTER_CLOSE
    posts = _posts("report")
    assert [p.tier for p in posts] == ["premium", "standard", "free"]
    assert {p.ref for p in posts} == {"report:post_market:2026-11-20"}
    assert all("Edited by the desk." in str(p.content) for p in posts)
    assert store.get_redis().llen(services.PENDING_KEY) == 0
    drafts = SocialPost.objects.filter(source_ref=f"report:{report.pk}")
    assert sorted(drafts.values_list("platform", flat=True)) == ["reddit", "x"]


def test_a_person_without_the_permission_cannot_publish_a_report(report, bystander, discord_tiers):
    with pytest.raises(approvals.NotAuthorized):
        _decide(report, decision="approve", user=bystander)

    report.refresh_from_db()
    assert report.status == AiReport.Status.PENDING_APPROVAL
    assert _posts("report") == []
    assert store.get_redis().lrange(services.PENDING_KEY, 0, -1) == [str(report.pk)]


def test_a_rejected_report_is_recorded_and_goes_nowhere(
    report, approver, discord_tiers, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _decide(report, decision="reject", user=approver, note="numbers look stale")

    report.refresh_from_db()
    assert report.status == AiReport.Status.REJECTED
    assert report.decision_note == "numbers look stale" and report.published_text == ""
    assert _posts("report") == []
    assert store.get_redis().llen(services.PENDING_KEY) == 0


def test_a_report_nobody_answered_expires(report, settings, discord_tiers, django_capture_on_commit_callbacks):
    clock.advance_to(AFTER_CLOSE + timedelta(seconds=settings.APPROVAL_TTL_SECONDS + 1))

    with django_capture_on_commit_callbacks(execute=True):
        assert approvals.requests_expire_due() == 1

    report.refresh_from_db()
    assert report.status == AiReport.Status.EXPIRED and report.decided_by == "system"
    assert _posts("report") == []
    assert store.get_redis().llen(services.PENDING_KEY) == 0


def test_an_approved_explanation_is_scheduled_after_each_tier_got_the_entry_and_published(
    explanation, approver, discord_tiers, django_capture_on_commit_callbacks
):
    from apps.distribution.services import post_schedule

    post_schedule(kind="entry", trade_id=explanation.trade_id)
    entry_due = {p.tier: p.due_at for p in _posts("entry")}

    with django_capture_on_commit_callbacks(execute=True):
        _decide(explanation, decision="approve", user=approver)

    explanation.refresh_from_db()
    assert explanation.status == AiExplanation.Status.PUBLISHED
    assert explanation.published_text == explanation.content
    posts = _posts("explanation")
    assert [p.tier for p in posts] == ["premium", "standard", "free"]
    assert {(p.ref, p.trade_id) for p in posts} == {(f"explanation:{explanation.pk}", explanation.trade_id)}
    assert all(p.release_at >= entry_due[p.tier] for p in posts)
    assert all("[S1]" in str(p.content) for p in posts)
    summary = store.get_redis().hget(services.EXPLANATIONS_KEY, str(explanation.trade_id))
    assert summary is not None and '"status": "published"' in summary


def test_a_rejected_explanation_is_recorded_and_goes_nowhere(
    explanation, approver, discord_tiers, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        _decide(explanation, decision="reject", user=approver, note="too long")

    explanation.refresh_from_db()
    assert explanation.status == AiExplanation.Status.REJECTED and explanation.decision_note == "too long"
    assert _posts("explanation") == []
    summary = store.get_redis().hget(services.EXPLANATIONS_KEY, str(explanation.trade_id))
    assert summary is not None and '"status": "rejected"' in summary


def test_an_explanation_nobody_answered_expires(explanation, settings, discord_tiers):
    clock.advance_to(clock.now() + timedelta(seconds=settings.APPROVAL_TTL_SECONDS + 1))

    assert approvals.requests_expire_due() == 1

    explanation.refresh_from_db()
    assert explanation.status == AiExplanation.Status.EXPIRED
    assert _posts("explanation") == []
