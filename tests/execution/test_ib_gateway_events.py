"""The gateway's ordering rules for TWS's reports, on events fed to it directly (no socket needed)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from apps.core import clock
from apps.execution.ib import connection as ev
from apps.execution.ib.gateway import IBGateway, Snapshot


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def order_event(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append((kind, data))

    def broker_message(self, data: dict[str, Any]) -> None:
        self.events.append(("message", data))

    def account(self, values: dict[str, str]) -> None:
        self.events.append(("account", values))

    def ticks(self, ticks: list[dict[str, Any]]) -> None:
        self.events.append(("ticks", {"n": len(ticks)}))

    def reconcile(self, snapshot: dict[str, Any]) -> None:
        self.events.append(("reconcile", snapshot))


def execution(order_id: int, exec_id: str, req_id: int = -1) -> ev.ExecutionEvent:
    return ev.ExecutionEvent(
        req_id=req_id,
        order_id=order_id,
        order_ref=f"ref{order_id}",
        perm_id=1,
        exec_id=exec_id,
        key="SPY261127C00600000",
        side="BOT",
        shares=Decimal(2),
        price=Decimal("1.2"),
        time="20261127  10:30:00",
        account="DU1234567",
    )


def status(order_id: int, name: str) -> ev.OrderStatusEvent:
    return ev.OrderStatusEvent(
        order_id=order_id,
        status=name,
        filled=Decimal(2),
        remaining=Decimal(0),
        avg_fill_price=Decimal("1.2"),
        perm_id=1,
        why_held="",
    )


def gateway() -> tuple[IBGateway, RecordingSink]:
    sink = RecordingSink()
    gw = IBGateway(sink=sink, host="127.0.0.1", port=1, client_id=1)
    gw.refs_by_id.update({5: "ref5", 6: "ref6"})
    return gw, sink


def test_a_status_waits_behind_the_fill_still_waiting_for_its_commission():
    gw, sink = gateway()
    for event in (execution(5, "e1"), status(5, "Filled"), ev.CommissionEvent("e1", Decimal("1.30"), None)):
        gw.events.put(event)
    gw.pump(0)

    kinds = [(kind, data.get("status") or data.get("exec_id")) for kind, data in sink.events]
    assert kinds == [("execution", "e1"), ("status", "Filled")]
    assert sink.events[0][1]["commission"] == "1.30"
    assert sink.events[0][1]["at"] == "2026-11-27T15:30:00+00:00"  # New York time to UTC


def test_a_snapshots_copy_of_an_old_execution_never_holds_a_live_status():
    gw, sink = gateway()
    gw._snapshot = Snapshot(taken_at=clock.now())
    gw._snapshot_execs_req = 77
    gw.events.put(execution(6, "old", req_id=77))  # history, its commission report not there yet
    gw.events.put(status(6, "Cancelled"))
    gw.pump(0)

    assert [(kind, data.get("status")) for kind, data in sink.events] == [("status", "Cancelled")]
    gw.events.put(ev.CommissionEvent("old", Decimal("1.30"), None))
    gw.pump(0)
    assert gw._snapshot.executions["old"]["commission"] == "1.30"
    assert [kind for kind, _ in sink.events] == ["status"]  # the snapshot's execution goes to reconciliation only
