"""Corrections, retractions, stop changes, daily summaries and explanations reach the right tiers at the right time;
the operator's controls in the admin are refused without their permission."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from apps.distribution import services
from apps.distribution.models import DistributionPost, DistributionTier
from apps.ops.models import AuditLog
from tests.distribution.conftest import SESSION_START, schedule_trade, trade_like
from tests.distribution.test_release import _simulated_session, at

pytestmark = pytest.mark.django_db
Status = DistributionPost.Status


__all__ = ["_simulated_session"]  # the release tests' simulated session clock (autouse)


def test_a_retraction_reaches_every_tier_that_got_the_post_and_the_others_never_get_it(discord, webhooks):
    schedule_trade("entry", trade_like(7))
    at(61)
    services.posts_release_due()  # premium and standard have it, free (300 s) does not yet

    posts = services.post_retract(kind="entry", ref="trade:7", reason="Wrong strike in the alert.", actor="ops")
    services.posts_release_due()
    at(400)
    services.posts_release_due()

    assert sorted(p.tier for p in posts) == ["premium", "standard"]
    for tier in ("premium", "standard"):
        bodies = [r.body for r in discord.delivered(webhooks[tier])]
        assert [b["embeds"][0]["title"].split(":")[0] for b in bodies] == [
            "ENTRY SPY BULLISH SPY261120C00600000",
            "RETRACTED",
        ]
        original_id = DistributionPost.objects.get(kind="entry", tier=tier).message_id
        assert bodies[1]["embeds"][0]["fields"][0]["value"] == original_id
        assert bodies[1]["embeds"][0]["description"] == "Wrong strike in the alert."
    assert discord.delivered(webhooks["free"]) == []
    assert DistributionPost.objects.get(kind="entry", tier="free").status == Status.SKIPPED
    assert AuditLog.objects.filter(action="distribution.retraction", target="entry:trade:7").count() == 1


def test_a_correction_is_sent_to_tiers_that_got_the_post_and_replaces_it_for_the_others(discord, webhooks):
    schedule_trade(
        "exit", trade_like(8, exit_price=Decimal("1.60"), realized_pnl=Decimal("70.00"), exit_reason="target")
    )
    services.posts_release_due()  # premium only

    services.post_correct(kind="exit", ref="trade:8", text="Exit was at $1.65, PnL $80.", actor="ops")
    services.posts_release_due()
    at(300)
    services.posts_release_due()

    premium = [r.body["embeds"][0]["title"] for r in discord.delivered(webhooks["premium"])]
    assert premium[0].startswith("EXIT") and premium[1].startswith("CORRECTION")
    for tier in ("standard", "free"):
        (only,) = discord.delivered(webhooks[tier])
        assert only.body["embeds"][0]["title"].endswith("(corrected)")
        assert only.body["embeds"][0]["description"] == "Exit was at $1.65, PnL $80."


def test_a_second_retraction_of_the_same_post_is_its_own_message(discord, webhooks):
    schedule_trade("entry", trade_like(9))
    services.posts_release_due()
    services.post_correct(kind="entry", ref="trade:9", text="First fix.", actor="ops")
    services.post_correct(kind="entry", ref="trade:9", text="Second fix.", actor="ops")
    services.posts_release_due()

    titles = [r.body["embeds"][0]["description"] for r in discord.delivered(webhooks["premium"])][1:]
    assert titles == ["First fix.", "Second fix."]


def test_amending_a_post_that_does_not_exist_is_an_error(webhooks):
    with pytest.raises(services.PostNotFound):
        services.post_retract(kind="entry", ref="trade:404", reason="x", actor="ops")
    with pytest.raises(ValueError, match="needs a text"):
        schedule_trade("entry", trade_like(10))
        services.post_correct(kind="entry", ref="trade:10", text="  ", actor="ops")


def test_an_explanation_never_reaches_a_tier_before_that_tier_got_the_entry(discord, webhooks):
    schedule_trade("entry", trade_like(11))
    at(5)
    posts = services.explanation_post_schedule(explanation_id=3, trade_id=11, title="Why SPY", text="Because [S1].")

    due = {p.tier: p.due_at for p in posts}
    entry_due = dict(DistributionPost.objects.filter(kind="entry").values_list("tier", "due_at"))
    # Each tier's own delay from the approval, and never before that tier's entry post.
    assert due["premium"] == SESSION_START + timedelta(seconds=5)
    assert due["standard"] == SESSION_START + timedelta(seconds=65) > entry_due["standard"]
    assert due["free"] == SESSION_START + timedelta(seconds=305) > entry_due["free"]


def test_a_disabled_tier_gets_nothing_new(discord, webhooks):
    DistributionTier.objects.filter(name="standard").update(enabled=False)
    posts = schedule_trade_in_force(12)
    assert sorted(p.tier for p in posts) == ["free", "premium"]


def schedule_trade_in_force(trade_id: int) -> list[DistributionPost]:
    from apps.distribution import tiers
    from apps.distribution.discord import messages

    trade = trade_like(trade_id)
    payloads = {
        t.name: messages.trade_message(kind="entry", trade=trade, signal=trade.signal, tier=t.name)
        for t in tiers.tiers_in_force()
    }
    return services.post_schedule_payloads(kind="entry", ref=f"trade:{trade_id}", trade_id=trade_id, payloads=payloads)


def test_failed_posts_are_re_sent_by_an_operator(discord, webhooks):
    discord.gone(webhooks["premium"])
    (post, *_) = schedule_trade("entry", trade_like(13))
    services.posts_release_due()
    post.refresh_from_db()
    assert post.status == Status.FAILED

    discord._gone.clear()
    assert services.posts_resend_failed(post_ids=[post.pk], actor="ops") == 1
    services.posts_release_due()

    post.refresh_from_db()
    assert post.status == Status.SENT
    assert list(post.logs.order_by("pk").values_list("outcome", flat=True))[-2:] == ["requeued", "sent"]


def _staff(username: str, *perms: str) -> User:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def test_the_admin_refuses_retraction_without_the_permission_and_applies_it_with(client, discord, webhooks):
    (post, *_) = schedule_trade("entry", trade_like(14))
    services.posts_release_due()
    url = reverse("admin:distribution_distributionpost_changelist")
    form = {"action": "retract_posts", "_selected_action": [post.pk], "apply": "1", "text": "Not a real signal."}

    client.force_login(_staff("viewer", "distribution.view_distributionpost"))
    response = client.post(url, form)
    assert DistributionPost.objects.filter(kind="retraction").count() == 0
    assert response.status_code in (200, 302)

    client.force_login(_staff("editor", "distribution.view_distributionpost", "distribution.retract_distributionpost"))
    client.post(url, form)
    (retraction,) = DistributionPost.objects.filter(kind="retraction")
    assert (retraction.tier, retraction.amends_id) == ("premium", post.pk)


def test_the_tier_admin_never_shows_a_webhook_and_keeps_it_when_left_blank(client, webhooks):
    admin = User.objects.create_superuser("root", password="pw")
    client.force_login(admin)
    tier = DistributionTier.objects.get(name="standard")
    secret = tier.webhook_url

    page = client.get(reverse("admin:distribution_distributiontier_change", args=[tier.pk])).content.decode()
    assert secret not in page
    client.post(
        reverse("admin:distribution_distributiontier_change", args=[tier.pk]),
        {
            "name": "standard",
            "delay_seconds": "90",
            "channel": "#std",
            "enabled": "on",
            "position": "1",
            "webhook_url": "",
        },
    )

    tier.refresh_from_db()
    assert (tier.delay_seconds, tier.webhook_url) == (90, secret)
    assert AuditLog.objects.filter(action="distribution.tier_change", target="tier:standard").exists()
