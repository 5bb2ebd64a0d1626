"""Approval writes: open a request for a subject, decide it (approve / reject / edit) on behalf of a person whose
permission is checked here, expire what nobody answered, and the Telegram bot's bookkeeping.

The owner of each subject type registers a ``Handler`` (in its ``AppConfig.ready``) that is called inside the
deciding transaction: it moves its own row (a social post to ``approved``, a report to ``approved``) and schedules the
publication with ``transaction.on_commit``.  So an approval and what it triggers commit together or not at all.

Every decision attempt is an ``ApprovalAction`` row, refused ones included (they are written in their own transaction
so a refusal is recorded even though the caller gets an exception), and an ops audit entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import IntegrityError, transaction

from apps.approvals.models import ApprovalAction, ApprovalRequest, SubjectType, TelegramIdentity
from apps.core import clock, store

logger = logging.getLogger(__name__)

APPROVALS_KEY = "distribution:approvals"  # sorted set: pending request id -> expiry epoch seconds (DB is the truth)
DECIDE_PERMISSION = "approvals.decide_approvalrequest"
Status = ApprovalRequest.Status
Channel = ApprovalAction.Channel


class UserLike(Protocol):
    """What a decision needs of the person: a Django user (or AnonymousUser) from any channel."""

    @property
    def is_active(self) -> bool: ...

    def has_perm(self, perm: str, obj: Any = None) -> bool: ...


class ApprovalError(Exception):
    """A decision that cannot be made; the message is fit to show the person who asked."""


class NotAuthorized(ApprovalError):
    """The person lacks the permission, is inactive, or is not linked to anyone."""


class NotPending(ApprovalError):
    """The request was already decided, or expired unanswered."""


class InvalidText(ApprovalError):
    """The text is empty or longer than the publishing channel takes."""


class StaleRevision(ApprovalError):
    """The person decided on a text that has been edited since they saw it."""


@dataclass(frozen=True)
class Handler:
    """What happens to a subject when its request is decided.  Called inside the deciding transaction."""

    on_approved: Callable[[ApprovalRequest], None]
    on_rejected: Callable[[ApprovalRequest], None]
    on_expired: Callable[[ApprovalRequest], None]


_handlers: dict[str, Handler] = {}


def handler_register(
    subject_type: str,
    *,
    on_approved: Callable[[ApprovalRequest], None],
    on_rejected: Callable[[ApprovalRequest], None],
    on_expired: Callable[[ApprovalRequest], None],
) -> None:
    """Register the owner's reactions for ``subject_type`` (call from ``AppConfig.ready``; re-registering replaces)."""
    SubjectType(subject_type)  # refuse a type nobody declared
    _handlers[subject_type] = Handler(on_approved=on_approved, on_rejected=on_rejected, on_expired=on_expired)


def _handler(subject_type: str) -> Handler:
    try:
        return _handlers[subject_type]
    except KeyError:
        raise ApprovalError(f"no handler is registered for {subject_type!r}; is its app installed?") from None


def _mirror_pending(request: ApprovalRequest) -> None:
    store.get_redis().zadd(APPROVALS_KEY, {str(request.pk): request.expires_at.timestamp()})


def _mirror_closed(request_id: int) -> None:
    store.get_redis().zrem(APPROVALS_KEY, str(request_id))


def action_record(
    *,
    channel: str,
    actor: str,
    action: str,
    allowed: bool,
    request: ApprovalRequest | None = None,
    telegram_user_id: int | None = None,
    reason: str = "",
    detail: dict[str, Any] | None = None,
) -> ApprovalAction:
    """Append one action (allowed or refused) to ``approvals_actions`` and the ops audit log."""
    from apps.ops.services import audit_record

    row = ApprovalAction.objects.create(
        request=request,
        channel=channel,
        actor=actor,
        telegram_user_id=telegram_user_id,
        action=action,
        allowed=allowed,
        reason=reason,
        detail=detail or {},
        at=clock.now(),
    )
    audit_record(
        actor=actor,
        action=f"approvals.{action}" if allowed else f"approvals.{action}.refused",
        target=f"approval:{request.pk}" if request is not None else channel,
        detail={"channel": channel, "reason": reason, **(detail or {})},
    )
    return row


