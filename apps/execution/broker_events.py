"""What the broker reports, applied to the book: acknowledgements, statuses, executions, rejections, error codes,
account values, and reconciliation snapshots.

Every function is safe to run twice with the same report (executions are keyed by the broker's execId; a status
that the order already has, or a terminal order, is left alone) and tolerates reports in any order a restart can
produce.  Differences that cannot be adopted without a person's judgement become ``ReconciliationIssue`` rows;
nothing the broker reports silently overwrites the book.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.db import IntegrityError, transaction

from apps.core import clock, store
from apps.execution import services
from apps.execution.brokers.base import BrokerFill
from apps.execution.ib.gateway import ACCOUNT_KEY
from apps.execution.models import (
    BrokerCommand,
    BrokerMessage,
    Order,
    OrderStatus,
    Position,
    ReconciliationIssue,
)
from apps.ops.services import audit_record

logger = logging.getLogger(__name__)

TERMINAL = (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED)


def _order_for(*, order_ref: str, ib_order_id: int | None = None) -> Order | None:
    if order_ref:
        order = Order.objects.filter(client_order_id=order_ref).first()
        if order is not None:
            return order
    if ib_order_id:
        return Order.objects.filter(ib_order_id=ib_order_id, broker="ib").order_by("-id").first()
    return None


def issue_flag(*, kind: str, key: str, detail: str, broker_value: str = "", platform_value: str = "") -> None:
    """Record (or refresh) an open reconciliation issue for an operator; one open row per (kind, key)."""
    now = clock.now()
    updated = ReconciliationIssue.objects.filter(kind=kind, key=key, resolved=False).update(
        last_seen_at=now, detail=detail, broker_value=broker_value, platform_value=platform_value
    )
    if updated:
        return
    try:
        with transaction.atomic():
            ReconciliationIssue.objects.create(
                kind=kind,
                key=key,
                detail=detail,
                broker_value=broker_value,
                platform_value=platform_value,
                detected_at=now,
                last_seen_at=now,
            )
    except IntegrityError:
        return  # flagged by a concurrent run
    logger.error("reconciliation: %s %s: %s", kind, key, detail)


# --- order reports ----------------------------------------------------------------------------------------------------
def _submitted_if_pending(order: Order, detail: str) -> None:
    """TWS answered for an order whose "submitted" was never recorded (the sender died between): record it now."""
    if order.status == OrderStatus.PENDING:
        services.order_transition(order=order, to_status=OrderStatus.SUBMITTED, detail=detail, submitted_at=clock.now())


def _end(order: Order, reason: str) -> None:
    """End a working order: cancelled when part of it filled (the fills stand), else rejected."""
    to_status = OrderStatus.CANCELLED if order.filled_quantity else OrderStatus.REJECTED
    services.order_end_unfilled(order=order, to_status=to_status, reason=reason)


def order_acknowledged(*, order_ref: str, ib_order_id: int, perm_id: int, status: str) -> Order | None:
    """TWS knows the order: remember its ids; a pending order (sent, acknowledgement lost) becomes submitted."""
    order = _order_for(order_ref=order_ref, ib_order_id=ib_order_id)
    if order is None:
        issue_flag(
            kind=ReconciliationIssue.Kind.UNKNOWN_ORDER,
            key=order_ref or f"ib:{ib_order_id}",
            detail=f"TWS reports order {ib_order_id} ({status}) that the platform did not send",
            broker_value=status,
        )
        return None
    with transaction.atomic():
        order = Order.objects.select_for_update().get(pk=order.pk)
        Order.objects.filter(pk=order.pk).update(
            ib_order_id=ib_order_id, ib_perm_id=perm_id or order.ib_perm_id, broker_order_id=str(ib_order_id)
        )
        _submitted_if_pending(order, f"acknowledged by IB as {ib_order_id} ({status})")
    return order


def execution_record(
    *,
    order_ref: str,
    ib_order_id: int | None,
    exec_id: str,
    price: Decimal,
    shares: Decimal,
    commission: Decimal | None,
    at: datetime,
    source: str = "IB",
) -> bool:
    """Book one execution once (by execId) on its order: the fill, the position, the order's state, and the trade it
    opens or closes.  An execution of no known order is flagged.  Returns whether it was new."""
    order = _order_for(order_ref=order_ref, ib_order_id=ib_order_id)
    if order is None:
        issue_flag(
            kind=ReconciliationIssue.Kind.UNKNOWN_EXECUTION,
            key=exec_id,
            detail=f"execution {exec_id}: {shares} @ {price} for order {ib_order_id} ref {order_ref!r}, not ours",
            broker_value=f"{shares} @ {price}",
        )
        return False
    if commission is None:
        # TWS always follows an execution with its commission report; when it did not come, book the schedule the
        # paper broker uses and say so in the order log.
        commission = Decimal(str(settings.PAPER_COMMISSION_PER_CONTRACT)) * shares
        source = f"{source}, commission report missing: {commission} assumed"
    quantity = int(shares)
    with transaction.atomic():
        order = Order.objects.select_for_update(of=("self",)).select_related("signal").get(pk=order.pk)
        if order.fills.filter(exec_id=exec_id).exists():
            return False
        _submitted_if_pending(order, f"acknowledged by an execution ({source})")
        fill = BrokerFill(exec_id=exec_id, price=price, quantity=quantity, commission=commission, at=at)
        booked = services.fill_book(order=order, fill=fill, source=source)
    return booked


def order_status_apply(
    *, order_ref: str, ib_order_id: int, status: str, filled: Decimal, why: str = "", cancel_requested: bool = False
) -> None:
    """A status from TWS.  Acknowledgements move a pending order on; Cancelled/Inactive end a working order (an
    entry that filled nothing ends its signal as rejected).  Fills move orders through executions, not statuses."""
    order = _order_for(order_ref=order_ref, ib_order_id=ib_order_id)
    if order is None:
        return
    if status in ("PreSubmitted", "Submitted", "PendingSubmit", "ApiPending"):
        order_acknowledged(order_ref=order.client_order_id, ib_order_id=ib_order_id, perm_id=0, status=status)
        return
    if status not in ("Cancelled", "ApiCancelled", "Inactive"):
        return
    with transaction.atomic():
        order = Order.objects.select_for_update(of=("self",)).select_related("signal").get(pk=order.pk)
        if order.status in TERMINAL:
            return
        if Decimal(order.filled_quantity) < filled:
            # An execution this book has not seen yet: the periodic reconciliation adopts it; until then the order
            # keeps its state rather than ending with a wrong filled quantity.
            logger.warning(
                "order %s: IB says %s with %s filled, booked %s", order_ref, status, filled, order.filled_quantity
            )
            return
        _submitted_if_pending(order, "acknowledged by IB")
        if cancel_requested:
            reason = f"IB {status}: cancelled at the platform's request ({order.filled_quantity} filled)"
        else:
            reason = order.reject_reason or (
                f"IB {status}: {'the unfilled remainder' if order.filled_quantity else 'nothing'} filled at the"
                f" limit {order.limit_price} (immediate-or-cancel){': ' + why if why else ''}"
            )
        services.order_end_unfilled(order=order, to_status=OrderStatus.CANCELLED, reason=reason)


def order_rejected(*, order_ref: str, ib_order_id: int, code: int, message: str) -> None:
    """TWS refused the order (201 and the like): it ends as rejected with IB's words; an entry ends its signal."""
    order = _order_for(order_ref=order_ref, ib_order_id=ib_order_id)
    if order is None:
        return
    with transaction.atomic():
        order = Order.objects.select_for_update(of=("self",)).select_related("signal").get(pk=order.pk)
        if order.status in TERMINAL:
            return
        _submitted_if_pending(order, "answered by IB")
        reason = f"IB {code}: {message}"
        _end(order, reason)
        BrokerCommand.objects.filter(order=order, kind=BrokerCommand.Kind.PLACE).exclude(
            status=BrokerCommand.Status.DONE
        ).update(
            status=BrokerCommand.Status.DONE,
            result={"accepted": False, "reject_reason": reason},
            answered_at=clock.now(),
        )


