"""``manage.py bench orders``: decision to booked fill on the paper broker, IB direct and IB through ib_listener."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from apps.execution.models import Order

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_bench_orders_times_every_path_and_compares_it_with_the_paper_broker(tmp_path, requires_real_services):
    out = StringIO()
    call_command("bench", "orders", "--orders", "4", "--scratch", "--json", str(tmp_path / "b.json"), stdout=out)

    result = json.loads((tmp_path / "b.json").read_text())
    figures = result["decision_to_booked_fill_ms"]
    assert set(figures) == {"paper", "ib_direct", "ib_listener"}
    assert all(f["n"] == 4 and 0 < f["p50"] <= f["p99"] for f in figures.values())
    assert set(result["ratio_to_paper"]) == {"ib_direct", "ib_listener"}
    assert "ib_listener  decision -> booked fill" in out.getvalue()
    # the last path's orders are still in the database: each filled, through IB
    assert Order.objects.filter(status="filled", broker="ib").count() == 4
