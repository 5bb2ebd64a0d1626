"""``bench pipeline`` measures a real Celery pipeline (worker processes, Redis broker, PostgreSQL) and writes JSON."""

from __future__ import annotations

import json
from datetime import date

import pytest
from django.core.management import CommandError, call_command

from apps.core.bench import describe, percentile


def test_percentiles_interpolate_between_ranks():
    samples = [float(x) for x in range(1, 101)]
    assert percentile(samples, 50) == pytest.approx(50.5)
    assert percentile(samples, 99) == pytest.approx(99.01)
    assert describe([3.0, 1.0, 2.0])["p50"] == 2.0


def test_refuses_to_wipe_a_database_it_was_not_told_is_scratch(requires_real_services):
    with pytest.raises(CommandError, match="pass --scratch"):
        call_command("bench", "pipeline", stdout=open("/dev/null", "w"))


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_bench_pipeline_measures_orders_and_a_bare_chain_through_real_workers(requires_real_services, tmp_path):
    out = tmp_path / "bench.json"
    call_command(
        "bench",
        "pipeline",
        "--scratch",
        "--day",
        date(2026, 11, 20).isoformat(),
        "--window-minutes",
        "10",
        "--speedup",
        "40",  # the ten minutes sent in 15 s; this seed's window still gives 7 entry orders
        "--bare-chains",
        "20",
        "--json",
        str(out),
        stdout=open("/dev/null", "w"),
    )
    result = json.loads(out.read_text())
    assert result["bare_chain_ms"]["n"] == 20
    assert result["pipeline_ms"]["n"] == result["entry_orders"] > 0
    for key in ("p50", "p99"):
        assert 0 < result["bare_chain_ms"][key] <= result["bare_chain_ms"]["max"]
        assert 0 < result["pipeline_ms"][key] <= result["pipeline_ms"]["max"]
    assert result["frames_sent"] > 0
