"""The admin lists of the tick tables stay cheap however big the tables get: a bounded count for the paginator and no
full count, payload columns left out of the list's SELECT, and the same number of queries for 3 rows or 60."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib import admin
from django.db import connection, models
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.analytics.models import AnalyticsSnapshot
from apps.core import clock, lean_admin
from apps.core.lean_admin import COUNT_CAP, BoundedCountPaginator, LeanListAdmin
from apps.ingestion.models import OptionTrade, RawBatch, RawFrame, RestPayload
from tests.ops.dashboard_seed import TICK_TABLES

pytestmark = pytest.mark.django_db


def _tick_admins() -> list[tuple[type[models.Model], admin.ModelAdmin]]:
    return [
        (model, model_admin)
        for model, model_admin in admin.site._registry.items()
        if model._meta.db_table in TICK_TABLES
    ]


def test_every_tick_table_admin_is_lean_and_keeps_payloads_out_of_its_list():
    admins = _tick_admins()
    assert {model._meta.db_table for model, _ in admins} >= {"uw_raw_frames", "uw_rest_payloads", "analytics_snapshots"}
    for model, model_admin in admins:
        name = model.__name__
        assert isinstance(model_admin, LeanListAdmin), name
        assert model_admin.show_full_result_count is False, name
        assert model_admin.paginator is BoundedCountPaginator, name
        assert not model_admin.date_hierarchy, name
        payloads = {f.name for f in model._meta.fields if isinstance(f, models.JSONField | models.BinaryField)}
        assert payloads <= set(model_admin.list_defer), (name, payloads)
        assert not payloads & set(model_admin.list_display), name
        for entry in model_admin.list_display:
            field = next((f for f in model._meta.fields if f.name == entry), None)
            assert not (field and field.is_relation), f"{name}.{entry}: a foreign key in a list queries per row"
        for entry in model_admin.list_filter:
            if isinstance(entry, str):
                assert model._meta.get_field(entry).choices, f"{name}: list_filter {entry} runs SELECT DISTINCT"


def _seed(rows: int, start: int) -> None:
    now = clock.now()
    RawFrame.objects.bulk_create(
        RawFrame(frame_hash=f"f{start + i}", channel="news", received_at=now, payload={"big": "x" * 2000})
        for i in range(rows)
    )
    RestPayload.objects.bulk_create(
        RestPayload(endpoint="flow_alerts", path="/api/x", status=200, body={"data": [1] * 500}, requested_at=now)
        for _ in range(rows)
    )
    RawBatch.objects.bulk_create(
        RawBatch(channel="option_trades", first_received_at=now, last_received_at=now, frames=3, lines_zlib=b"z" * 999)
        for _ in range(rows)
    )
    OptionTrade.objects.bulk_create(
        OptionTrade(
            uw_id=f"t{start + i}",
            ticker="SPY",
            option_symbol="SPY261126C00600000",
            expiry=now.date(),
            right="C",
            strike=Decimal("600"),
            price=Decimal("1.2"),
            size=1,
            premium=Decimal("120"),
            tags=["sweep"],
            executed_at=now,
        )
        for i in range(rows)
    )
    AnalyticsSnapshot.objects.bulk_create(
        AnalyticsSnapshot(
            ticker="SPY",
            bucket="0dte",
            as_of=now + timedelta(seconds=start + i),
            schema_version=1,
            features={"f": list(range(100))},
            confidence=Decimal("0.5"),
            created_at=now,
        )
        for i in range(rows)
    )


LISTS = {
    "admin:ingestion_rawframe_changelist": ("uw_raw_frames", ("payload",)),
    "admin:ingestion_restpayload_changelist": ("uw_rest_payloads", ("body", "body_text", "rate", "params")),
    "admin:ingestion_rawbatch_changelist": ("uw_raw_batches", ("lines_zlib",)),
    "admin:ingestion_optiontrade_changelist": ("uw_option_trades", ("tags",)),
    "admin:analytics_analyticssnapshot_changelist": ("analytics_snapshots", ("features",)),
}


@pytest.mark.parametrize("url_name", sorted(LISTS))
def test_a_tick_table_list_counts_a_bounded_number_of_rows_selects_no_payload_and_queries_nothing_per_row(
    admin_client, url_name
):
    table, payload_columns = LISTS[url_name]
    _seed(3, start=0)
    admin_client.get(reverse(url_name))  # the session and the admin's caches warm up
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(reverse(url_name)).status_code == 200
    _seed(60, start=1000)
    with CaptureQueriesContext(connection) as many:
        page = admin_client.get(reverse(url_name))
    assert page.status_code == 200

    assert len(many.captured_queries) == len(few.captured_queries)
    on_table = [q["sql"] for q in many.captured_queries if f'"{table}"' in q["sql"]]
    counts = [sql for sql in on_table if "COUNT(" in sql.upper()]
    assert len(counts) == 1 and re.search(rf"LIMIT {COUNT_CAP + 1}\b", counts[0]), counts
    rows = [sql for sql in on_table if "COUNT(" not in sql.upper()]
    assert rows, on_table
    for sql in rows:
        for column in payload_columns:
            assert f'"{table}"."{column}"' not in sql, sql


def test_the_bounded_paginator_stops_counting_at_the_cap(monkeypatch):
    monkeypatch.setattr(lean_admin, "COUNT_CAP", 5)
    RawFrame.objects.bulk_create(
        RawFrame(frame_hash=f"c{i}", channel="news", received_at=clock.now(), payload={}) for i in range(12)
    )

    paginator = BoundedCountPaginator(RawFrame.objects.order_by("-id"), 2)

    assert paginator.count == 6 and paginator.num_pages == 3
    assert BoundedCountPaginator(RawFrame.objects.order_by("-id")[:3], 2).count == 3