def request_open(
    *,
    subject_type: str,
    subject_id: int,
    title: str,
    text: str,
    max_length: int | None = None,
    ttl_seconds: int | None = None,
) -> ApprovalRequest:
    """The approval request for a subject, created pending (expiring after ``APPROVAL_TTL_SECONDS``) or found.

    Idempotent: a subject has one request, whatever its status; opening it again returns it unchanged.
    """
    SubjectType(subject_type)
    text = text.strip()
    if not text:
        raise InvalidText("nothing to approve: the text is empty")
    if max_length is not None and len(text) > max_length:
        raise InvalidText(f"the text has {len(text)} characters; this channel takes at most {max_length}")
    now = clock.now()
    ttl = settings.APPROVAL_TTL_SECONDS if ttl_seconds is None else ttl_seconds
    try:
        with transaction.atomic():
            request, created = ApprovalRequest.objects.get_or_create(
                subject_type=subject_type,
                subject_id=subject_id,
                defaults={
                    "title": title[:200],
                    "text": text,
                    "original_text": text,
                    "max_length": max_length,
                    "created_at": now,
                    "expires_at": now + timedelta(seconds=ttl),
                },
            )
    except IntegrityError:
        request, created = ApprovalRequest.objects.get(subject_type=subject_type, subject_id=subject_id), False
    if created:
        transaction.on_commit(lambda: _mirror_pending(request))
    return request


def _allowed(user: UserLike | None) -> bool:
    return bool(user is not None and user.is_active and user.has_perm(DECIDE_PERMISSION))


def _refuse(
    *,
    error: ApprovalError,
    request_id: int,
    channel: str,
    actor: str,
    action: str,
    telegram_user_id: int | None,
) -> ApprovalError:
    """Record the refusal in its own transaction (it must survive the caller's rollback) and return the error."""
    with transaction.atomic():
        action_record(
            request=ApprovalRequest.objects.filter(pk=request_id).first(),
            channel=channel,
            actor=actor,
            telegram_user_id=telegram_user_id,
            action=action,
            allowed=False,
            reason=str(error),
        )
    logger.warning("approvals: %s by %s on request %s refused: %s", action, actor, request_id, error)
    return error


def _expire(request: ApprovalRequest, *, now: Any) -> None:
    """Inside a transaction holding the row lock: mark it expired and tell its owner."""
    request.status = Status.EXPIRED
    request.decided_at = now
    request.decided_by = "system"
    request.save(update_fields=["status", "decided_at", "decided_by"])
    _handler(request.subject_type).on_expired(request)
    action_record(request=request, channel=Channel.SYSTEM, actor="system", action="expire", allowed=True)
    transaction.on_commit(lambda: _mirror_closed(request.pk))


