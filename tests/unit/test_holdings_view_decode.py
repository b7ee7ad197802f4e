"""A holdings view with a field edited by hand into a non-number counts as missing (it failed its user's orders with
a 500 for as long as it lived). The Lua scripts' side, on the stack's Redis: tests/integration/marketdata/
test_redis_odd_keys.py."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tradesim.adapters.redis import portfolio_view as view
from tradesim.domain.portfolio import Holdings


@pytest.mark.parametrize("edit", [{"cash": "abc"}, {"cash": "NaN"}, {"v": "x"}, {"n": "1.5"}, {"p:AAPL": "ten"}])
def test_a_holdings_view_with_a_field_that_is_not_a_number_counts_as_missing(edit: dict[str, str]) -> None:
    raw = {"v": "7", "cash": "100.00", "n": "3", "p:AAPL": "2"}
    assert view.decode(raw) == Holdings(cash=Decimal("100.00"), version=7, n_outcomes=3, positions={"AAPL": 2})
    assert view.decode(raw | edit) is None
