from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.core import clock, money, occ
from apps.core.events import Envelope, deterministic_id


def test_parses_the_reference_example():
    sym = occ.parse("SPY261127C00600000")
    assert (sym.root, sym.expiry, sym.right, sym.strike) == ("SPY", date(2026, 11, 27), "C", Decimal("600"))


def test_half_strikes_round_trip():
    assert occ.parse("IWM261120P00238500").strike == Decimal("238.5")
    assert occ.build("IWM", date(2026, 11, 20), "P", Decimal("238.5")) == "IWM261120P00238500"


@pytest.mark.parametrize("bad", ["", "SPY", "SPY261127X00600000", "SPY261327C00600000", "spy26112C0060000"])
def test_rejects_malformed_symbols(bad):
    with pytest.raises(occ.InvalidOptionSymbol):
        occ.parse(bad)


@given(
    root=st.sampled_from(["SPY", "QQQ", "IWM", "BRK.B"]),
    expiry=st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)),
    right=st.sampled_from(["C", "P"]),
    strike_millis=st.integers(min_value=0, max_value=99_999_999),
)
def test_build_then_parse_is_identity(root, expiry, right, strike_millis):
    strike = Decimal(strike_millis) / 1000
    parsed = occ.parse(occ.build(root, expiry, right, strike))
    assert (parsed.root, parsed.expiry, parsed.right, parsed.strike) == (root, expiry, right, strike)


def test_simulated_clock_only_moves_forward_and_wall_clock_returns():
    start = datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
    with clock.simulated(start):
        assert clock.now() == start
        clock.advance_to(start + timedelta(minutes=5))
        clock.advance_to(start + timedelta(minutes=1))
        assert clock.now() == start + timedelta(minutes=5)
    assert abs((clock.now() - datetime.now(UTC)).total_seconds()) < 5


def test_to_decimal_accepts_strings_ints_and_floats_exactly():
    assert money.to_decimal("0.10") == Decimal("0.10")
    assert money.to_decimal(0.1) == Decimal("0.1")
    assert money.to_decimal(3) == Decimal(3)
    with pytest.raises(money.InvalidAmount):
        money.to_decimal("abc")
    with pytest.raises(money.InvalidAmount):
        money.to_decimal(float("nan"))
    assert money.premium(Decimal("1.25"), 2) == Decimal("250.00")


def test_envelope_ids_are_deterministic():
    a = Envelope(kind="analytics.snapshot", schema_version=1, payload={"x": Decimal("1.5")})
    b = Envelope(kind="analytics.snapshot", schema_version=1, payload={"x": Decimal("1.5")})
    assert a.id == b.id and a.to_dict()["schema_version"] == 1
    assert deterministic_id("a", 1) == deterministic_id("a", 1) != deterministic_id("a", 2)
