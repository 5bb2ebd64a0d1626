"""``manage.py bench distribution``: post lateness per tier through a real worker and beat."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.distribution.models import DistributionPost

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_bench_distribution_reports_lateness_per_tier_beside_a_direct_send(tmp_path, requires_real_services):
    out = StringIO()
    call_command(
        "bench",
        "distribution",
        "--posts",
        "6",
        "--rate",
        "2",
        "--tiers",
        "premium:0,free:2",
        "--scratch",
        "--json",
        str(tmp_path / "b.json"),
        stdout=out,
    )

    result = json.loads((tmp_path / "b.json").read_text())
    assert set(result["tiers"]) == {"premium", "free"}
    for tier in result["tiers"].values():
        assert tier["lateness_ms"]["n"] == 6 and tier["early"] == 0
        assert 0 <= tier["lateness_ms"]["p50"] <= tier["lateness_ms"]["p99"]
    assert result["baseline_direct_send_ms"]["n"] == 100
    assert "premium    +  0 s  lateness p50" in out.getvalue()
    assert DistributionPost.objects.filter(status="sent").count() == 12


def test_bench_distribution_refuses_bad_tiers():
    with pytest.raises(CommandError, match="--tiers must look like"):
        call_command("bench", "distribution", "--tiers", "premium:soon", "--scratch")
