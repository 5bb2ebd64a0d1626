"""The Telegram bot against the Telegram stand-in, through the real python-telegram-bot client: presenting,
deciding by button (only by an authorized person in the approver chat), expiry, the edit flow, operator commands
behind their permissions, and Telegram's flood control."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from apps.approvals.models import ApprovalAction, ApprovalRequest
from apps.approvals.telegram.presses import EDIT_KEY
from apps.core import clock
from apps.core.bench import database_url
from apps.distribution.models import DistributionLog
from apps.ingestion.uw.stream import stream_state
from apps.risk.selectors import kill_switch_is_on
from tests.approvals.conftest import CHAT, OTHER_CHAT, person, social_request, wait

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("requires_real_services")]

ROOT = Path(__file__).resolve().parents[2]
APPROVER, NOBODY, VIEWER = 501, 502, 503
DECIDE = "approvals.decide_approvalrequest"


def shown(telegram, request_id: int, revision: int = 1):
    """The bot's message showing ``revision`` of the request with its buttons (waits for it)."""

    def find():
        found = [
            m
            for m in telegram.messages_in(CHAT)
            if f"Approval #{request_id} " in m.text and f"Revision {revision}\n" in m.text and m.buttons
        ]
        return found[-1] if found else None

    assert wait(find), f"approval #{request_id} never shown: {[m.text for m in telegram.messages_in(CHAT)]}"
    message = find()
    # Telegram has it a moment before the bot has recorded it.
    assert wait(lambda: ApprovalRequest.objects.get(pk=request_id).telegram_message_id == message.message_id)
    return message


def button(message, label: str) -> str:
    return next(b["callback_data"] for b in message.buttons if b["text"] == label)


def answered(telegram, query_id: str) -> dict:
    assert wait(lambda: telegram.answers_to(query_id)), "the press was never answered"
    return telegram.answers_to(query_id)[-1]


def refusals(action: str) -> list[ApprovalAction]:
    return list(ApprovalAction.objects.filter(action=action, allowed=False).order_by("pk"))


def test_bot_presents_a_pending_request_with_its_text_expiry_and_three_buttons(bot, telegram, social_handler):
    request = social_request(text="QQQ puts: $4M swept at the ask.", max_length=280)

    message = shown(telegram, request.pk)

    assert "QQQ puts: $4M swept at the ask." in message.text
    assert "X post 1" in message.text and "Expires" in message.text and "(limit 280)" in message.text
    assert [b["text"] for b in message.buttons] == ["Approve", "Reject", "Edit"]
    assert all(len(b["callback_data"].encode()) <= 64 for b in message.buttons)
    request.refresh_from_db()
    assert (request.telegram_message_id, request.presented_revision) == (message.message_id, 1)
    assert request.telegram_chat_id == str(CHAT)
    mirrored = DistributionLog.objects.filter(channel="telegram", ref=f"approval:{request.pk}")
    assert wait(lambda: list(mirrored.values_list("outcome", flat=True)) == ["sent"])
    # The command menu was published at start.
    assert {c["command"] for c in telegram.commands} >= {"status", "kill", "pause_feed"}
    time.sleep(0.5)  # several outbox passes: still one message
    assert len(telegram.messages_in(CHAT)) == 1


def test_authorized_approval_publishes_and_closes_the_message(bot, telegram, social_handler):
    person("alice", DECIDE, telegram_id=APPROVER)
    request = social_request()
    message = shown(telegram, request.pk)

    query = telegram.press(user_id=APPROVER, username="alice", message=message, data=button(message, "Approve"))

    assert answered(telegram, query).get("show_alert") in (None, False)
    assert wait(lambda: ApprovalRequest.objects.get(pk=request.pk).status == "approved")
    assert social_handler.approved == [request.pk]
    assert wait(lambda: not message.buttons and "APPROVED" in message.text), message.text
    assert wait(lambda: ApprovalRequest.objects.get(pk=request.pk).closed_notice_at is not None)
    request.refresh_from_db()
    assert request.decided_by.startswith(f"telegram:{APPROVER} (@alice)")
    assert ApprovalAction.objects.filter(request=request, action="approve", allowed=True).count() == 1


