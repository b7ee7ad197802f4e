"""Money is Decimal, never float; quantities are ints."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

CENT = Decimal("0.01")
PRICE_QUANTUM = Decimal("0.0001")


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
