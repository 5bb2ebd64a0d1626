"""Property: whatever the lines, every one is accepted, a duplicate or quarantined, exactly once."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.ingestion.models import QuarantinedFrame
from apps.ingestion.services import ingest_lines
from tests.ingestion import frames

pytestmark = pytest.mark.django_db

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
channels = st.sampled_from(
    ["flow-alerts", "option_trades", "option_trades:SPY", "price:SPY", "gex:QQQ", "gex_strike:IWM", "news", "bogus"]
)
valid_lines = st.sampled_from(
    [
        frames.line("price:SPY", frames.price()),
        frames.line("option_trades:SPY", frames.option_trade(id="fixed-trade")),
        frames.line("flow-alerts", frames.flow_alert(id="fixed-alert")),
        frames.line("gex:SPY", frames.gex()),
        frames.line("news", frames.news()),
        frames.join_ack("price:SPY"),
    ]
)


@st.composite
def framed_junk(draw):
    """Lines with the right envelope but arbitrary payloads, fields mutated to junk, or odd receive times."""
    channel = draw(channels)
    base = draw(st.sampled_from([frames.price(), frames.option_trade(), frames.flow_alert(), frames.gex(), {}]))
    payload = dict(base)
    for key in draw(st.lists(st.sampled_from(sorted(base) or ["x"]), max_size=3)):
        payload[key] = draw(json_values)
    received_at = draw(st.one_of(st.just(frames.RECEIVED_MS), json_scalars))
    return orjson.dumps({"received_at": received_at, "frame": [channel, payload]}).decode()


tricky_lines = st.sampled_from(
    [
        "",
        " ",
        "NaN",
        "[]",
        "null",
        '{"received_at": NaN, "frame": ["price:SPY", {}]}',
        '{"received_at": 1e400, "frame": ["price:SPY", {}]}',
        '{"received_at": 1795185060000, "frame": ["price:SPY", {"close": 1e308, "time": 1795185000000}]}',
        '{"received_at": 1795185060000, "frame": ["price:SPY", {"close": "1", "time": 99999999999999999999}]}',
        '{"received_at": 1795185060000, "frame": ["option_trades", {"id": "x", "option_symbol": "SPY261120C00600000",'
        ' "price": "1", "size": 18446744073709551615, "executed_at": 1795185000000}]}',
        '{"received_at": 1795185060000, "frame": ["price:SPY", {"close": "1", "time": 1795185000000, "x": "\\u0000"}]}',
        '{"received_at": 1795185060000, "frame": ["price:' + "S" * 300 + '", {}]}',
        '{"received_at": 1795185060000, "frame": ["' + "x" * 300 + '", {}]}',
        '{"received_at": 1795185060000, "frame": ["price:SPY", {"close": "1", "time": 1795185000000}], "extra": 1}',
    ]
)
junk_text = st.text(max_size=60) | st.binary(max_size=30).map(lambda b: b.decode("latin-1"))
json_junk = json_values.map(lambda value: orjson.dumps(value).decode())
any_line = st.one_of(valid_lines, framed_junk(), tricky_lines, junk_text, json_junk)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(any_line, max_size=25))
def test_every_line_is_accepted_duplicate_or_quarantined_exactly_once(lines):
    raw_before = frames.archived_frames()
    result = ingest_lines(lines=lines, source="property")
    assert result.accepted + result.duplicates + result.quarantined == len(lines)
    assert frames.archived_frames() - raw_before == result.accepted
    assert sum(result.by_channel.values()) == result.accepted
    assert sum(result.quarantine_reasons.values()) == result.quarantined
    assert QuarantinedFrame.objects.count() >= (1 if result.quarantined else 0)
