"""The social queue fed by its real callers: distribution's announce after a fill and commentary's report approval."""

from __future__ import annotations

import pytest

from apps.approvals import services as approvals
from apps.distribution import tasks as distribution_tasks
from apps.social.models import SocialPost
from tests.social.conftest import NOW, approved_report, closed_trade

pytestmark = pytest.mark.django_db


@pytest.fixture
def discord_local_sink(settings):
    settings.DISCORD_WEBHOOK_URLS = {}


def test_the_exit_announcement_drafts_the_social_posts_and_the_entry_announcement_does_not(
    discord_local_sink, django_capture_on_commit_callbacks
):
    trade = closed_trade()

    with django_capture_on_commit_callbacks(execute=True):
        distribution_tasks.announce("entry", trade.pk)
    assert not SocialPost.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        distribution_tasks.announce("exit", trade.pk)
        distribution_tasks.announce("exit", trade.pk)  # a redelivery

    assert sorted(SocialPost.objects.values_list("platform", "source_ref", "status")) == [
        ("reddit", f"trade:{trade.pk}", "pending_approval"),
        ("x", f"trade:{trade.pk}", "pending_approval"),
    ]


def test_approving_a_report_drafts_its_social_posts_from_the_approved_text(
    approver, discord_local_sink, django_capture_on_commit_callbacks
):
    report = approved_report("Drafted wording of the day.", status="pending_approval")
    request = approvals.request_open(
        subject_type="ai_report", subject_id=report.pk, title="report", text=report.content
    )

    with django_capture_on_commit_callbacks(execute=True):
        approvals.request_decide(
            request_id=request.pk,
            decision="approve",
            user=approver,
            channel="telegram",
            actor="telegram:1 (@approver)",
            text="Edited wording: calls led, gamma stayed positive.",
        )

    posts = list(SocialPost.objects.order_by("platform"))
    assert [(p.platform, p.source_ref, p.status) for p in posts] == [
        ("reddit", f"report:{report.pk}", "pending_approval"),
        ("x", f"report:{report.pk}", "pending_approval"),
    ]
    assert all("Edited wording: calls led, gamma stayed positive." in p.text for p in posts)
    assert all("Drafted wording" not in p.text for p in posts)
    assert posts[0].created_at == NOW
