"""What an approval request looks like in Telegram: plain text (no parse mode, so nothing in a draft needs
escaping), within Telegram's 4,096 characters, and buttons whose ``callback_data`` (at most 64 bytes) names the
request, the revision shown and the action."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from apps.approvals.models import ApprovalRequest
from apps.core.calendar import NEW_YORK

TEXT_LIMIT = 4096
CALLBACK_PREFIX = "ap"
ACTIONS = {"a": "approve", "r": "reject", "e": "edit"}
_RULE = "\u2500" * 24


@dataclass(frozen=True)
class RequestView:
    """The fields of a request the bot shows, read in a worker thread and handed to the event loop."""

    id: int
    subject_type: str
    subject_label: str
    title: str
    text: str
    max_length: int | None
    revision: int
    status: str
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str
    chat_id: str
    message_id: int | None

    @classmethod
    def of(cls, request: ApprovalRequest) -> RequestView:
        return cls(
            id=request.pk,
            subject_type=request.subject_type,
            subject_label=request.get_subject_type_display(),
            title=request.title,
            text=request.text,
            max_length=request.max_length,
            revision=request.revision,
            status=request.status,
            expires_at=request.expires_at,
            decided_at=request.decided_at,
            decided_by=request.decided_by,
            chat_id=request.telegram_chat_id,
            message_id=request.telegram_message_id,
        )


@dataclass(frozen=True)
class Press:
    request_id: int
    revision: int
    decision: str  # approve, reject, edit


def callback_data(*, request_id: int, revision: int, action: str) -> str:
    """``ap:<request>:<revision>:<a|r|e>``: at most 35 bytes for 64-bit ids."""
    return f"{CALLBACK_PREFIX}:{request_id}:{revision}:{action}"


def press_parse(data: str) -> Press | None:
    """The press a button's data stands for, or None for data this bot never sent."""
    parts = data.split(":")
    if len(parts) != 4 or parts[0] != CALLBACK_PREFIX or parts[3] not in ACTIONS:
        return None
    try:
        return Press(request_id=int(parts[1]), revision=int(parts[2]), decision=ACTIONS[parts[3]])
    except ValueError:
        return None


def keyboard(view: RequestView) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    label, callback_data=callback_data(request_id=view.id, revision=view.revision, action=action)
                )
                for label, action in (("Approve", "a"), ("Reject", "r"), ("Edit", "e"))
            ]
        ]
    )


def _local(instant: datetime) -> str:
    return instant.astimezone(NEW_YORK).strftime("%Y-%m-%d %H:%M %Z")


def _fit(*, head: str, body: str, tail: str) -> str:
    """``head + body + tail`` within Telegram's limit, cutting the body (and saying so) when it is too long."""
    whole = f"{head}{body}{tail}"
    if len(whole) <= TEXT_LIMIT:
        return whole
    note = f"\n[cut here: the full {len(body)} characters are in the admin]"
    room = TEXT_LIMIT - len(head) - len(tail) - len(note)
    return f"{head}{body[: max(room, 0)]}{note}{tail}"[:TEXT_LIMIT]


def _head(view: RequestView) -> str:
    return f"Approval #{view.id} \u00b7 {view.subject_label}\n{view.title}\nRevision {view.revision}\n{_RULE}\n"


def _length(view: RequestView) -> str:
    limit = f" (limit {view.max_length})" if view.max_length is not None else ""
    return f"{len(view.text)} characters{limit}"


def pending_text(view: RequestView) -> str:
    """The message asking for a decision."""
    tail = f"\n{_RULE}\n{_length(view)}\nExpires {_local(view.expires_at)} unless someone decides."
    return _fit(head=_head(view), body=view.text, tail=tail)


def closed_text(view: RequestView) -> str:
    """The same message once decided or expired (its buttons are removed with it)."""
    when = _local(view.decided_at) if view.decided_at is not None else "?"
    if view.status == ApprovalRequest.Status.EXPIRED:
        outcome = f"EXPIRED unanswered at {when}; not published."
    else:
        outcome = f"{view.status.upper()} by {view.decided_by} at {when}."
    return _fit(head=_head(view), body=view.text, tail=f"\n{_RULE}\n{outcome}")


def superseded_text(view: RequestView) -> str:
    """An earlier revision's message once the edited text was shown in a new one (its buttons are removed)."""
    return (
        f"Approval #{view.id} \u00b7 {view.subject_label}\n{view.title}\n{_RULE}\n"
        f"This text was edited: revision {view.revision} is in a newer message. These buttons are gone."
    )