def broker_message_record(
    *, code: int, req_id: int, message: str, category: str, alert: bool, order_ref: str = ""
) -> BrokerMessage:
    """Keep every code TWS sends; one about an order is linked to it, the rest are alerts or information."""
    order = _order_for(order_ref=order_ref) if order_ref else None
    return BrokerMessage.objects.create(
        code=code, req_id=req_id, message=message, category=category, alert=alert, order=order, at=clock.now()
    )


def account_values_record(*, values: dict[str, str]) -> None:
    """The broker's account summary, for the risk manager (``risk:account:broker``, fresh for two minutes)."""
    mapping = {**values, "updated_at": clock.now().isoformat()}
    store.get_redis().hset(ACCOUNT_KEY, mapping=cast(Any, mapping))


# --- reconciliation ---------------------------------------------------------------------------------------------------
def order_no_trace_end(*, order: Order, taken_at: datetime, unless_commanded: bool = True) -> None:
    """End a working order of which the broker knows nothing (it is not working anywhere) and flag it.

    Checked again under the row lock: an order submitted since ``taken_at`` (the snapshot cannot know it) or, with
    ``unless_commanded``, one whose command is still on its way to the listener is left alone."""
    reason = (
        f"no trace at IB at the reconciliation of {taken_at.isoformat()} (order ref {order.client_order_id},"
        f" id {order.ib_order_id}): not working anywhere"
    )
    with transaction.atomic():
        locked = Order.objects.select_for_update(of=("self",)).select_related("signal").get(pk=order.pk)
        if locked.status not in (OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED):
            return
        if locked.submitted_at is None or locked.submitted_at >= taken_at:
            return
        on_its_way = (BrokerCommand.Status.QUEUED, BrokerCommand.Status.SENT)
        if unless_commanded and BrokerCommand.objects.filter(order=locked, status__in=on_its_way).exists():
            return
        _end(locked, reason)
        BrokerCommand.objects.filter(order=locked).exclude(status=BrokerCommand.Status.DONE).update(
            status=BrokerCommand.Status.FAILED,
            result={"accepted": False, "reject_reason": reason},
            answered_at=clock.now(),
        )
    issue_flag(
        kind=ReconciliationIssue.Kind.ORDER_NOT_AT_BROKER,
        key=order.client_order_id,
        detail=reason,
        platform_value=order.status,
    )


