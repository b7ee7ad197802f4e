"""Money is Decimal, never float; quantities are ints."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

CENT = Decimal("0.01")
PRICE_QUANTUM = Decimal("0.0001")
#: a number as people write one: ASCII digits, a point, a sign, an exponent
_PLAIN = re.compile(r"(?P<digits>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:[eE](?P<exponent>[+-]?[0-9]+))?")
#: how far an exponent Decimal cannot hold (past about ±10**18) is read: still past every bound a caller checks
#: (a price's 1000000 and 4 places, cash's 15 digits), and inside Decimal's range whatever the digits before it
_EXPONENT_REACH = 10**15


def plain_decimal(text: str) -> Decimal | None:
    """The number `text` spells (spaces around it aside), or None. Python's Decimal also reads underscores and
    other scripts' digits, so a typo like `1_85.50` would be a price (the API refuses both). An exponent too far for
    Decimal is cut to ±10**15, so `1e99999999999999999999` is refused as too big, not a decimal.InvalidOperation."""
    text = text.strip()
    match = _PLAIN.fullmatch(text)
    if match is None:
        return None
    try:
        return Decimal(text)
    except InvalidOperation:  # only an exponent of 18 digits or more does this (not read by int(): 5,000 digits raise)
        reach = -_EXPONENT_REACH if match["exponent"].startswith("-") else _EXPONENT_REACH
        return Decimal(f"{match['digits']}e{reach}")


def to_decimal(value: object, field: str = "value") -> Decimal:
    """Parse a decimal from str/int/Decimal; floats are refused because they cannot hold cents exactly."""
    from tradesim.domain.errors import InvalidRecord

    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidRecord(field, f"must be a decimal string, not {type(value).__name__}")
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise InvalidRecord(field, f"not a decimal number: {value!r}") from None
    if not result.is_finite():
        raise InvalidRecord(field, f"not a finite number: {value!r}")
    return result


def round_cash(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


def cash_text(amount: Decimal) -> str:
    """A whole-cent amount of at least 0 as the API takes it: plain digits and cents (1E+6 is 1000000.00, 5.000 is
    5.00, -0 is 0.00)."""
    return f"{amount.copy_abs().quantize(CENT):f}"


def money_text(amount: Decimal) -> str:
    """A decimal as the API and the run reports write it: exact, plain notation, at least 2 places (`73.50`,
    `100.0125`, `0.00`). `str()` is not that: a P&L folded at 8 places that came out even reads `0E-8`."""
    whole, _, frac = format(abs(amount) if amount == 0 else amount, "f").partition(".")
    return f"{whole}.{frac.rstrip('0').ljust(2, '0')}"


def places(amount: Decimal) -> int:
    """Digits after the point, trailing zeros not counted (100.000 → 0, 1.50 → 1, 1E+30 → 0); exact at any size,
    where `quantize` raises past 28 digits."""
    _, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int) or not any(digits):
        return 0
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing))


def price_error(price: Decimal) -> str | None:
    """Why `price` cannot be an order's limit or stop price (the API's `MarketPrice`), or None when it can."""
    from tradesim.domain.events import MAX_PRICE, PRICE_PLACES

    if not price.is_finite() or price <= 0:
        return "must be a positive price"
    if price > MAX_PRICE:
        return f"must be at most {MAX_PRICE}"
    if places(price) > PRICE_PLACES:
        return f"has at most {PRICE_PLACES} decimal places"
    return None


def cash_error(amount: Decimal) -> str | None:
    """Why `amount` cannot be an account's starting cash (the API's cash pattern), or None when it can."""
    from tradesim.domain.events import CASH_DIGITS

    if not amount.is_finite() or amount < 0 or amount >= Decimal(10) ** CASH_DIGITS or places(amount) > 2:
        return (f"must be an amount like 100000 or 2500.50 (at least 0, at most {CASH_DIGITS} digits before the "
                "point and 2 after)")
    return None
