"""How a table cell too narrow for its value shows it."""

from __future__ import annotations

import pytest

from tradesim.tui.widgets.grid import fit_right


@pytest.mark.parametrize(("plain", "width", "shown"), [
    ("99.50", 8, "   99.50"),  # fits: right-aligned, a space before it
    ("12345", 6, " 12345"),  # exactly the room: still a space from the column before
    # a probe: the last digits alone were shown (`00,000` for 100,000 shares, `,234,567.89` for $1,234,567.89)
    ("100,000", 6, "  100k"),
    ("1,000,000", 7, "  1.00M"),
    ("1,234,567.89", 11, "  1,234,568"),  # fewer decimal places first
    ("123456.78", 8, "  123457"),
    ("1000.1234", 8, " 1000.12"),
    ("-1,234,567.89", 12, "  -1,234,568"),
    ("+123,456,789.00", 12, "    +123.46M"),  # a signed P&L keeps its sign
    ("abcdefghij", 6, " …ghij"),  # not a number: cut where it shows
    # a review: rounding that reaches 1000 takes the next suffix; half up; no negative zero
    ("-999,999", 6, " -1.0M"),
    ("999,999.6", 6, " 1.00M"),
    ("2.5", 2, " 3"),
    ("-0.004", 5, " 0.00"),
])
def test_a_value_too_wide_for_its_column_is_shortened_never_cut_to_its_last_digits(plain: str, width: int,
                                                                                   shown: str) -> None:
    assert fit_right(plain, width) == shown
    assert len(shown) == width


def test_the_order_tables_fit_their_panel_at_the_smallest_screen_with_every_reason_whole() -> None:
    """A probe: at 100×30 the blotter needed 59 columns of its panel's 48, so a rejection read `insuffic` (funds or
    shares?), and open orders 49."""
    from typing import get_args

    from tradesim.domain.events import RejectReason
    from tradesim.tui.widgets.tables import Blotter, OpenOrders, Positions

    inside = 100 // 2 - 2  # half the screen, less the panel's border
    for table in (Blotter, OpenOrders, Positions):
        assert sum(width for *_, width, _ in table.COLUMNS) <= inside, table.__name__
    info = dict((name, width) for name, _, width, _ in Blotter.COLUMNS)["info"]
    words = {Blotter.REASONS.get(r, r) for r in get_args(RejectReason)}
    assert all(len(w) <= info - 1 for w in words), words  # the cell's leading space, then the whole word
    assert len(words) == len(get_args(RejectReason))  # no two reasons read alike