def reconcile_apply(*, snapshot: dict[str, Any]) -> dict[str, int]:
    """Compare what the broker holds with the book, adopt what can be adopted and flag the rest.

    - executions of our orders (by orderRef) that the book lacks are booked ("adopted");
    - open orders of ours that the book has as pending are marked submitted with their ids;
    - orders the book has as working, sent before the snapshot, of which the broker knows nothing and no listener
      command is still answering: ended (the remainder is not working anywhere) and flagged;
    - orders finished at the broker (completed, cancelled) but working in the book are ended;
    - positions that differ from the book after all that are flagged, never overwritten.
    """
    taken_at = datetime.fromisoformat(snapshot["taken_at"])
    counts = {"adopted_executions": 0, "acknowledged": 0, "ended": 0, "flagged": 0}
    for execution in sorted(snapshot.get("executions", []), key=lambda e: (e["at"], e["exec_id"])):
        commission = execution.get("commission")
        if execution_record(
            order_ref=execution["order_ref"],
            ib_order_id=int(execution["ib_order_id"]),
            exec_id=execution["exec_id"],
            price=Decimal(execution["price"]),
            shares=Decimal(execution["shares"]),
            commission=Decimal(commission) if commission is not None else None,
            at=datetime.fromisoformat(execution["at"]),
            source="IB, adopted at reconciliation",
        ):
            counts["adopted_executions"] += 1
    open_refs = {o["order_ref"] for o in snapshot.get("open_orders", [])}
    for open_order in snapshot.get("open_orders", []):
        order = order_acknowledged(
            order_ref=open_order["order_ref"],
            ib_order_id=int(open_order["ib_order_id"]),
            perm_id=int(open_order.get("perm_id") or 0),
            status=open_order.get("status", ""),
        )
        counts["acknowledged" if order is not None else "flagged"] += 1
        if order is not None:
            order.refresh_from_db(fields=["status"])
            if order.status in TERMINAL:
                # The book ended it (rejected, cancelled, filled) while TWS still works it: it may still fill.
                issue_flag(
                    kind=ReconciliationIssue.Kind.STATUS_MISMATCH,
                    key=order.client_order_id,
                    detail=(
                        f"TWS still works order {open_order['ib_order_id']} ({open_order.get('status', '')}) that the"
                        f" book has as {order.status}: cancel it at the broker or let its fills be booked"
                    ),
                    broker_value=str(open_order.get("status", "")),
                    platform_value=order.status,
                )
                counts["flagged"] += 1
    completed = {c["order_ref"]: c for c in snapshot.get("completed", [])}
    seen = open_refs | set(completed) | {e["order_ref"] for e in snapshot.get("executions", [])}
    # Pending orders were never handed to anyone (their submission marks them submitted first); orders submitted
    # after the snapshot was taken cannot be in it.
    working = Order.objects.filter(
        broker="ib",
        status__in=(OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED),
        submitted_at__lt=taken_at,
    ).select_related("signal")
    for order in working:
        if order.client_order_id in open_refs:
            continue
        if order.client_order_id in completed:
            status = completed[order.client_order_id].get("status", "Cancelled")
            order_status_apply(
                order_ref=order.client_order_id,
                ib_order_id=order.ib_order_id or 0,
                status=status if status in ("Cancelled", "ApiCancelled", "Inactive") else "Cancelled",
                filled=Decimal(order.filled_quantity),
                why="ended at the broker while the platform was not listening",
            )
            counts["ended"] += 1
            continue
        if order.client_order_id in seen:
            continue  # filled at the broker: the executions above booked it
        if BrokerCommand.objects.filter(
            order=order, status__in=(BrokerCommand.Status.QUEUED, BrokerCommand.Status.SENT)
        ).exists():
            continue  # the listener settles its own unanswered commands (sends again or ends them)
        order_no_trace_end(order=order, taken_at=taken_at)
        counts["ended"] += 1
    counts["flagged"] += _positions_compare(snapshot.get("positions", []))
    logger.info("IB reconciliation: %s", counts)
    return counts


