"""``manage.py telegram_link``: operators link and unlink the Telegram ids the bot accepts."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from apps.approvals import services
from apps.approvals.models import ApprovalAction, TelegramIdentity
from tests.approvals.conftest import person

pytestmark = pytest.mark.django_db


def test_linking_then_deactivating_a_telegram_id_decides_whom_the_bot_accepts():
    alice = person("alice", "approvals.decide_approvalrequest")

    call_command("telegram_link", "--telegram-id", "77", "--user", "alice", "--label", "@alice")
    assert services.telegram_user(77) == alice
    assert TelegramIdentity.objects.get(telegram_user_id=77).label == "@alice"

    call_command("telegram_link", "--telegram-id", "77", "--deactivate")
    assert services.telegram_user(77) is None
    assert list(ApprovalAction.objects.order_by("pk").values_list("action", flat=True)) == [
        "identity_link",
        "identity_deactivate",
    ]


def test_linking_to_an_unknown_user_or_unlinking_an_unknown_id_fails_loudly():
    with pytest.raises(CommandError, match="no user named"):
        call_command("telegram_link", "--telegram-id", "77", "--user", "ghost")
    with pytest.raises(CommandError, match="not linked"):
        call_command("telegram_link", "--telegram-id", "78", "--deactivate")
    assert not TelegramIdentity.objects.exists()
