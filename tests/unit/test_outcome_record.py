"""The portfolio item's outcome record: one string per order, decoded back to the typed record."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tradesim.adapters.dynamodb.codec import decode_outcome, encode_outcome
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.settlement import RecordedOutcome


def test_an_executed_outcome_round_trips() -> None:
    raw = encode_outcome("executed", Decimal("-1012.30"), "ACME", 10,
                         {"decided_at_ms": "1764100000000", "fill_price": "101.23", "fee": "1.00"})
    assert raw == "1|executed|-1012.30|ACME|10|1764100000000|101.23|1.00|"
    assert decode_outcome(raw) == RecordedOutcome(
        status="executed", cash_delta=Decimal("-1012.30"), symbol="ACME", qty_delta=10, decided_at_ms=1764100000000,
        fill_price=Decimal("101.23"), fee=Decimal("1.00"))


def test_a_rejection_keeps_its_reason_and_its_placing_time() -> None:
    raw = encode_outcome("rejected", Decimal("0"), "ACME", 0,
                         {"decided_at_ms": "5", "reason": "insufficient_funds", "placed_at_ms": "4"})
    assert decode_outcome(raw) == RecordedOutcome(status="rejected", cash_delta=Decimal("0"), symbol="ACME",
                                                  qty_delta=0, decided_at_ms=5, reason="insufficient_funds",
                                                  placed_at_ms=4)


def test_items_written_as_maps_still_decode() -> None:
    legacy = {"status": "executed", "cash_delta": Decimal("-1"), "symbol": "ACME", "qty_delta": Decimal("1"),
              "decided_at_ms": "7"}
    assert decode_outcome(legacy) == RecordedOutcome(status="executed", cash_delta=Decimal("-1"), symbol="ACME",
                                                     qty_delta=1, decided_at_ms=7)


@pytest.mark.parametrize("details", [{"reason": "a|b"}, {"k|x": "v"}, {"k=x": "v"}])
def test_a_separator_in_a_field_is_refused(details: dict[str, str]) -> None:
    with pytest.raises(InvalidRecord):
        encode_outcome("rejected", Decimal("0"), "ACME", 0, details)


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(InvalidRecord):
        decode_outcome("2|executed|x")
