"""The domain's one judgement of a price and of an amount of cash, exact at any size of the user's number."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tradesim.domain.money import cash_error, places, price_error


@pytest.mark.parametrize(("text", "expected"), [
    ("100.000", 0), ("1.50", 1), ("1E+30", 0), ("0E-9", 0), ("-0.0001", 4), ("1.23456", 5),
    ("12345678901234567890123456789012.5", 1)])  # 33 digits: past the context's 28, still exact
def test_places_counts_digits_after_the_point_without_trailing_zeros(text: str, expected: int) -> None:
    assert places(Decimal(text)) == expected


@pytest.mark.parametrize(("text", "says"), [
    ("1e30", "at most 1000000"), ("1e100000", "at most 1000000"), ("1000000.0001", "at most 1000000"),
    ("0.00001", "at most 4 decimal places"), ("0", "positive"), ("-1", "positive"), ("NaN", "positive"),
    ("Infinity", "positive"), ("1000000.000000", None), ("0.0001", None), ("1E+2", None)])
def test_price_error_says_why_or_nothing(text: str, says: str | None) -> None:
    error = price_error(Decimal(text))
    assert error is None if says is None else says in (error or "")


@pytest.mark.parametrize(("text", "ok"), [
    ("1e26", False), ("1e100", False), ("1" + "0" * 15, False), ("2.505", False), ("-0.01", False), ("sNaN", False),
    ("999999999999999.99", True), ("1e14", True), ("-0", True), ("2.500", True)])
def test_cash_error_accepts_what_an_account_takes(text: str, ok: bool) -> None:
    assert (cash_error(Decimal(text)) is None) == ok


@pytest.mark.parametrize(("text", "value"), [
    ("185.50", Decimal("185.50")), ("1e5", Decimal("1e5")), (" 5 ", Decimal(5)), ("-0.5", Decimal("-0.5")),
    (".5", Decimal("0.5")), ("5.", Decimal(5)),
    # a probe: the CLI and scenario files took these as numbers, where the API refuses them
    ("1_000", None), ("1_85.50", None), ("٣", None), ("１２", None), ("NaN", None), ("Infinity", None), ("", None),
    ("1.2.3", None), ("0x10", None),
])
def test_a_plain_decimal_is_ascii_digits_a_point_a_sign_or_an_exponent(text: str, value: Decimal | None) -> None:
    from tradesim.domain.money import plain_decimal

    assert plain_decimal(text) == value


@pytest.mark.parametrize(("text", "price_says", "cash_ok"), [
    ("1e99999999999999999999", "at most 1000000", False), ("1e1000000000000000000", "at most 1000000", False),
    ("-1e1000000000000000000", "positive", False),
    pytest.param("2.5e" + "9" * 5000, "at most 1000000", False, id="5000-digit-exponent"),  # past int()'s 4,300
    ("1e-99999999999999999999", "at most 4 decimal places", False), ("0e99999999999999999999", "positive", True)])
def test_a_plain_decimal_past_decimals_exponent_range_is_refused_as_out_of_bounds(text: str, price_says: str,
                                                                                 cash_ok: bool) -> None:
    """A probe: an exponent Decimal cannot hold (past about 10**18) raised decimal.InvalidOperation, a traceback in
    `accounts create --cash`, `order --limit` and `scenarios validate`; 1e999999999999999999 was refused."""
    from tradesim.domain.money import plain_decimal

    value = plain_decimal(text)
    assert value is not None
    assert price_says in (price_error(value) or "")
    assert (cash_error(value) is None) == cash_ok
