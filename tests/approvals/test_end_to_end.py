"""From a draft to the public, with every real piece: a social post drafted from an approved report waits for a
person; the Telegram bot (python-telegram-bot against the Telegram stand-in) shows it; a press by someone without
the permission changes nothing; the approver's press publishes it once to the X stand-in, mirrored in
distribution_logs."""

from __future__ import annotations

from datetime import date

import pytest

from apps.approvals.models import ApprovalAction, ApprovalRequest
from apps.commentary.models import AiReport
from apps.core import clock
from apps.core.standins.social import XStandin
from apps.distribution.models import DistributionLog, DistributionTier
from apps.social.models import SocialPost
from apps.social.services import drafts_for_report
from tests.approvals.conftest import person, wait
from tests.approvals.test_telegram_bot import answered, button, shown

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("requires_real_services")]

APPROVER, STRANGER = 601, 602
X_TOKEN = "x-user-token-e2e"


@pytest.fixture
def x_api(settings):
    standin = XStandin(token=X_TOKEN).start()
    settings.X_API_BASE_URL = standin.base_url
    settings.X_ACCESS_TOKEN = X_TOKEN
    settings.SOCIAL_PLATFORMS = ("x",)
    yield standin
    standin.stop()


def test_a_social_post_reaches_x_only_after_the_approvers_press_in_telegram(bot, telegram, x_api):
    # One tier without delay: the public may hear as soon as a person approves (the hold is the longest tier delay).
    DistributionTier.objects.all().delete()
    DistributionTier.objects.create(name="premium", delay_seconds=0)
    person("approver", "approvals.decide_approvalrequest", telegram_id=APPROVER)
    person("stranger", telegram_id=STRANGER)
    now = clock.now()
    report = AiReport.objects.create(
        kind="post_market",
        day=date(2026, 11, 20),
        model="template",
        is_template=True,
        content="SPY closed green; two 0DTE trades, one win.",
        status=AiReport.Status.APPROVED,
        created_at=now,
        updated_at=now,
    )
    (post,) = drafts_for_report(report_id=report.pk)
    request = ApprovalRequest.objects.get(subject_type="social_post", subject_id=post.pk)

    message = shown(telegram, request.pk)
    assert "SPY closed green" in message.text
    assert x_api.created() == []

    refused = telegram.press(user_id=STRANGER, message=message, data=button(message, "Approve"))
    assert answered(telegram, refused)["show_alert"] is True
    request.refresh_from_db()
    assert request.status == "pending" and x_api.created() == []

    approved = telegram.press(user_id=APPROVER, message=message, data=button(message, "Approve"))
    answered(telegram, approved)
    assert wait(lambda: SocialPost.objects.get(pk=post.pk).status == SocialPost.Status.PUBLISHED, timeout=20)

    (tweet,) = x_api.created()
    assert "SPY closed green" in tweet.body["text"]
    post.refresh_from_db()
    assert post.approved_by.startswith(f"telegram:{APPROVER}")
    assert DistributionLog.objects.filter(channel="x", ref=f"social:{post.pk}", outcome="sent").count() == 1
    verdicts = set(ApprovalAction.objects.filter(request=request).values_list("actor", "allowed"))
    assert any(actor.startswith(f"telegram:{STRANGER}") and not allowed for actor, allowed in verdicts)
    assert any(actor.startswith(f"telegram:{APPROVER}") and allowed for actor, allowed in verdicts)
