"""The Interactive Brokers side of the operations console: reconciliation issues resolved with a note, broker
messages acknowledged, commands and order ids shown read-only; the two actions need the model's change permission and
leave an audit entry."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from apps.core import clock
from apps.execution.models import (
    BrokerCommand,
    BrokerMessage,
    IBOrderIdCounter,
    Order,
    OrderStatus,
    ReconciliationIssue,
)
from apps.ingestion.models import IBQuote
from apps.ops.models import AuditLog
from apps.risk.selectors import BROKER_STATE_KEY
from tests.risk.factories import SignalFactory, ny

pytestmark = pytest.mark.django_db

ISSUES_URL = "admin:execution_reconciliationissue_changelist"
MESSAGES_URL = "admin:execution_brokermessage_changelist"


def ib_order(*, ib_order_id: int = 1001) -> Order:
    signal = SignalFactory()
    return Order.objects.create(
        client_order_id=f"tp-{signal.signal_id}-entry-1",
        signal=signal,
        leg=Order.Leg.ENTRY,
        option_symbol=signal.option_symbol,
        side=Order.Side.BUY,
        quantity=2,
        limit_price=Decimal("1.20"),
        status=OrderStatus.SUBMITTED,
        broker="ib",
        broker_order_id=str(ib_order_id),
        ib_order_id=ib_order_id,
        ib_perm_id=987654321,
        created_at=ny(10, 0),
        submitted_at=ny(10, 0),
    )


def issue(
    kind: str = ReconciliationIssue.Kind.POSITION_MISMATCH, key: str = "SPY250610C00600000"
) -> ReconciliationIssue:
    return ReconciliationIssue.objects.create(
        kind=kind,
        key=key,
        broker_value="3",
        platform_value="2",
        detail=f"IB holds 3 {key}, the book 2",
        detected_at=ny(10, 5),
        last_seen_at=ny(10, 25),
    )


def message(*, code: int = 1100, alert: bool = True, order: Order | None = None, text: str = "") -> BrokerMessage:
    return BrokerMessage.objects.create(
        code=code,
        req_id=-1 if order is None else order.ib_order_id or 0,
        message=text or "Connectivity between IB and Trader Workstation has been lost.",
        category="connectivity" if order is None else "order",
        alert=alert,
        order=order,
        at=ny(10, 20),
    )


def staff(client, *codenames: str):
    """A staff user holding exactly the given execution permissions, logged in."""
    user = get_user_model().objects.create_user("desk", "desk@example.org", "pw-not-secret-123", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="execution", codename__in=codenames))
    client.force_login(user)
    return client


def test_every_ib_page_of_the_console_loads_read_only(admin_client):
    order = ib_order()
    flagged = issue()
    alert = message()
    BrokerCommand.objects.create(
        kind=BrokerCommand.Kind.PLACE,
        order=order,
        status=BrokerCommand.Status.DONE,
        result={"accepted": True},
        created_at=ny(10, 0),
        sent_at=ny(10, 0),
        answered_at=ny(10, 0),
    )
    counter = IBOrderIdCounter.objects.create(client_id=7, next_id=1002, updated_at=ny(10, 0))
    quote = IBQuote.objects.create(
        key="SPY250610C00600000",
        sec_type=IBQuote.SecType.OPTION,
        bid=Decimal("1.15"),
        ask=Decimal("1.25"),
        implied_vol=Decimal("0.18"),
        delta=Decimal("0.52"),
        quoted_at=ny(10, 29),
        received_at=ny(10, 29),
    )

    pages = {
        ISSUES_URL: b"position_mismatch",
        MESSAGES_URL: b"1100",
        "admin:execution_brokercommand_changelist": order.client_order_id.encode(),
        "admin:execution_iborderidcounter_changelist": b"1002",
        "admin:ingestion_ibquote_changelist": b"SPY250610C00600000",
        "admin:execution_order_changelist": b"1001",
    }
    for name, expected in pages.items():
        page = admin_client.get(reverse(name))
        assert page.status_code == 200, name
        assert expected in page.content, name

    for name, pk in (
        ("execution_reconciliationissue", flagged.pk),
        ("execution_brokermessage", alert.pk),
        ("execution_iborderidcounter", counter.pk),
        ("ingestion_ibquote", quote.pk),
        ("execution_order", order.pk),
    ):
        detail = admin_client.get(reverse(f"admin:{name}_change", args=[pk]))
        assert detail.status_code == 200, name
        assert b'name="_save"' not in detail.content, name
        assert admin_client.get(reverse(f"admin:{name}_add")).status_code == 403, name
        assert admin_client.post(reverse(f"admin:{name}_delete", args=[pk]), {"post": "yes"}).status_code == 403, name
    # The order's page shows its IB ids and what was sent and said about it.
    order_page = admin_client.get(reverse("admin:execution_order_change", args=[order.pk])).content
    assert b"987654321" in order_page and b"accepted" in order_page


def test_the_messages_list_links_the_order_truncates_long_messages_and_titles_the_connection(
    admin_client, settings, redis_store
):
    settings.BROKER = "ib"
    order = ib_order()
    message(code=201, alert=False, order=order, text="Order rejected - reason: " + "x" * 300)

    page = admin_client.get(reverse(MESSAGES_URL)).content.decode()

    assert reverse("admin:execution_order_change", args=[order.pk]) in page
    assert order.client_order_id in page
    assert "x" * 200 not in page and "…" in page
    assert "ib broker has reported no connection state" in page  # the title says how the connection stands
    redis_store.hset(BROKER_STATE_KEY, mapping={"broker": "ib", "connected": "0", "since": "2025-06-10T14:20:00+00:00"})
    assert (
        "ib broker disconnected since 2025-06-10T14:20:00+00:00"
        in admin_client.get(reverse(ISSUES_URL)).content.decode()
    )


def test_resolving_issues_asks_for_a_note_then_resolves_each_with_an_audit_entry(client):
    desk = staff(client, "view_reconciliationissue", "change_reconciliationissue")
    mismatch = issue()
    unknown = issue(ReconciliationIssue.Kind.UNKNOWN_EXECUTION, "0000e0d5.6571a3b2.01.01")
    url = reverse(ISSUES_URL)
    selected = {"action": "resolve_selected", "_selected_action": [mismatch.pk, unknown.pk]}

    assert b"Mark resolved (with a note)" in desk.get(url).content
    form_page = desk.post(url, selected)
    assert form_page.status_code == 200
    assert b"IB holds 3 SPY250610C00600000, the book 2" in form_page.content
    assert b'name="resolution"' in form_page.content
    assert desk.post(url, {**selected, "apply": "1", "resolution": ""}).status_code == 200  # a note is required
    assert not ReconciliationIssue.objects.filter(resolved=True).exists()

    response = desk.post(url, {**selected, "apply": "1", "resolution": "closed 1 at IB by hand, book is right"})

    assert response.status_code == 302
    for row in (mismatch, unknown):
        row.refresh_from_db()
        assert (row.resolved, row.resolved_by, row.resolved_at) == (True, "desk", clock.now())
        assert row.resolution == "closed 1 at IB by hand, book is right"
    audits = list(AuditLog.objects.order_by("id"))
    assert [(a.actor, a.action, a.target) for a in audits] == [
        ("desk", "reconciliation.resolve", "position_mismatch SPY250610C00600000"),
        ("desk", "reconciliation.resolve", "unknown_execution 0000e0d5.6571a3b2.01.01"),
    ]
    assert audits[0].detail["issue_id"] == mismatch.pk
    assert audits[0].detail["broker_value"] == "3" and audits[0].detail["platform_value"] == "2"
    assert audits[0].detail["resolution"] == "closed 1 at IB by hand, book is right"


def test_an_issue_resolved_already_keeps_its_first_resolution(client):
    desk = staff(client, "view_reconciliationissue", "change_reconciliationissue")
    done = issue()
    ReconciliationIssue.objects.filter(pk=done.pk).update(
        resolved=True, resolved_by="alice", resolved_at=ny(10, 10), resolution="adopted"
    )
    url = reverse(ISSUES_URL)

    response = desk.post(
        url, {"action": "resolve_selected", "_selected_action": [done.pk], "apply": "1", "resolution": "again"}
    )

    assert response.status_code == 302
    done.refresh_from_db()
    assert (done.resolved_by, done.resolution, done.resolved_at) == ("alice", "adopted", ny(10, 10))
    assert not AuditLog.objects.exists()
    # Once resolved, the same (kind, key) can be flagged again as a new open issue.
    assert issue().pk != done.pk


def test_a_staff_user_without_the_change_permission_cannot_resolve_issues(client):
    viewer = staff(client, "view_reconciliationissue")
    flagged = issue()
    url = reverse(ISSUES_URL)

    page = viewer.get(url)
    assert page.status_code == 200 and b"position_mismatch" in page.content
    assert b"Mark resolved (with a note)" not in page.content
    viewer.post(url, {"action": "resolve_selected", "_selected_action": [flagged.pk], "apply": "1", "resolution": "x"})

    flagged.refresh_from_db()
    assert (flagged.resolved, flagged.resolved_by, flagged.resolution) == (False, "", "")
    assert not AuditLog.objects.exists()


def test_acknowledging_broker_messages_is_audited_once_for_the_selection(client):
    desk = staff(client, "view_brokermessage", "change_brokermessage")
    lost, farm = message(code=1100), message(code=2103, text="Market data farm connection is broken:usfarm")
    ended = message(code=202, alert=False, order=ib_order(), text="Order Canceled - reason:")
    url = reverse(MESSAGES_URL)

    response = desk.post(url, {"action": "acknowledge_selected", "_selected_action": [lost.pk, farm.pk, ended.pk]})

    assert response.status_code == 302
    assert set(BrokerMessage.objects.values_list("acknowledged", flat=True)) == {True}
    audit = AuditLog.objects.get()
    assert (audit.actor, audit.action, audit.target) == (
        "desk",
        "broker_message.acknowledge",
        "IB codes 202, 1100, 2103",
    )
    assert audit.detail == {"message_ids": sorted([lost.pk, farm.pk, ended.pk]), "alerts": 2}
    # Acknowledging them again changes nothing and writes nothing.
    desk.post(url, {"action": "acknowledge_selected", "_selected_action": [lost.pk]})
    assert AuditLog.objects.count() == 1


def test_a_staff_user_without_the_change_permission_cannot_acknowledge_messages(client):
    viewer = staff(client, "view_brokermessage")
    alert = message()
    url = reverse(MESSAGES_URL)

    page = viewer.get(url)
    assert page.status_code == 200 and b"1100" in page.content
    assert b"acknowledge_selected" not in page.content
    viewer.post(url, {"action": "acknowledge_selected", "_selected_action": [alert.pk]})

    alert.refresh_from_db()
    assert alert.acknowledged is False
    assert not AuditLog.objects.exists()


def test_acknowledging_from_the_alerts_filter_leaves_a_selected_notice_alone(client):
    desk = staff(client, "view_brokermessage", "change_brokermessage")
    alert, notice = message(), message(code=2104, alert=False, text="Market data farm connection is OK:usfarm")
    url = reverse(MESSAGES_URL) + "?alert__exact=1"

    desk.post(url, {"action": "acknowledge_selected", "_selected_action": [alert.pk, notice.pk]})

    alert.refresh_from_db()
    notice.refresh_from_db()
    assert (alert.acknowledged, notice.acknowledged) == (True, False)
