"""``manage.py bench dashboard``: the dashboard's reads timed over empty and filled tick tables, written as JSON."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from apps.ingestion.models import FlowAlert, OptionTrade
from apps.ops.bench import ENDPOINTS, TICK_SHARES, tick_row_counts
from apps.ops.models import Alert

REQUESTS = ("dashboard_data", "dashboard_page", "changelist_option_trades", "changelist_flow_alerts", "metrics")


def test_refuses_to_wipe_a_database_it_was_not_told_is_scratch(requires_real_services):
    with pytest.raises(CommandError, match="pass --scratch"):
        call_command("bench", "dashboard", "--rows", "10", stdout=StringIO())


def test_refuses_nonsense_sizes_before_touching_anything(requires_real_services):
    with pytest.raises(CommandError, match="must be positive"):
        call_command("bench", "dashboard", "--rows", "0", "--scratch", stdout=StringIO())


def test_tick_rows_follow_the_option_trades_in_proportion():
    assert tick_row_counts(1_000_000) == {
        "uw_option_trades": 1_000_000,
        "uw_flow_alerts": 100_000,
        "uw_raw_frames": 250_000,
        "ib_quotes": 500_000,
        "analytics_snapshots": 50_000,
    }
    assert min(tick_row_counts(1).values()) == 1


@pytest.mark.django_db(transaction=True)
def test_bench_dashboard_times_every_endpoint_empty_and_filled(tmp_path, requires_real_services):
    out = StringIO()
    call_command(
        "bench",
        "dashboard",
        "--scratch",
        "--rows",
        "2000",
        "--repeat",
        "3",
        "--warmup",
        "1",
        "--count-repeat",
        "1",
        "--quiet",
        "--json",
        str(tmp_path / "b.json"),
        stdout=out,
    )

    result = json.loads((tmp_path / "b.json").read_text())
    assert result["config"]["tick_rows"] == tick_row_counts(2000)
    assert result["config"]["small_tick_rows"] == tick_row_counts(2000)  # --rows below SMALL_ROWS: small is all
    for phase in ("empty", "small", "large", "empty_after"):
        assert set(result[phase]) == set(ENDPOINTS)
        for figures in result[phase].values():
            assert figures["n"] == 3
            assert 0 < figures["median_ms"] <= figures["p95_ms"] <= figures["max_ms"]
        assert result[phase]["select_1"]["queries"] == 1
        # every request reads the database (session, user, its panels): a zero would mean nothing was counted
        assert all(result[phase][name]["queries"] > 0 for name in REQUESTS)
    # The claim the benchmark checks at size: the same queries over filled tables as over empty ones.
    for name in ENDPOINTS:
        assert result["large"][name]["queries"] == result["empty"][name]["queries"], name
        for ratios in ("ratio_large_to_empty", "ratio_large_to_small"):
            assert result[ratios][name]["queries"] == 0 and result[ratios][name]["median"] > 0
    # PostgreSQL's blocks per request do not depend on the machine's load: the dashboard's reads touch no tick table
    # (the same blocks empty and filled); a list touches the same blocks at both filled sizes.
    for name in ("snapshot_direct", "dashboard_data", "dashboard_page", "metrics"):
        assert {result[phase][name]["db_blocks"] for phase in ("empty", "small", "large", "empty_after")} == {
            result["empty"][name]["db_blocks"]
        }, name
    for name in ("changelist_option_trades", "changelist_flow_alerts"):
        assert result["large"][name]["db_blocks"] == result["small"][name]["db_blocks"] > 0, name
    counts = result["naive_count_ms"]
    assert (counts["empty"]["rows"], counts["small"]["rows"], counts["large"]["rows"]) == (0, 2000, 2000)
    assert set(result["fill_seconds"]) == {*TICK_SHARES, "total"}
    assert result["machine"]["postgres"].startswith("PostgreSQL")

    text = out.getvalue()
    assert "changelist_option_trades" in text and "avoided: a naive COUNT(*) of uw_option_trades at 2,000 rows" in text
    # The last phase left the tick tables empty again; the operator's world is still there.
    assert not OptionTrade.objects.exists() and not FlowAlert.objects.exists()
    assert Alert.objects.filter(acknowledged_at__isnull=True).count() == 25
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM trades WHERE status = 'open'")
        assert cursor.fetchone()[0] == 40