def request_decide(
    *,
    request_id: int,
    decision: str,
    user: UserLike | None,
    channel: str,
    actor: str,
    text: str | None = None,
    note: str = "",
    telegram_user_id: int | None = None,
    revision: int | None = None,
) -> ApprovalRequest:
    """Apply ``decision`` (``approve``, ``reject`` or ``edit``) for ``user``, who needs DECIDE_PERMISSION.

    ``edit`` replaces the text (``text`` required, within the request's ``max_length``) and leaves it pending; an
    ``approve`` with ``text`` edits and approves at once.  ``revision``, when given, is the revision the person saw:
    it is compared under the row lock, so nobody approves a text edited since it was shown to them.  Raises
    ``NotAuthorized`` (no permission), ``NotPending`` (already decided or expired, the request is expired first if its
    time is up), ``StaleRevision`` or ``InvalidText``; each refusal is recorded.
    """
    if decision not in ("approve", "reject", "edit"):
        raise ValueError(f"decision must be approve, reject or edit, not {decision!r}")

    def refuse(error: ApprovalError) -> ApprovalError:
        return _refuse(
            error=error,
            request_id=request_id,
            channel=channel,
            actor=actor,
            action=decision,
            telegram_user_id=telegram_user_id,
        )

    if not _allowed(user):
        raise refuse(NotAuthorized(f"{actor} may not {decision} publications (needs {DECIDE_PERMISSION})"))
    if text is not None:
        text = text.strip()
        if not text:
            raise refuse(InvalidText("the new text is empty"))
    elif decision == "edit":
        raise refuse(InvalidText("an edit needs the new text"))

    expired = stale = False
    with transaction.atomic():
        request = ApprovalRequest.objects.select_for_update().filter(pk=request_id).first()
        if request is None:
            raise ApprovalError(f"approval request {request_id} does not exist")
        now = clock.now()
        if request.status == Status.PENDING and request.expires_at <= now:
            _expire(request, now=now)
            expired = True
        elif request.status == Status.PENDING and revision is not None and revision != request.revision:
            stale = True  # refused below, outside this transaction
        elif request.status == Status.PENDING and not _too_long(text, request.max_length):
            _apply(request, decision=decision, text=text, note=note, actor=actor, now=now)
            action_record(
                request=request,
                channel=channel,
                actor=actor,
                telegram_user_id=telegram_user_id,
                action=decision,
                allowed=True,
                reason=note,
                detail={"revision": request.revision, "edited": text is not None},
            )
            return request
        # Otherwise refused below, outside this transaction (the refusal must be recorded even so).
    if expired:
        raise refuse(NotPending(f"request {request_id} expired at {request.expires_at.isoformat()} unanswered"))
    if stale:
        raise refuse(
            StaleRevision(
                f"request {request_id} was edited since you saw it (you saw revision {revision}, it is now "
                f"revision {request.revision}); decide on the newest message"
            )
        )
    if request.status != Status.PENDING:
        raise refuse(NotPending(f"request {request_id} is already {request.status} (by {request.decided_by})"))
    raise refuse(
        InvalidText(f"the text has {len(text or '')} characters; this channel takes at most {request.max_length}")
    )


def _too_long(text: str | None, max_length: int | None) -> bool:
    return text is not None and max_length is not None and len(text) > max_length


def _apply(request: ApprovalRequest, *, decision: str, text: str | None, note: str, actor: str, now: Any) -> None:
    if text is not None and text != request.text:
        request.text = text
        request.edits += 1
        request.revision += 1
    if decision == "edit":
        request.save(update_fields=["text", "edits", "revision"])
        return
    request.status = Status.APPROVED if decision == "approve" else Status.REJECTED
    request.decided_at = now
    request.decided_by = actor
    request.decision_note = note
    request.save()
    handler = _handler(request.subject_type)
    (handler.on_approved if decision == "approve" else handler.on_rejected)(request)
    transaction.on_commit(lambda: _mirror_closed(request.pk))


def requests_expire_due() -> int:
    """Expire every pending request whose time is up (beat); returns how many."""
    now = clock.now()
    expired = 0
    for request_id in ApprovalRequest.objects.filter(status=Status.PENDING, expires_at__lte=now).values_list(
        "pk", flat=True
    ):
        with transaction.atomic():
            request = (
                ApprovalRequest.objects.select_for_update()
                .filter(pk=request_id, status=Status.PENDING, expires_at__lte=now)
                .first()
            )
            if request is None:
                continue  # decided meanwhile
            _expire(request, now=now)
            expired += 1
    if expired:
        logger.info("approvals: %d requests expired unanswered", expired)
    return expired


def telegram_user(telegram_user_id: int) -> AbstractUser | None:
    """The active Django user an active Telegram identity is linked to, or None (not configured: refuse)."""
    identity = (
        TelegramIdentity.objects.select_related("user")
        .filter(telegram_user_id=telegram_user_id, active=True, user__is_active=True)
        .first()
    )
    return identity.user if identity is not None else None


def presented_mark(*, request_id: int, chat_id: str, message_id: int, revision: int) -> None:
    """The bot showed ``revision`` of the request in Telegram as ``message_id``."""
    ApprovalRequest.objects.filter(pk=request_id).update(
        telegram_chat_id=str(chat_id),
        telegram_message_id=message_id,
        presented_revision=revision,
        presented_at=clock.now(),
    )


def closed_mark(*, request_id: int) -> None:
    """The bot updated the request's Telegram message with its decision or expiry."""
    ApprovalRequest.objects.filter(pk=request_id).update(closed_notice_at=clock.now())
