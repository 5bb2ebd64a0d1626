from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from apps.analytics import pricing

ATM = {"spot": Decimal(100), "strike": Decimal(100), "t_years": 1.0, "sigma": Decimal("0.2"), "rate": Decimal("0.05")}


def test_call_price_and_greeks_match_the_textbook_values():
    g = pricing.greeks(right="C", **ATM)
    assert g.price == Decimal("10.4506")
    assert abs(g.delta - Decimal("0.6368")) < Decimal("0.00005")
    assert abs(g.gamma - Decimal("0.01876")) < Decimal("0.000005")
    assert abs(g.vega - Decimal("0.3752")) < Decimal("0.00005")
    # Theta per calendar day: -6.414 a year for this call.
    assert abs(g.theta - Decimal("-6.4140") / 365) < Decimal("0.0001")


def test_put_price_matches_the_textbook_value_and_put_call_parity():
    put = pricing.greeks(right="P", **ATM)
    call = pricing.greeks(right="C", **ATM)
    assert put.price == Decimal("5.5735")
    assert abs(put.delta - (call.delta - 1)) < Decimal("0.000002")
    assert put.gamma == call.gamma and put.vega == call.vega


def test_expired_option_is_worth_its_intrinsic_value_with_guarded_greeks():
    g = pricing.greeks(spot=Decimal(105), strike=Decimal(100), t_years=0.0, sigma=Decimal("0.2"), right="C")
    assert g.price == Decimal("5.0000")
    assert g.delta == Decimal(1)
    assert g.gamma == 0 and g.vega == 0 and g.theta == 0
    otm_put = pricing.greeks(spot=Decimal(105), strike=Decimal(100), t_years=0.0, sigma=Decimal("0.2"), right="P")
    assert otm_put.price == 0 and otm_put.delta == 0


def test_zero_volatility_gives_intrinsic_value_instead_of_dividing_by_zero():
    g = pricing.greeks(spot=Decimal(95), strike=Decimal(100), t_years=0.5, sigma=0, right="P")
    assert g.price == Decimal("5.0000")
    assert g.delta == Decimal(-1)


def test_implied_volatility_recovers_the_volatility_that_priced_the_option():
    for right, quoted in (("C", Decimal("10.4506")), ("P", Decimal("5.5735"))):
        iv = pricing.implied_volatility(
            option_price=quoted, spot=Decimal(100), strike=Decimal(100), t_years=1.0, right=right, rate=Decimal("0.05")
        )
        assert iv is not None and abs(iv - Decimal("0.2")) < Decimal("0.0001")


def test_implied_volatility_is_none_below_intrinsic_value():
    iv = pricing.implied_volatility(
        option_price=Decimal("4"), spot=Decimal(105), strike=Decimal(100), t_years=0.1, right="C"
    )
    assert iv is None


def test_time_to_expiry_counts_to_the_options_close_at_16_15_new_york():
    # 2026-11-20 16:00 New York is 21:00 UTC; the options close 15 minutes later.
    t = pricing.years_to_expiry(as_of=datetime(2026, 11, 20, 21, 0, tzinfo=UTC), expiry=date(2026, 11, 20))
    assert t == pytest.approx(15 * 60 / pricing.SECONDS_PER_YEAR)
    assert pricing.years_to_expiry(as_of=datetime(2026, 11, 20, 21, 30, tzinfo=UTC), expiry=date(2026, 11, 20)) == 0


def test_time_to_expiry_follows_an_early_close():
    # The day after Thanksgiving 2026 closes at 13:00 New York (18:00 UTC): options stop at 13:15.
    t = pricing.years_to_expiry(as_of=datetime(2026, 11, 27, 18, 0, tzinfo=UTC), expiry=date(2026, 11, 27))
    assert t == pytest.approx(15 * 60 / pricing.SECONDS_PER_YEAR)


def test_rejects_an_unknown_right():
    with pytest.raises(ValueError):
        pricing.greeks(right="X", **ATM)
