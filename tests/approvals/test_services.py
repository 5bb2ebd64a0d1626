"""Approval services with the real database: decisions only by a person with the permission, edits within the
channel's limit, expiry of what nobody answered, and every attempt recorded, refused ones included."""

from __future__ import annotations

from datetime import timedelta

import pytest

from apps.approvals import selectors, services
from apps.approvals.models import ApprovalAction, ApprovalRequest, TelegramIdentity
from apps.core import clock
from apps.ops.models import AuditLog
from tests.approvals.conftest import person, social_request

pytestmark = pytest.mark.django_db

DECIDE = "approvals.decide_approvalrequest"


def decide(request, decision: str, user, **kwargs):
    return services.request_decide(
        request_id=request.pk, decision=decision, user=user, channel="admin", actor=f"admin:{user}", **kwargs
    )


def actions(request) -> list[tuple[str, bool]]:
    return list(ApprovalAction.objects.filter(request=request).order_by("pk").values_list("action", "allowed"))


def test_opening_a_request_twice_returns_the_same_pending_request(social_handler):
    first = social_request(7, text="  flow into the close  ")
    again = social_request(7, text="another draft")

    assert again.pk == first.pk and again.text == "flow into the close"
    assert first.status == "pending" and first.revision == 1 and first.original_text == "flow into the close"
    assert list(selectors.to_present()) == [first]


def test_opening_a_request_with_text_over_the_channel_limit_is_refused(social_handler):
    with pytest.raises(services.InvalidText, match="at most 10"):
        social_request(text="x" * 11, max_length=10)
    assert not ApprovalRequest.objects.exists()


def test_approval_by_a_person_with_the_permission_calls_the_owner_and_is_recorded(social_handler):
    alice = person("alice", DECIDE)
    request = social_request()

    decided = decide(request, "approve", alice, note="good")

    assert decided.status == "approved" and decided.decided_by == "admin:alice" and decided.decision_note == "good"
    assert social_handler.approved == [request.pk] and social_handler.rejected == []
    assert actions(request) == [("approve", True)]
    assert AuditLog.objects.filter(action="approvals.approve").exists()
    assert list(selectors.pending()) == []


def test_rejection_calls_the_owner_and_a_second_decision_is_refused_as_not_pending(social_handler):
    alice = person("alice", DECIDE)
    request = social_request()

    decide(request, "reject", alice)
    with pytest.raises(services.NotPending, match="already rejected"):
        decide(request, "approve", alice)

    assert social_handler.rejected == [request.pk] and social_handler.approved == []
    assert actions(request) == [("reject", True), ("approve", False)]


def test_edit_replaces_the_text_bumps_the_revision_and_leaves_it_pending_for_the_bot_to_show(social_handler):
    alice = person("alice", DECIDE)
    request = social_request(max_length=40)
    services.presented_mark(request_id=request.pk, chat_id="-100", message_id=5, revision=1)
    assert list(selectors.to_present()) == []

    edited = decide(request, "edit", alice, text="QQQ puts swept.")

    assert (edited.status, edited.text, edited.revision, edited.edits) == ("pending", "QQQ puts swept.", 2, 1)
    assert edited.original_text == "SPY calls flow heavy into the close."
    assert list(selectors.to_present()) == [edited]
    assert social_handler.approved == []


def test_an_edit_over_the_limit_or_empty_is_refused_and_recorded_and_the_text_kept(social_handler):
    alice = person("alice", DECIDE)
    request = social_request(max_length=40)

    with pytest.raises(services.InvalidText, match="at most 40"):
        decide(request, "edit", alice, text="x" * 41)
    with pytest.raises(services.InvalidText, match="empty"):
        decide(request, "edit", alice, text="   ")

    request.refresh_from_db()
    assert request.revision == 1 and request.text == "SPY calls flow heavy into the close."
    assert actions(request) == [("edit", False), ("edit", False)]


def test_approving_a_revision_other_than_the_current_one_is_refused(social_handler):
    alice = person("alice", DECIDE)
    request = social_request()
    decide(request, "edit", alice, text="newer text")

    with pytest.raises(services.StaleRevision, match="revision 1"):
        decide(request, "approve", alice, revision=1)
    decided = decide(request, "approve", alice, revision=2)

    assert decided.status == "approved" and social_handler.texts[request.pk] == "newer text"
    assert actions(request) == [("edit", True), ("approve", False), ("approve", True)]


@pytest.mark.parametrize("who", ["no permission", "inactive", "nobody"])
def test_a_person_without_the_permission_is_refused_and_the_refusal_recorded(social_handler, who):
    user = {
        "no permission": lambda: person("viewer", "execution.view_position"),
        "inactive": lambda: _inactive(person("gone", DECIDE)),
        "nobody": lambda: None,
    }[who]()
    request = social_request()

    with pytest.raises(services.NotAuthorized, match=DECIDE):
        services.request_decide(request_id=request.pk, decision="approve", user=user, channel="api", actor=who)

    request.refresh_from_db()
    assert request.status == "pending" and social_handler.approved == []
    refusal = ApprovalAction.objects.get(request=request)
    assert (refusal.action, refusal.allowed, refusal.actor) == ("approve", False, who)
    assert AuditLog.objects.filter(action="approvals.approve.refused").exists()


def _inactive(user):
    user.is_active = False
    user.save()
    return user


def test_requests_nobody_answered_expire_and_only_those(social_handler):
    due = social_request(1)
    fresh = social_request(2)
    ApprovalRequest.objects.filter(pk=due.pk).update(expires_at=clock.now() - timedelta(seconds=1))

    assert services.requests_expire_due() == 1
    assert services.requests_expire_due() == 0

    due.refresh_from_db()
    fresh.refresh_from_db()
    assert (due.status, due.decided_by) == ("expired", "system") and fresh.status == "pending"
    assert social_handler.expired == [due.pk]
    assert actions(due) == [("expire", True)]


def test_deciding_after_the_expiry_expires_the_request_and_refuses_the_decision(social_handler):
    alice = person("alice", DECIDE)
    request = social_request()
    ApprovalRequest.objects.filter(pk=request.pk).update(expires_at=clock.now() - timedelta(seconds=1))

    with pytest.raises(services.NotPending, match="expired"):
        decide(request, "approve", alice)

    request.refresh_from_db()
    assert request.status == "expired"
    assert social_handler.expired == [request.pk] and social_handler.approved == []
    assert actions(request) == [("expire", True), ("approve", False)]


def test_a_decided_request_with_a_telegram_message_is_to_close_until_marked(social_handler):
    alice = person("alice", DECIDE)
    request = social_request()
    services.presented_mark(request_id=request.pk, chat_id="-100", message_id=5, revision=1)
    decide(request, "approve", alice)

    assert list(selectors.to_close()) == [ApprovalRequest.objects.get(pk=request.pk)]
    services.closed_mark(request_id=request.pk)
    assert list(selectors.to_close()) == []


def test_a_telegram_id_counts_only_while_its_link_and_its_user_are_active():
    alice = person("alice", DECIDE, telegram_id=42)
    assert services.telegram_user(42) == alice
    assert services.telegram_user(43) is None

    TelegramIdentity.objects.filter(telegram_user_id=42).update(active=False)
    assert services.telegram_user(42) is None
    TelegramIdentity.objects.filter(telegram_user_id=42).update(active=True)
    _inactive(alice)
    assert services.telegram_user(42) is None