def test_a_press_by_an_unlinked_user_or_one_without_the_permission_is_refused_and_recorded(
    bot, telegram, social_handler
):
    person("viewer", "execution.view_position", telegram_id=VIEWER)
    request = social_request()
    message = shown(telegram, request.pk)

    unlinked = telegram.press(user_id=NOBODY, username="mallory", message=message, data=button(message, "Approve"))
    no_permission = telegram.press(user_id=VIEWER, username="viewer", message=message, data=button(message, "Approve"))
    edit_attempt = telegram.press(user_id=VIEWER, username="viewer", message=message, data=button(message, "Edit"))

    for query in (unlinked, no_permission, edit_attempt):
        assert answered(telegram, query)["show_alert"] is True
    assert "not an approver" in answered(telegram, unlinked)["text"]
    assert DECIDE in answered(telegram, no_permission)["text"]
    assert [(a.telegram_user_id, a.request_id) for a in refusals("approve")] == [
        (NOBODY, request.pk),
        (VIEWER, request.pk),
    ]
    assert [a.telegram_user_id for a in refusals("edit")] == [VIEWER]
    request.refresh_from_db()
    assert request.status == "pending" and social_handler.approved == []
    assert message.buttons, "the request is still open for an approver"


def test_a_press_by_an_approver_outside_the_approver_chat_is_refused(bot, telegram, social_handler):
    person("alice", DECIDE, telegram_id=APPROVER)
    request = social_request()
    message = shown(telegram, request.pk)
    elsewhere = type(message)(OTHER_CHAT, message.message_id, message.text, message.reply_markup)

    query = telegram.press(user_id=APPROVER, username="alice", message=elsewhere, data=button(message, "Approve"))

    assert answered(telegram, query)["show_alert"] is True
    assert "not the approver chat" in refusals("approve")[0].reason
    assert ApprovalRequest.objects.get(pk=request.pk).status == "pending"


def test_a_request_nobody_answers_expires_and_its_message_says_so(bot, telegram, social_handler):
    person("alice", DECIDE, telegram_id=APPROVER)
    request = social_request()
    message = shown(telegram, request.pk)
    ApprovalRequest.objects.filter(pk=request.pk).update(expires_at=clock.now() - timedelta(seconds=1))

    assert wait(lambda: ApprovalRequest.objects.get(pk=request.pk).status == "expired")
    assert wait(lambda: "EXPIRED unanswered" in message.text and not message.buttons), message.text
    assert social_handler.expired == [request.pk] and social_handler.approved == []
    # A late press on the (now closed) request is refused, not published.
    late_approve = f"ap:{request.pk}:1:a"  # what the Approve button carried before it was removed
    query = telegram.press(user_id=APPROVER, username="alice", message=message, data=late_approve)
    assert "expired" in answered(telegram, query)["text"]
    assert social_handler.approved == []


