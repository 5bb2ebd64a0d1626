"""Drift detection: fingerprints learned silently, new / missing / re-typed fields reported once, the per-process cache
converging through the database, acknowledgement, the Redis open count and the admin."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import transaction
from django.urls import reverse

from apps.ingestion import drift
from apps.ingestion.models import DriftEvent, FieldFingerprint
from apps.ops.models import AuditLog
from tests.ingestion import frames

pytestmark = pytest.mark.django_db

BASELINE = drift.BASELINE_PAYLOADS
Observe = Callable[[str, Sequence[Mapping[str, Any]]], list[DriftEvent]]


@pytest.fixture(autouse=True)
def _fresh_cache():
    drift.reset_cache()
    yield
    drift.reset_cache()


@pytest.fixture
def observe(django_capture_on_commit_callbacks) -> Observe:
    """``drift.observe`` as a caller outside a transaction sees it: the commit hooks (cache, log, Redis) run."""

    def run(stream: str, payloads: Sequence[Mapping[str, Any]]) -> list[DriftEvent]:
        with django_capture_on_commit_callbacks(execute=True):
            return drift.observe(stream, payloads)

    return run


def trades(count: int, **overrides: Any) -> list[dict[str, Any]]:
    return [frames.option_trade(**overrides) for _ in range(count)]


def prices(count: int, **overrides: Any) -> list[dict[str, Any]]:
    return [frames.price(**overrides) for _ in range(count)]


def without(payload: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if key != name}


def open_count(redis_store) -> dict[str, str]:
    return redis_store.hgetall(drift.OPEN_KEY)


def test_stream_names_follow_the_channel_family():
    assert drift.stream_for_channel("option_trades") == "ws:option_trades"
    assert drift.stream_for_channel("option_trades:SPY") == "ws:option_trades"
    assert drift.stream_for_channel("price:T") == "ws:price"
    assert drift.stream_for_channel("flow-alerts") == "ws:flow-alerts"
    assert drift.stream_for_endpoint("flow_alerts") == "rest:flow_alerts"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1.5", "string"),
        (1, "number"),
        (1.5, "number"),
        (True, "boolean"),
        (None, "null"),
        ([], "array"),
        ({}, "object"),
    ],
)
def test_json_types_put_ints_and_floats_together_and_booleans_apart(value, expected):
    assert drift.json_type(value) == expected


def test_baseline_learns_the_fingerprint_silently(observe, caplog):
    batch = trades(BASELINE // 2) + [frames.option_trade(tags=None)] + trades(BASELINE // 2)
    batch[3] = without(batch[3], "rho")

    with caplog.at_level(logging.WARNING, logger="apps.ingestion.drift"):
        assert observe("ws:option_trades", batch[:50]) == []
        assert observe("ws:option_trades", batch[50:]) == []

    fingerprint = FieldFingerprint.objects.get(stream="ws:option_trades")
    assert fingerprint.payloads_seen == len(batch)
    assert fingerprint.fields["price"] == ["string"]
    assert fingerprint.fields["size"] == ["number"]
    assert fingerprint.fields["tags"] == ["array", "null"]
    assert "rho" in fingerprint.fields and "rho" not in fingerprint.required
    assert "option_symbol" in fingerprint.required
    assert not DriftEvent.objects.exists()
    assert not caplog.records


def test_a_first_batch_larger_than_the_baseline_is_all_baseline(observe):
    batch = trades(BASELINE) + trades(10, extra_field="x")
    assert observe("ws:option_trades", batch) == []
    assert "extra_field" in FieldFingerprint.objects.get(stream="ws:option_trades").fields
    assert not DriftEvent.objects.exists()


def test_new_field_is_one_event_with_a_sample_reported_once_and_counted(observe, caplog, redis_store):
    observe("ws:option_trades", trades(BASELINE))
    first = trades(5) + trades(3, premium_currency="USD")

    with caplog.at_level(logging.WARNING, logger="apps.ingestion.drift"):
        events = observe("ws:option_trades", first)
        assert observe("ws:option_trades", trades(4, premium_currency="USD") + trades(2)) == []
        drift.flush()

    assert [(e.kind, e.field, e.expected, e.observed) for e in events] == [
        ("new_field", "premium_currency", "absent", "string")
    ]
    event = DriftEvent.objects.get()
    assert event.sample is not None and event.sample["premium_currency"] == "USD"
    assert event.sample["id"] == first[5]["id"]
    assert event.occurrences == 3 + 4
    assert event.acknowledged_at is None
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["UW drift on ws:option_trades: new_field premium_currency (expected absent, observed string)"]
    assert "premium_currency" in FieldFingerprint.objects.get(stream="ws:option_trades").fields
    assert open_count(redis_store) == {"total": "1", "ws:option_trades|new_field": "1"}


def test_missing_required_field_is_reported(observe, caplog):
    observe("ws:price", prices(BASELINE))

    with caplog.at_level(logging.WARNING, logger="apps.ingestion.drift"):
        events = observe("ws:price", prices(10) + [without(frames.price(), "vol") for _ in range(3)])
        observe("ws:price", [without(frames.price(), "vol")])
        drift.flush()

    assert [(e.kind, e.field, e.expected, e.observed) for e in events] == [
        ("missing_field", "vol", "present", "absent")
    ]
    event = DriftEvent.objects.get()
    assert event.occurrences == 4
    assert event.sample is not None and "vol" not in event.sample
    assert [r.getMessage() for r in caplog.records] == [
        "UW drift on ws:price: missing_field vol (expected present, observed absent)"
    ]


def test_decimal_string_becoming_a_number_is_a_retype_within_the_sampling_window(observe):
    observe("ws:price", prices(BASELINE))
    assert observe("ws:price", prices(drift.SAMPLE_EVERY // 2)) == []

    # Same shape as before, so only the 1-in-SAMPLE_EVERY type check can see it.
    events = observe("ws:price", prices(drift.SAMPLE_EVERY, close=661.9))

    assert [(e.kind, e.field, e.expected, e.observed) for e in events] == [
        ("retyped_field", "close", "string", "number")
    ]
    assert events[0].sample is not None and events[0].sample["close"] == 661.9
    assert FieldFingerprint.objects.get(stream="ws:price").fields["close"] == ["number", "string"]
    # Reported once: the type is known now.
    assert observe("ws:price", prices(3 * drift.SAMPLE_EVERY, close=662.0)) == []
    assert DriftEvent.objects.count() == 1


def test_price_on_option_trades_retyped_from_decimal_string_to_number(observe):
    observe("ws:option_trades", trades(BASELINE))
    events = observe("ws:option_trades", trades(drift.SAMPLE_EVERY, price=3.91))
    assert [(e.kind, e.field, e.expected, e.observed) for e in events] == [
        ("retyped_field", "price", "string", "number")
    ]


def test_a_new_shape_has_its_types_checked_at_once(observe):
    observe("ws:price", prices(BASELINE))
    observe("ws:price", prices(1))  # the sample slot of this window is taken
    reordered = {"time": 1, "close": 661.9, "vol": 5, "ticker": "SPY"}
    events = observe("ws:price", [reordered])
    assert [(e.kind, e.field) for e in events] == [("retyped_field", "close")]


def test_null_to_a_type_and_back_is_not_drift(observe):
    observe("ws:option_trades", trades(BASELINE, delta=None))  # always null so far
    window = 2 * drift.SAMPLE_EVERY
    assert observe("ws:option_trades", trades(window, delta="0.51")) == []  # null -> a type
    assert observe("ws:option_trades", trades(window, price=None)) == []  # a type -> null
    assert not DriftEvent.objects.exists()
    fields = FieldFingerprint.objects.get(stream="ws:option_trades").fields
    assert fields["delta"] == ["null", "string"]
    assert fields["price"] == ["null", "string"]


def test_int_and_float_are_the_same_type(observe):
    observe("ws:flow-alerts", [frames.flow_alert(total_premium=145645) for _ in range(BASELINE)])
    window = 2 * drift.SAMPLE_EVERY
    assert observe("ws:flow-alerts", [frames.flow_alert(total_premium=1.5) for _ in range(window)]) == []
    assert not DriftEvent.objects.exists()


def test_processes_converge_through_the_database(observe, caplog):
    observe("ws:option_trades", trades(BASELINE))
    drift.reset_cache()  # a second worker process: nothing cached, reads the fingerprint
    assert FieldFingerprint.objects.get(stream="ws:option_trades").payloads_seen == BASELINE
    assert observe("ws:option_trades", trades(5)) == []

    with caplog.at_level(logging.WARNING, logger="apps.ingestion.drift"):
        assert len(observe("ws:option_trades", trades(2, sweep_id="s"))) == 1
        drift.reset_cache()  # a third process sees the new field as known and the event as open
        assert observe("ws:option_trades", trades(3, sweep_id="s")) == []
        drift.flush()

    assert DriftEvent.objects.get().occurrences == 5
    assert len(caplog.records) == 1


def test_two_processes_learning_at_once_merge_their_fingerprints(observe):
    observe("rest:flow_alerts", [{"id": 1, "ticker": "SPY", "note": None}] * 50)
    drift.reset_cache()
    observe("rest:flow_alerts", [{"id": 2, "ticker": "QQQ", "note": "x"}] * 50)
    fingerprint = FieldFingerprint.objects.get(stream="rest:flow_alerts")
    assert fingerprint.payloads_seen == 100
    assert fingerprint.fields == {"id": ["number"], "ticker": ["string"], "note": ["null", "string"]}


def test_a_process_with_a_stale_cache_does_not_report_twice(observe):
    observe("ws:price", prices(BASELINE))
    stale = dict(drift._cache())
    assert len(observe("ws:price", prices(2, halted=False))) == 1
    drift._cache().clear()
    drift._cache().update(stale)  # another process that has not refreshed yet
    stale["ws:price"].keys.clear()
    stale["ws:price"].fields.pop("halted", None)
    assert observe("ws:price", prices(2, halted=False)) == []
    assert DriftEvent.objects.get().occurrences == 4


def test_acknowledge_closes_events_and_updates_the_open_count(observe, redis_store, django_capture_on_commit_callbacks):
    observe("ws:price", prices(BASELINE))
    observe("ws:price", [without(frames.price(), "vol"), frames.price(extra=1)])
    assert open_count(redis_store) == {"total": "2", "ws:price|missing_field": "1", "ws:price|new_field": "1"}
    assert drift.drift_summary() == {"open": 2, "streams": {"ws:price": {"missing_field": 1, "new_field": 1}}}
    missing = DriftEvent.objects.get(kind="missing_field")

    with django_capture_on_commit_callbacks(execute=True):
        assert drift.acknowledge(event_ids=[missing.id], user="ops") == 1
    with django_capture_on_commit_callbacks(execute=True):
        assert drift.acknowledge(event_ids=[missing.id], user="ops") == 0

    missing.refresh_from_db()
    assert missing.acknowledged_by == "ops" and missing.acknowledged_at is not None
    assert open_count(redis_store) == {"total": "1", "ws:price|new_field": "1"}
    assert [e.kind for e in drift.open_drift_events()] == ["new_field"]
    assert "vol" not in FieldFingerprint.objects.get(stream="ws:price").required  # accepted as optional
    assert observe("ws:price", [without(frames.price(), "vol")]) == []
    assert AuditLog.objects.get().action == "ingestion.drift_acknowledge"


def test_admin_lists_drift_events_and_acknowledges_them(observe, admin_client, django_capture_on_commit_callbacks):
    observe("ws:price", prices(BASELINE))
    observe("ws:price", [frames.price(extra=1)])
    event = DriftEvent.objects.get()
    url = reverse("admin:ingestion_driftevent_changelist")

    page = admin_client.get(url)
    assert page.status_code == 200
    assert b"Acknowledge selected drift events" in page.content
    detail = admin_client.get(reverse("admin:ingestion_driftevent_change", args=[event.pk]))
    assert detail.status_code == 200 and b'name="_save"' not in detail.content

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, {"action": "acknowledge_selected", "_selected_action": [event.pk]})
    assert response.status_code == 302
    event.refresh_from_db()
    assert event.acknowledged_by == "admin" and event.acknowledged_at is not None


def test_admin_refuses_to_acknowledge_without_the_change_permission(observe, client):
    observe("ws:price", prices(BASELINE))
    observe("ws:price", [frames.price(extra=1)])
    event = DriftEvent.objects.get()
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_driftevent"))
    client.force_login(viewer)
    url = reverse("admin:ingestion_driftevent_changelist")

    page = client.get(url)
    assert page.status_code == 200
    assert b"Acknowledge selected drift events" not in page.content
    client.post(url, {"action": "acknowledge_selected", "_selected_action": [event.pk]})

    event.refresh_from_db()
    assert event.acknowledged_at is None
    assert client.get(reverse("admin:ingestion_driftevent_change", args=[event.pk])).status_code == 200


def test_a_rolled_back_batch_is_examined_again_on_its_retry(observe, django_capture_on_commit_callbacks):
    observe("ws:price", prices(BASELINE))

    class Retry(Exception):
        """The batch's transaction failing after drift was observed in it."""

    with pytest.raises(Retry), django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        assert len(drift.observe("ws:price", prices(2, halted=False))) == 1
        raise Retry

    assert not DriftEvent.objects.exists()
    assert len(observe("ws:price", prices(2, halted=False))) == 1
    assert DriftEvent.objects.get().occurrences == 2


def test_odd_payloads_never_break_the_caller(observe):
    observe("rest:option_chains", [{"symbol": "SPY261120C00600000"}] * BASELINE)
    odd: list[Any] = ["SPY261120C00600000", [{"a": 1}], {"symbol": "x\x00y", "bad\x00name": 1, "note": "\x00"}]
    events = observe("rest:option_chains", odd)
    assert sorted(e.field for e in events) == ["note"]
    assert DriftEvent.objects.get().sample == {"symbol": "x\ufffdy", "bad\ufffdname": 1, "note": "\ufffd"}
