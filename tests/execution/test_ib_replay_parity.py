"""The same replayed session gives the same trades with the paper broker and with the IB adapter on the TWS
simulator (real ibapi client, loopback socket, the recorded market on the replay's clock)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings

from apps.core import clock, store
from apps.execution.models import Fill, Order, Trade

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def book() -> list[tuple[object, ...]]:
    """Each trade as the books see it; times to the second (TWS reports execution times in whole seconds)."""
    return [
        (
            t.signal.signal_id,
            t.strategy,
            t.option_symbol,
            t.quantity,
            t.entry_price,
            t.entry_at.replace(microsecond=0),
            t.exit_price,
            t.exit_at.replace(microsecond=0) if t.exit_at else None,
            t.exit_reason,
            t.realized_pnl,
            t.fees,
        )
        for t in Trade.objects.select_related("signal").order_by("entry_at", "id")
    ]


def replay(path, **options) -> str:
    out = StringIO()
    call_command("replay", str(path), "--no-progress", stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def reset() -> None:
    call_command("flush", verbosity=0, interactive=False)
    store.get_redis().flushdb()
    clock.use_wall_clock()


def test_a_replayed_session_gives_the_same_trades_on_paper_and_through_ib(tmp_path):
    session = tmp_path / "session.ndjson.gz"
    # 0DTE entries at 09:45 (both stopped out by 10:05), 1DTE and 14D+ at 10:00: five trades, two exits.
    call_command("make_session", date="2026-11-20", seed=7, out=str(session), start="09:25", end="10:05")
    reset()  # both runs start from the same state, id sequences included (signal ids derive from evidence row ids)

    replay(session)
    paper = book()
    paper_orders = sorted(Order.objects.values_list("client_order_id", "status", "filled_quantity"))
    # "book": time exits of contracts whose quotes stopped with the session are closed on the books (no broker).
    assert {o.broker for o in Order.objects.exclude(broker="book")} == {"paper"}
    reset()

    with override_settings(BROKER="ib", IB_CLIENT_ID=21):
        summary = replay(session, tws_sim=True)
    ib = book()

    assert len(paper) >= 3 and any(row[8] for row in paper), "the session must enter and exit trades"
    assert ib == paper
    assert {o.broker for o in Order.objects.exclude(broker="book")} == {"ib"}
    assert sorted(Order.objects.values_list("client_order_id", "status", "filled_quantity")) == paper_orders
    assert all(o.ib_order_id for o in Order.objects.filter(status="filled", broker="ib"))
    assert Fill.objects.filter(exec_id__startswith="paper-").count() == 0
    assert "orders" in summary
