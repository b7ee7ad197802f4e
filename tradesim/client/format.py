"""Money, prices and times on screen, as the CLI and the TUI show them."""

from __future__ import annotations

import time
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from rich.text import Text

#: beyond this a figure is not rounded for a table but shown as it came (rounding 1e40 to the cent needs more
#: digits than Decimal's context has; no account or price of the API comes near it)
_SHOWN_AS_IS = Decimal("1e20")


def _rounded(amount: str, places: str) -> Decimal | str:
    """`amount` rounded to `places`; else what to show instead: a number a table cannot round as Decimal spells it
    (NaN, Infinity, 1E+40), anything else as `?` (the text itself could carry markup or control characters)."""
    try:
        value = Decimal(amount)
    except (InvalidOperation, ValueError, TypeError):
        return "?"
    if not value.is_finite() or abs(value) >= _SHOWN_AS_IS:
        return str(value)[:24]
    return value.quantize(Decimal(places), ROUND_HALF_EVEN)


def cents(amount: str | None) -> str:
    """A money string rounded to the cent for a table; `-` for null."""
    if amount is None:
        return "-"
    value = _rounded(amount, "0.01")
    return value if isinstance(value, str) else f"{value:,}"


def price(amount: str | None) -> str:
    """A price or per-share cost at 4 places at most (the API keeps more for average costs); `-` for null."""
    if amount is None:
        return "-"
    value = _rounded(amount, "0.0001")
    if isinstance(value, str):
        return value
    whole, _, frac = format(value, "f").partition(".")
    return f"{whole}.{frac.rstrip('0').ljust(2, '0')}"


def signed_text(amount: str | None) -> Text:
    """A P&L figure: cents with a sign, colored (green gain, red loss)."""
    if amount is None:
        return Text("-")
    value = _rounded(amount, "0.01")
    if isinstance(value, str):
        return Text(value)
    if value > 0:
        return Text(f"+{value:,}", style="green")
    if value < 0:
        return Text(f"{value:,}", style="red")
    return Text(f"{abs(value):,}")


def signed(amount: str | None) -> str:
    """`signed_text` as rich markup, for the TUI's widgets (the CLI prints text, not markup)."""
    return signed_text(amount).markup


#: a `when` cell's least width: on a narrow screen or in a pipe it folds between the date and the time, never
#: inside the date
WHEN_MIN_WIDTH = len("2024-01-02")


def when(ms: int, seconds: bool = True) -> str:
    """UTC wall time of epoch ms, for a table cell; with the year, so an old trade does not read as this year's."""
    return time.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M", time.gmtime(ms / 1000))


def age(ms: int | None) -> str:
    """A short age: 850ms, 12s, 7m, 3h, 2d."""
    if ms is None:
        return "-"
    for limit, unit, div in ((1000, "ms", 1), (120_000, "s", 1000), (7_200_000, "m", 60_000),
                             (172_800_000, "h", 3_600_000)):
        if ms < limit:
            return f"{ms // div}{unit}"
    return f"{ms // 86_400_000}d"
