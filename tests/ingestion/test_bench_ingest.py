"""``bench ingest``: frames from the socket stand-in through a real listener and worker to committed rows."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from apps.ingestion.bench import histogram_percentile


def test_histogram_percentiles_interpolate_inside_a_bucket():
    # 10 lags in (0, 1], 10 in (7, 10]: the median is the top of the first bucket, p75 half-way through (7, 10].
    histogram = {"1": 10, "10": 10}
    assert histogram_percentile(histogram, 50) == pytest.approx(1.0)
    assert histogram_percentile(histogram, 75) == pytest.approx(8.5)
    assert histogram_percentile({"inf": 3}, 99) == 60000


def test_refuses_to_wipe_a_database_it_was_not_told_is_scratch(requires_real_services):
    with pytest.raises(CommandError, match="pass --scratch"):
        call_command("bench", "ingest", stdout=open("/dev/null", "w"))


@pytest.mark.django_db(transaction=True)
def test_bench_ingest_commits_every_frame_sent_and_writes_its_figures(requires_real_services, tmp_path):
    out = tmp_path / "bench-ingest.json"
    call_command(
        "bench",
        "ingest",
        "--scratch",
        "--quiet",
        "--frames",
        "2000",
        "--warmup-frames",
        "200",
        "--lag-rates",
        "2000",
        "--lag-seconds",
        "1",
        "--copy-repeats",
        "1",
        "--timeout",
        "60",
        "--json",
        str(out),
        stdout=open("/dev/null", "w"),
    )
    result = json.loads(out.read_text())
    for key in ("frames_per_s", "frames", "elapsed_s", "lag_ms", "copy_rows_per_s", "copy_ratio", "targets"):
        assert key in result, key
    assert result["frames"] == result["throughput"]["committed_rows"] == 2000
    assert result["frames_per_s"] > 0 and result["copy_rows_per_s"] > 0
    lag = result["lag_ms"]
    assert lag["rate"] == 2000 and lag["n"] == lag["frames"] == 2000
    assert 0 <= lag["p50"] <= lag["p99"]
    # Every frame the listener read was published (none dropped), and the worker's batches hold them all.
    listener = result["listener"]
    assert listener["dropped_frames"] == 0
    assert result["frames_sent_total"] == 200 + 2000 + 2000
    # the listener also counts the join acknowledgement as a frame read
    assert listener["frames"] == listener["frames_published"] >= result["frames_sent_total"]
    assert result["copy"]["rows"] == 2000
    assert {"cpus", "python", "postgres"} <= set(result["machine"])
