"""Trade ↔ search document: exact round trips, and malformed documents rejected by field name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from tradesim.adapters.search.codec import decode, encode
from tradesim.adapters.search.errors import SearchRequestError, SearchUnavailable, from_status
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.trades import Trade
from tradesim.ports import Unavailable


def _trade(**overrides: Any) -> Trade:
    fields: dict[str, Any] = dict(
        trade_id="t-1", order_id="o-1", user_id="u-1", symbol="AAPL", side="buy", qty=7,
        price=Decimal("101.2500"), fee=Decimal("0.35"),
        executed_at=datetime(2024, 3, 1, 14, 30, 5, 123456, tzinfo=UTC),
    )
    fields.update(overrides)
    return Trade(**fields)


@pytest.mark.parametrize("trade", [
    _trade(),
    _trade(side="sell", qty=1, price=Decimal("0.0001"), fee=Decimal("0")),
    _trade(price=Decimal("123456.9999"), qty=2_000_000, fee=Decimal("12.3400")),
    # an offset other than UTC is the same instant after the round trip
    _trade(executed_at=datetime(2024, 3, 1, 16, 30, 5, 1, tzinfo=timezone(timedelta(hours=2)))),
])
def test_round_trip_is_exact(trade: Trade) -> None:
    back = decode(encode(trade))
    assert back == trade
    # Decimal equality ignores trailing zeros; the digits themselves must survive too.
    assert str(back.price) == str(trade.price)
    assert str(back.fee) == str(trade.fee)
    assert back.executed_at.utcoffset() == timedelta(0)


def test_money_is_sent_as_strings_and_exact_units() -> None:
    doc = encode(_trade(qty=3, price=Decimal("10.0001")))
    assert doc["price"] == "10.0001"
    assert doc["fee"] == "0.35"
    assert doc["notional"] == "30.0003"
    assert doc["notional_units"] == 300003
    assert doc["executed_at"] == "2024-03-01T14:30:05.123456Z"
    assert not any(isinstance(v, float) for v in doc.values())


@pytest.mark.parametrize(("overrides", "field"), [
    ({"price": Decimal("1.00001")}, "price"),  # finer than the index's 1/10000
    ({"fee": Decimal("0.000001")}, "fee"),
    ({"qty": 2**31}, "qty"),  # beyond the mapping's integer
    ({"qty": 2_000_000_000, "price": Decimal("1000000")}, "notional"),  # sums would no longer be exact
])
def test_encode_refuses_what_the_index_cannot_hold_exactly(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRecord) as info:
        encode(_trade(**overrides))
    assert info.value.field == field


def _doc(**changes: Any) -> dict[str, Any]:
    doc = encode(_trade())
    for key, value in changes.items():
        if value is ...:
            del doc[key]
        else:
            doc[key] = value
    return doc


@pytest.mark.parametrize(("doc", "field"), [
    (_doc(trade_id=...), "trade_id"),
    (_doc(executed_at=...), "executed_at"),
    (_doc(symbol=""), "symbol"),
    (_doc(user_id=42), "user_id"),
    (_doc(side="hold"), "side"),
    (_doc(qty=7.0), "qty"),
    (_doc(qty="7"), "qty"),
    (_doc(qty=True), "qty"),
    (_doc(qty=0), "qty"),
    (_doc(price=101.25), "price"),  # a JSON number: a float somewhere on the way in
    (_doc(price="abc"), "price"),
    (_doc(price="NaN"), "price"),
    (_doc(price="-1"), "price"),
    (_doc(fee=None), "fee"),
    (_doc(executed_at="2024-03-01T14:30:05"), "executed_at"),  # no timezone
    (_doc(executed_at="yesterday"), "executed_at"),
    (_doc(executed_at=1.5), "executed_at"),
    (_doc(notional_units=1), "notional_units"),
    (["not", "an", "object"], "document"),
])
def test_decode_rejects_malformed_documents_naming_the_field(doc: Any, field: str) -> None:
    with pytest.raises(InvalidRecord) as info:
        decode(doc)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_decode_accepts_epoch_millis() -> None:
    doc = _doc(executed_at=1_709_303_405_123)
    assert decode(doc).executed_at == datetime(2024, 3, 1, 14, 30, 5, 123000, tzinfo=UTC)


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_overload_statuses_mean_unavailable(status: int) -> None:
    exc = from_status("search trades", status, "cluster_block_exception", "blocked")
    assert isinstance(exc, SearchUnavailable)
    assert isinstance(exc, Unavailable)


def test_other_statuses_are_refused_requests() -> None:
    exc = from_status("search trades", 400, "parsing_exception", "unknown query [nope]")
    assert isinstance(exc, SearchRequestError)
    assert not isinstance(exc, Unavailable)
    assert "parsing_exception" in str(exc)