def _positions_compare(positions: list[dict[str, Any]]) -> int:
    # IB writes quantities as floats ("2.0"): normalized, so "2.0" and 2 compare and read the same.
    broker = {p["key"]: Decimal(p["position"]).normalize() for p in positions if Decimal(p["position"]) != 0}
    book = {p.option_symbol: Decimal(p.quantity) for p in Position.objects.exclude(quantity=0)}
    flagged = 0
    for key in sorted(set(broker) | set(book)):
        held, booked = broker.get(key, Decimal(0)), book.get(key, Decimal(0))
        if held != booked:
            issue_flag(
                kind=ReconciliationIssue.Kind.POSITION_MISMATCH,
                key=key,
                detail=f"IB holds {held:f} of {key}, the book {booked:f}: an operator decides (nothing overwritten)",
                broker_value=f"{held:f}",
                platform_value=f"{booked:f}",
            )
            flagged += 1
        else:
            ReconciliationIssue.objects.filter(
                kind=ReconciliationIssue.Kind.POSITION_MISMATCH, key=key, resolved=False
            ).update(resolved=True, resolved_by="reconciliation", resolved_at=clock.now(), resolution="matches again")
    return flagged


# --- operators' answers to what reconciliation flagged ------------------------------------------------------------
def reconciliation_issues_resolve(
    *, issue_ids: Sequence[int], actor: str, resolution: str
) -> list[ReconciliationIssue]:
    """Mark the open issues among ``issue_ids`` resolved by ``actor`` with ``resolution``, each with its own audit
    entry; an issue already resolved (by someone else meanwhile) is left as it is.  Returns the issues resolved."""
    now = clock.now()
    with transaction.atomic():
        issues = list(
            ReconciliationIssue.objects.select_for_update().filter(id__in=issue_ids, resolved=False).order_by("id")
        )
        ReconciliationIssue.objects.filter(id__in=[issue.pk for issue in issues]).update(
            resolved=True, resolved_by=actor[:150], resolved_at=now, resolution=resolution
        )
        for issue in issues:
            audit_record(
                actor=actor,
                action="reconciliation.resolve",
                target=f"{issue.kind} {issue.key}"[:255],
                detail={
                    "issue_id": issue.pk,
                    "kind": issue.kind,
                    "key": issue.key,
                    "broker_value": issue.broker_value,
                    "platform_value": issue.platform_value,
                    "detected_at": issue.detected_at.isoformat(),
                    "resolution": resolution,
                },
            )
    return issues


def broker_messages_acknowledge(*, message_ids: Sequence[int], actor: str) -> int:
    """Acknowledge the unacknowledged broker messages among ``message_ids`` (one audit entry naming them all).
    Returns how many were acknowledged."""
    with transaction.atomic():
        rows = list(
            BrokerMessage.objects.select_for_update()
            .filter(id__in=message_ids, acknowledged=False)
            .order_by("id")
            .values("id", "code", "alert")
        )
        if not rows:
            return 0
        BrokerMessage.objects.filter(id__in=[row["id"] for row in rows]).update(acknowledged=True)
        codes = sorted({row["code"] for row in rows})
        audit_record(
            actor=actor,
            action="broker_message.acknowledge",
            target=f"IB codes {', '.join(map(str, codes))}"[:255],
            detail={"message_ids": [row["id"] for row in rows], "alerts": sum(1 for row in rows if row["alert"])},
        )
    return len(rows)
