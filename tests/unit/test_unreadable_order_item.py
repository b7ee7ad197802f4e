"""An `Orders` item edited by hand into a shape no writer leaves: GET /orders and /orders/{id} answer 503
`store_error` naming the order (a probe: each answered 500, the whole list with it)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tradesim.services.api.errors import ApiError
from tradesim.services.api.orders import _order
from tradesim.settings import Settings

ITEM = {"order_id": "o_1", "user_id": "u1", "placed_at_ms": 1_796_692_939_811, "symbol": "AAPL", "side": "buy",
        "qty": 1, "order_type": "market", "time_in_force": "day", "status": "executed",
        "decided_at_ms": 1_796_692_939_822, "fill_price": "185.4185", "fee": "1.00"}


def _res() -> Any:
    return SimpleNamespace(settings=Settings())


def test_an_item_as_written_is_read() -> None:
    order = _order(dict(ITEM), _res())
    assert (order.status, order.fill_price, order.qty) == ("executed", "185.4185", 1)


@pytest.mark.parametrize("edit", [{"fill_price": "abc"}, {"fee": "NaN?"}, {"qty": "one"}, {"side": "sideways"},
                                  {"placed_at_ms": None}])
def test_an_item_edited_into_another_shape_is_a_store_error_naming_it(edit: dict[str, Any]) -> None:
    with pytest.raises(ApiError) as raised:
        _order(ITEM | edit, _res())
    assert (raised.value.status, raised.value.code) == (503, "store_error")
    assert "'o_1'" in raised.value.message
    assert "Retry-After" in raised.value.headers
