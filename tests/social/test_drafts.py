"""Drafting: closed trades and approved reports become posts waiting for approval, within each platform's limits."""

from __future__ import annotations

import pytest

from apps.approvals.models import ApprovalRequest
from apps.social import services
from apps.social.models import SocialPost
from tests.social.conftest import HOLD, NOW, approved_report, closed_trade

pytestmark = pytest.mark.django_db


def test_a_closed_trade_is_drafted_for_x_and_reddit_each_waiting_for_its_approval():
    trade = closed_trade()

    posts = services.drafts_for_trade(kind="exit", trade_id=trade.pk)

    assert [p.platform for p in posts] == ["x", "reddit"]
    for post in posts:
        assert post.status == SocialPost.Status.PENDING_APPROVAL
        assert post.source == "trade" and post.source_ref == f"trade:{trade.pk}"
        assert post.next_attempt_at == NOW + HOLD
        assert post.approval is not None
        request = post.approval
        assert (request.subject_type, request.subject_id, request.status) == ("social_post", post.pk, "pending")
        assert request.text == post.text
        assert post.text.endswith("not investment advice.")
    x, reddit = posts
    assert len(x.text) <= 280
    assert x.approval is not None and x.approval.max_length == 280
    assert "SPY261120C00600000" in x.text and "+$128.70" in x.text and "+52.0% on premium" in x.text
    assert reddit.title == "Closed SPY SPY261120C00600000 (profit target reached): +$128.70"
    assert "Why it was opened: Three call sweeps above the ask" in reddit.text
    assert "Entry: $1.25 at 2026-11-20 13:30 ET" in reddit.text


def test_drafting_the_same_trade_again_returns_the_same_posts_and_opens_no_second_request():
    trade = closed_trade()
    first = services.drafts_for_trade(kind="exit", trade_id=trade.pk)

    again = services.drafts_for_trade(kind="exit", trade_id=trade.pk)

    assert [p.pk for p in again] == [p.pk for p in first]
    assert SocialPost.objects.count() == 2
    assert ApprovalRequest.objects.filter(subject_type="social_post").count() == 2


def test_an_entry_is_never_drafted_so_the_public_cannot_beat_the_paying_tiers():
    trade = closed_trade(status="open", exit_price=None, exit_at=None, exit_reason="", realized_pnl=None)

    assert services.drafts_for_trade(kind="entry", trade_id=trade.pk) == []
    assert not SocialPost.objects.exists()
    assert not ApprovalRequest.objects.exists()


def test_an_exit_draft_of_a_trade_that_is_still_open_is_refused():
    trade = closed_trade(status="open", exit_price=None, exit_at=None, exit_reason="", realized_pnl=None)

    with pytest.raises(services.SourceNotPublishable):
        services.drafts_for_trade(kind="exit", trade_id=trade.pk)
    with pytest.raises(services.SourceNotFound):
        services.drafts_for_trade(kind="exit", trade_id=trade.pk + 1000)
    assert not SocialPost.objects.exists()


def test_only_the_configured_platforms_get_a_draft(settings):
    settings.SOCIAL_PLATFORMS = ("reddit",)

    posts = services.drafts_for_trade(kind="exit", trade_id=closed_trade().pk)

    assert [p.platform for p in posts] == ["reddit"]


def test_an_approved_report_is_drafted_with_its_text_for_reddit_and_a_summary_for_x():
    content = (
        "TEMPLATE REPORT: written by the built-in template, no AI was used (ANTHROPIC_API_KEY is not set).\n"
        "Post-market report for 2026-11-20\n\nTrades\n  opened 3, closed 3\n"
        + "\n".join(f"  flow line {n} with some premium detail" for n in range(40))
        + "\n\nAutomated summary, not investment advice."
    )
    report = approved_report(content)

    x, reddit = services.drafts_for_report(report_id=report.pk)

    assert (x.source, x.source_ref) == ("report", f"report:{report.pk}")
    assert 270 < len(x.text) <= 280
    assert x.text.endswith("…\n\nAutomated market summary, not investment advice.")
    assert x.text.startswith("Post-market market report, Friday 20 November 2026: Post-market report for 2026-11-20")
    assert "TEMPLATE REPORT" not in x.text
    assert reddit.title == "Post-market market report, Friday 20 November 2026"
    assert reddit.text.startswith("TEMPLATE REPORT")
    assert "flow line 39 with some premium detail" in reddit.text
    assert reddit.text.count("not investment advice") == 1


def test_a_report_longer_than_reddit_takes_is_cut_to_40000_characters():
    report = approved_report("A sentence about the gamma exposure.\n" * 2000)

    _, reddit = services.drafts_for_report(report_id=report.pk)

    assert 39_900 < len(reddit.text) <= 40_000
    assert reddit.text.endswith("not investment advice.")


def test_a_report_not_yet_approved_is_not_drafted():
    report = approved_report("Pending text.", status="pending_approval")

    with pytest.raises(services.SourceNotPublishable):
        services.drafts_for_report(report_id=report.pk)
    assert not SocialPost.objects.exists()