def test_edit_asks_the_same_person_for_the_text_reshows_it_and_refuses_the_old_buttons(
    bot, telegram, social_handler, redis_store
):
    person("alice", DECIDE, telegram_id=APPROVER)
    request = social_request(max_length=40)
    first = shown(telegram, request.pk)
    old_approve = button(first, "Approve")

    query = telegram.press(user_id=APPROVER, username="alice", message=first, data=button(first, "Edit"))
    assert answered(telegram, query).get("show_alert") in (None, False)
    assert wait(lambda: any("Send the new text" in m.text for m in telegram.messages_in(CHAT)))
    prompt = next(m for m in telegram.calls_to("sendMessage") if "Send the new text" in m.params["text"])
    assert prompt.params["reply_markup"]["force_reply"] is True
    assert redis_store.ttl(EDIT_KEY.format(chat=CHAT, user=APPROVER)) > 0

    # Someone else talking in the chat changes nothing; a too long text is refused and the edit still waits.
    telegram.send_text(user_id=NOBODY, chat_id=CHAT, text="nice one", username="mallory")
    telegram.send_text(user_id=APPROVER, chat_id=CHAT, text="x" * 41, username="alice")
    assert wait(lambda: any("at most 40" in c.params.get("text", "") for c in telegram.calls_to("sendMessage")))
    telegram.send_text(user_id=APPROVER, chat_id=CHAT, text="SPY calls into the close.", username="alice")

    assert wait(lambda: ApprovalRequest.objects.get(pk=request.pk).revision == 2)
    second = shown(telegram, request.pk, revision=2)
    assert second.message_id != first.message_id and "SPY calls into the close." in second.text
    assert "Revision 2" in second.text
    assert wait(lambda: not first.buttons and "revision 2 is in a newer message" in first.text)
    assert not redis_store.exists(EDIT_KEY.format(chat=CHAT, user=APPROVER))

    stale = telegram.press(user_id=APPROVER, username="alice", message=first, data=old_approve)
    assert "edited since" in answered(telegram, stale)["text"]
    assert ApprovalRequest.objects.get(pk=request.pk).status == "pending"

    fresh = telegram.press(user_id=APPROVER, username="alice", message=second, data=button(second, "Approve"))
    answered(telegram, fresh)
    assert wait(lambda: social_handler.approved == [request.pk])
    assert social_handler.texts[request.pk] == "SPY calls into the close."
    actions = list(ApprovalAction.objects.filter(request=request).values_list("action", "allowed"))
    assert actions == [("edit_prompt", True), ("edit", False), ("edit", True), ("approve", False), ("approve", True)]


def command(telegram, user_id: int, text: str, username: str, chat_id: int = CHAT) -> str:
    before = len(telegram.calls_to("sendMessage"))
    telegram.send_text(user_id=user_id, chat_id=chat_id, text=text, username=username)
    assert wait(lambda: len(telegram.calls_to("sendMessage")) > before), f"no reply to {text}"
    return telegram.calls_to("sendMessage")[before].params["text"]


def test_operator_commands_are_refused_without_their_permission_and_recorded(bot, telegram):
    person("viewer", "execution.view_position", telegram_id=VIEWER)

    assert "risk.engage_kill_switch" in command(telegram, VIEWER, "/kill market is weird", "viewer")
    assert "risk.flatten_positions" in command(telegram, VIEWER, "/kill flatten", "viewer")
    assert "ingestion.pause_feed" in command(telegram, VIEWER, "/pause_feed", "viewer")
    assert "not linked" in command(telegram, NOBODY, "/status", "mallory")
    assert "Kill switch: off" in command(telegram, VIEWER, "/status", "viewer")

    assert not kill_switch_is_on() and not stream_state()["paused"]
    refused = list(ApprovalAction.objects.filter(allowed=False).values_list("action", "telegram_user_id"))
    assert refused == [
        ("command:/kill", VIEWER),
        ("command:/kill", VIEWER),
        ("command:/pause_feed", VIEWER),
        ("command:/status", NOBODY),
    ]
    assert list(ApprovalAction.objects.filter(allowed=True).values_list("action", flat=True)) == ["command:/status"]


