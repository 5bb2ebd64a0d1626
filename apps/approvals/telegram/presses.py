"""Button presses and edit replies, turned into decisions through ``apps.approvals.services`` (synchronous: the bot
calls these through ``sync_to_async``).

A press counts only when it comes from the approver chat AND the pressing user (``callback_query.from.id``) is an
active ``TelegramIdentity`` whose Django user has ``approvals.decide_approvalrequest``: anyone in a group can press a
button.  Every press, allowed or refused, is an ``ApprovalAction``.

Edit is two steps: the Edit button stores who is editing what in Redis (``approvals:telegram:edit:<chat>:<user>``,
``EDIT_TTL_SECONDS``), and that person's next text message in that chat becomes the new text.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

from apps.approvals import services
from apps.approvals.models import ApprovalRequest
from apps.approvals.telegram.messages import Press, press_parse
from apps.core import clock, store

logger = logging.getLogger(__name__)

EDIT_KEY = "approvals:telegram:edit:{chat}:{user}"
EDIT_TTL_SECONDS = 600
CHANNEL = services.Channel.TELEGRAM
_ANSWER_LIMIT = 200  # answerCallbackQuery text


@dataclass(frozen=True)
class PressAnswer:
    """What the bot answers a press with: the answerCallbackQuery text (an alert when refused), whether the outbox
    has a message to close now, and a prompt asking the presser for new text (Edit)."""

    text: str
    alert: bool = False
    decided: bool = False
    prompt: str = ""

    @classmethod
    def refused(cls, text: str) -> PressAnswer:
        return cls(text=text[:_ANSWER_LIMIT], alert=True)


def actor_name(*, telegram_user_id: int, username: str) -> str:
    """How a Telegram person appears in ``decided_by`` and the action log."""
    return f"telegram:{telegram_user_id} (@{username})" if username else f"telegram:{telegram_user_id}"


def is_approver_chat(chat_id: int | str) -> bool:
    return bool(settings.TELEGRAM_APPROVER_CHAT_ID) and str(chat_id) == str(settings.TELEGRAM_APPROVER_CHAT_ID)


def _record_refusal(
    *, request_id: int | None, actor: str, telegram_user_id: int, action: str, reason: str, detail: dict[str, Any]
) -> None:
    with transaction.atomic():
        services.action_record(
            request=ApprovalRequest.objects.filter(pk=request_id).first() if request_id is not None else None,
            channel=CHANNEL,
            actor=actor,
            telegram_user_id=telegram_user_id,
            action=action,
            allowed=False,
            reason=reason,
            detail=detail,
        )
    logger.warning("telegram: %s by %s refused: %s", action, actor, reason)


def press_handle(*, chat_id: int, telegram_user_id: int, username: str, data: str) -> PressAnswer:
    """Decide (or start editing) what the pressed button says, for the person who pressed it."""
    actor = actor_name(telegram_user_id=telegram_user_id, username=username)
    press = press_parse(data)
    if press is None:
        _record_refusal(
            request_id=None,
            actor=actor,
            telegram_user_id=telegram_user_id,
            action="press",
            reason="button data this bot does not know",
            detail={"data": data[:64], "chat_id": chat_id},
        )
        return PressAnswer.refused("This button is not one of mine.")
    detail = {"chat_id": chat_id, "revision": press.revision}
    if not is_approver_chat(chat_id):
        _record_refusal(
            request_id=press.request_id,
            actor=actor,
            telegram_user_id=telegram_user_id,
            action=press.decision,
            reason=f"pressed in chat {chat_id}, not the approver chat",
            detail=detail,
        )
        return PressAnswer.refused("Approvals are only decided in the approver chat.")
    user = services.telegram_user(telegram_user_id)
    if user is None:
        _record_refusal(
            request_id=press.request_id,
            actor=actor,
            telegram_user_id=telegram_user_id,
            action=press.decision,
            reason="this Telegram user is not linked to an active operator",
            detail=detail,
        )
        return PressAnswer.refused(
            f"You are not an approver (Telegram id {telegram_user_id} is not linked to an operator)."
        )
    actor = f"{actor} {user.get_username()}"[:120]
    if press.decision == "edit":
        return _edit_start(press=press, chat_id=chat_id, user=user, actor=actor, telegram_user_id=telegram_user_id)
    try:
        request = services.request_decide(
            request_id=press.request_id,
            decision=press.decision,
            user=user,
            channel=CHANNEL,
            actor=actor,
            telegram_user_id=telegram_user_id,
            revision=press.revision,
        )
    except services.ApprovalError as error:
        return PressAnswer.refused(str(error))
    return PressAnswer(text=f"Approval #{request.pk}: {request.status}.", decided=True)


def _edit_start(*, press: Press, chat_id: int, user: Any, actor: str, telegram_user_id: int) -> PressAnswer:
    def refuse(reason: str) -> PressAnswer:
        _record_refusal(
            request_id=press.request_id,
            actor=actor,
            telegram_user_id=telegram_user_id,
            action="edit",
            reason=reason,
            detail={"chat_id": chat_id, "revision": press.revision},
        )
        return PressAnswer.refused(reason)

    if not (user.is_active and user.has_perm(services.DECIDE_PERMISSION)):
        return refuse(f"{actor} may not edit publications (needs {services.DECIDE_PERMISSION})")
    request = ApprovalRequest.objects.filter(pk=press.request_id).first()
    if request is None:
        return PressAnswer.refused(f"Approval #{press.request_id} does not exist.")
    if request.status != ApprovalRequest.Status.PENDING or request.expires_at <= clock.now():
        state = request.status if request.status != ApprovalRequest.Status.PENDING else "expired"
        return refuse(f"Approval #{request.pk} is already {state}.")
    if request.revision != press.revision:
        return refuse(f"Approval #{request.pk} was edited since (revision {request.revision}); use the newest message.")
    key = EDIT_KEY.format(chat=chat_id, user=telegram_user_id)
    store.get_redis().set(
        key, json.dumps({"request_id": request.pk, "revision": request.revision}), ex=EDIT_TTL_SECONDS
    )
    with transaction.atomic():
        services.action_record(
            request=request,
            channel=CHANNEL,
            actor=actor,
            telegram_user_id=telegram_user_id,
            action="edit_prompt",
            allowed=True,
            detail={"chat_id": chat_id, "revision": request.revision},
        )
    limit = f", at most {request.max_length} characters" if request.max_length is not None else ""
    minutes = EDIT_TTL_SECONDS // 60
    return PressAnswer(
        text="Send the new text as your next message.",
        prompt=(
            f"Send the new text for approval #{request.pk} (revision {request.revision}{limit}) as your next message "
            f"in this chat within {minutes} minutes. /cancel keeps the current text."
        ),
    )


def edit_reply(*, chat_id: int, telegram_user_id: int, username: str, text: str) -> str | None:
    """The reply to a text message: None when its author is not editing anything here (ordinary chat), else what
    became of the new text."""
    client = store.get_redis()
    key = EDIT_KEY.format(chat=chat_id, user=telegram_user_id)
    raw = client.get(key)
    if raw is None:
        return None
    state = json.loads(raw)
    user = services.telegram_user(telegram_user_id)
    actor = actor_name(telegram_user_id=telegram_user_id, username=username)
    if user is not None:
        actor = f"{actor} {user.get_username()}"[:120]
    try:
        request = services.request_decide(
            request_id=int(state["request_id"]),
            decision="edit",
            user=user,
            channel=CHANNEL,
            actor=actor,
            text=text,
            telegram_user_id=telegram_user_id,
            revision=int(state["revision"]),
        )
    except services.InvalidText as error:
        # Another try is likely to succeed (a shorter text): keep waiting for it.
        return f"{error}. Send a new text, or /cancel."
    except services.ApprovalError as error:
        client.delete(key)
        return f"Not saved: {error}."
    client.delete(key)
    if request.revision == int(state["revision"]):
        return f"Approval #{request.pk}: the text is unchanged; the buttons above still apply."
    return f"Approval #{request.pk}: revision {request.revision} saved; it is shown again for a decision."


def edit_cancel(*, chat_id: int, telegram_user_id: int) -> bool:
    """Forget a started edit; True when there was one."""
    return bool(store.get_redis().delete(EDIT_KEY.format(chat=chat_id, user=telegram_user_id)))
