"""Money, prices and times on screen, as the CLI and the TUI show them."""

from __future__ import annotations

import time
from decimal import ROUND_HALF_EVEN, Decimal


def cents(amount: str | None) -> str:
    """A money string rounded to the cent for a table; `-` for null."""
    if amount is None:
        return "-"
    return f"{Decimal(amount).quantize(Decimal('0.01'), ROUND_HALF_EVEN):,}"


def price(amount: str | None) -> str:
    """A price or per-share cost at 4 places at most (the API keeps more for average costs); `-` for null."""
    if amount is None:
        return "-"
    whole, _, frac = format(Decimal(amount).quantize(Decimal("0.0001"), ROUND_HALF_EVEN), "f").partition(".")
    return f"{whole}.{frac.rstrip('0').ljust(2, '0')}"


def signed(amount: str | None) -> str:
    """A P&L figure: cents with a sign, rich-colored (green gain, red loss)."""
    if amount is None:
        return "-"
    value = Decimal(amount).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
    if value > 0:
        return f"[green]+{value:,}[/green]"
    if value < 0:
        return f"[red]{value:,}[/red]"
    return f"{abs(value):,}"


def when(ms: int, seconds: bool = True) -> str:
    """UTC wall time of epoch ms, for a table cell."""
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