def test_operator_commands_with_their_permission_engage_the_kill_switch_and_pause_the_feed(bot, telegram):
    person(
        "olivia",
        "risk.engage_kill_switch",
        "risk.release_kill_switch",
        "ingestion.pause_feed",
        "execution.view_position",
        "execution.view_trade",
        telegram_id=APPROVER,
    )

    assert "Kill switch ON" in command(telegram, APPROVER, "/kill spreads blew out", "olivia")
    assert kill_switch_is_on()
    assert "paused" in command(telegram, APPROVER, "/pause_feed maintenance", "olivia", chat_id=APPROVER)  # private
    assert stream_state()["paused"]
    assert "Kill switch: ON" in command(telegram, APPROVER, "/status", "olivia")
    assert "No open positions" in command(telegram, APPROVER, "/positions", "olivia")
    assert "Realized today" in command(telegram, APPROVER, "/pnl", "olivia")
    assert "released" in command(telegram, APPROVER, "/resume all clear", "olivia")
    assert "resumed" in command(telegram, APPROVER, "/resume_feed", "olivia")
    assert not kill_switch_is_on() and not stream_state()["paused"]
    # A group that is not the approver chat is no place for commands, whoever sends them.
    assert "approver chat" in command(telegram, APPROVER, "/kill", "olivia", chat_id=OTHER_CHAT)
    assert not kill_switch_is_on()

    from apps.risk.models import KillSwitchEvent

    engaged = KillSwitchEvent.objects.get(engaged=True)
    assert engaged.by.startswith(f"telegram:{APPROVER} (@olivia)") and engaged.reason == "spreads blew out"
    allowed = list(ApprovalAction.objects.filter(allowed=True).values_list("action", flat=True))
    assert allowed == [
        "command:/kill",
        "command:/pause_feed",
        "command:/status",
        "command:/positions",
        "command:/pnl",
        "command:/resume",
        "command:/resume_feed",
    ]
    assert list(ApprovalAction.objects.filter(allowed=False).values_list("action", flat=True)) == ["command:/kill"]


def test_flood_control_and_server_errors_on_send_message_delay_the_request_but_never_lose_it(
    bot, telegram, social_handler
):
    telegram.script_error("sendMessage", status=500)
    telegram.script_flood("sendMessage", retry_after=1)
    request = social_request()

    message = shown(telegram, request.pk)

    calls = telegram.calls_to("sendMessage")
    assert [c.status for c in calls] == [500, 429, 200]
    assert calls[2].at - calls[1].at >= 0.95, "retry_after was not honoured"
    assert len(telegram.messages_in(CHAT)) == 1
    request.refresh_from_db()
    assert request.telegram_message_id == message.message_id
    outcomes = DistributionLog.objects.filter(channel="telegram").order_by("pk").values_list("outcome", flat=True)
    assert wait(lambda: list(outcomes) == ["failed", "sent"]), list(outcomes)


def test_the_command_refuses_to_start_without_a_token(settings):
    settings.TELEGRAM_BOT_TOKEN = ""
    with pytest.raises(CommandError, match="TELEGRAM_BOT_TOKEN"):
        call_command("telegram_bot")


def test_manage_py_telegram_bot_presents_requests_and_stops_cleanly_on_sigterm(telegram, social_handler, tmp_path):
    request = social_request()
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        TELEGRAM_BOT_TOKEN=telegram.token,
        TELEGRAM_BASE_URL=telegram.api_root,
        TELEGRAM_APPROVER_CHAT_ID=str(CHAT),
        TELEGRAM_POLL_TIMEOUT_SECONDS="1",
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / "telegram_bot.log"
    process = subprocess.Popen(
        [sys.executable, "manage.py", "telegram_bot", "--outbox-interval", "0.2", "--min-send-interval", "0"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        assert wait(lambda: telegram.messages_in(CHAT), timeout=30), log.read_text()[-3000:]
        assert wait(lambda: ApprovalRequest.objects.get(pk=request.pk).presented_revision == 1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, log.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
    assert "telegram_bot: stopped" in log.read_text()
    assert len(telegram.messages_in(CHAT)) == 1


def test_the_command_stops_with_a_clear_error_when_telegram_refuses_the_token(settings, telegram):
    settings.TELEGRAM_BOT_TOKEN = "999:WRONG"
    settings.TELEGRAM_BASE_URL = telegram.api_root
    settings.TELEGRAM_APPROVER_CHAT_ID = str(CHAT)
    with pytest.raises(CommandError, match="Telegram refused TELEGRAM_BOT_TOKEN"):
        call_command("telegram_bot")
    assert [c.status for c in telegram.calls_to("getMe")] == [401]
