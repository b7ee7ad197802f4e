"""The search read model on the real node: idempotent writes, filters and text, every sort, and pages that
neither repeat nor skip while new outcomes arrive."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from tradesim.adapters.search.codec import encode
from tradesim.adapters.search.errors import IndexingFailed, SearchUnavailable, bulk_failure
from tradesim.adapters.search.trades import TradeIndex
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.trades import MAX_PAGE_SIZE, SORTS, TradeQuery, TradeRecord, fold, record_of
from tradesim.ports import InvalidCursor, TradeSearch, TradeSink
from tradesim.testing.factories import outcomes

pytestmark = pytest.mark.integration

T0 = 1_709_303_400_000  # 2024-03-01 14:30:00 UTC

# (order id, user, symbol, side, qty, status, ms after T0, price, fee, reason)
ROWS: list[tuple[Any, ...]] = [
    ("o-01", "u1", "AAPL", "buy", 10, "executed", 5_000, "101.25", "0.10", None),
    ("o-02", "u2", "AAPL", "sell", 3, "executed", 59_999, "101.3001", "0.05", None),
    ("o-03", "u1", "AAPL", "buy", 7, "rejected", 60_000, None, None, "insufficient_funds"),
    ("o-04", "u3", "MSFT", "buy", 1, "executed", 30_000, "410.1234", "0.01", None),
    ("o-05", "u2", "MSFT", "sell", 20, "executed", 90_000, "409.8766", "1.00", None),
    ("o-06", "u3", "MSFT", "buy", 5, "cancelled", 119_500, None, None, None),
    ("o-07", "u1", "TSLA", "sell", 2, "expired", 120_000, None, None, "not_processed_in_time"),
    ("o-08", "u2", "AAPL", "sell", 4, "executed", 185_000, "101.0000", "0.04", None),
    ("o-09", "u1", "TSLA", "buy", 3, "executed", 240_000, "200.0001", "0.03", None),
    # three decisions in the same millisecond, two of them with equal qty and notional: ties for every sort
    ("o-10", "u4", "PENNY", "buy", 1, "executed", 10_000, "0.1", "0", None),
    ("o-11", "u4", "PENNY", "buy", 1, "executed", 10_000, "0.1", "0", None),
    ("o-12", "u5", "PENNY", "sell", 1, "rejected", 10_000, None, None, "unknown_symbol"),
]
RECORDS = [
    TradeRecord(order_id=oid, user_id=user, symbol=sym, side=side, qty=qty, status=status,
                decided_at_ms=T0 + at, order_type="limit" if price else "market", placed_at_ms=T0 + at - 50,
                reason=reason, price=Decimal(price) if price else None, fee=Decimal(fee) if fee else None)
    for oid, user, sym, side, qty, status, at, price, fee, reason in ROWS
]

#: the sorts written out independently of the adapter: a key that orders ascending
ORDER: dict[str, Callable[[TradeRecord], tuple[Any, ...]]] = {
    "decided_desc": lambda r: (-r.decided_at_ms, r.order_id),
    "decided_asc": lambda r: (r.decided_at_ms, r.order_id),
    "qty_desc": lambda r: (-r.qty, -r.decided_at_ms, r.order_id),
    "notional_desc": lambda r: (-r.notional, -r.decided_at_ms, r.order_id),
}


def ids(records: list[TradeRecord]) -> list[str]:
    return [r.order_id for r in records]


def all_pages(index: TradeIndex, query: TradeQuery,
              between: Callable[[int], None] = lambda _: None) -> tuple[list[TradeRecord], list[int]]:
    """Every page of a query, following next_cursor; `between(n)` runs after page n. (records, totals)"""
    records: list[TradeRecord] = []
    totals = []
    page = index.search(query)
    while True:
        records += page.records
        totals.append(page.total)
        assert len(page.records) <= query.size
        if page.next_cursor is None:
            return records, totals
        assert len(page.records) == query.size  # only the last page is short
        between(len(totals))
        page = index.search(replace(query, cursor=page.next_cursor))


@pytest.fixture(scope="module")
def index(new_index: Callable[[], TradeIndex]) -> Iterator[TradeIndex]:
    idx = new_index()
    created = idx.ensure()
    assert created == f"{idx.alias}-1"
    assert idx.ensure() is None  # idempotent: the second call finds the alias
    idx.write(RECORDS, refresh=True)
    yield idx
    idx.drop()


def test_it_implements_the_ports(index: TradeIndex) -> None:
    sink: TradeSink = index
    search: TradeSearch = index
    assert sink.name == "search"
    assert search.search(TradeQuery(size=1)).total == len(RECORDS)


def test_records_are_stored_and_read_back_exactly(index: TradeIndex) -> None:
    assert index.count() == len(RECORDS)
    stored = {r.order_id: r for r in index.records()}
    assert stored == {r.order_id: r for r in RECORDS}
    assert str(stored["o-08"].price) == "101.0000"  # the digits survive, not only the value


def test_writing_an_order_id_again_is_a_no_op_and_the_first_copy_stays(fresh: TradeIndex) -> None:
    fresh.write(RECORDS)
    changed = replace(RECORDS[0], qty=999, price=Decimal("1"))
    fresh.write([*RECORDS, changed, RECORDS[1]])  # repeats across batches and within one
    fresh.write(RECORDS[:3], refresh=True)
    assert fresh.count() == len({r.order_id for r in RECORDS})
    assert {r.order_id: r for r in fresh.records()}["o-01"] == RECORDS[0]
    # what the read model adds up to is what the distinct outcomes add up to
    for key in ("symbol", "user_id"):
        assert fold(fresh.records(), key) == fold(RECORDS, key)


def test_an_empty_batch_sends_nothing(fresh: TradeIndex) -> None:
    fresh.write([])
    assert fresh.count() == 0


@pytest.mark.parametrize(("query", "expected"), [
    (TradeQuery(symbol="AAPL"), ["o-08", "o-03", "o-02", "o-01"]),
    (TradeQuery(side="sell"), ["o-08", "o-07", "o-05", "o-02", "o-12"]),
    (TradeQuery(symbol="MSFT", side="buy"), ["o-06", "o-04"]),
    (TradeQuery(user_id="u1"), ["o-09", "o-07", "o-03", "o-01"]),
    (TradeQuery(status="rejected"), ["o-03", "o-12"]),
    (TradeQuery(status="executed", user_id="u2"), ["o-08", "o-05", "o-02"]),
    # [from, to): 14:31:00.000 is in, 14:32:00.000 is out
    (TradeQuery(from_ms=T0 + 60_000, to_ms=T0 + 120_000), ["o-06", "o-05", "o-03"]),
    (TradeQuery(symbol="AAPL", from_ms=T0 + 59_999), ["o-08", "o-03", "o-02"]),
    (TradeQuery(symbol="AAPL", to_ms=T0 + 59_999), ["o-01"]),
    (TradeQuery(symbol="NOPE"), []),
    (TradeQuery(text="insufficient"), ["o-03"]),  # a word of a reason
    (TradeQuery(text="insufficient_funds"), ["o-03"]),
    (TradeQuery(text="o-07"), ["o-07"]),  # an order id
    (TradeQuery(text="msft"), ["o-06", "o-05", "o-04"]),  # a symbol, any case
    (TradeQuery(text="expired"), ["o-07"]),  # a status
    (TradeQuery(text="AAPL rejected"), ["o-03"]),  # every word must match
    (TradeQuery(text="penny", user_id="u4"), ["o-10", "o-11"]),  # a tie: order id ascending
    (TradeQuery(text="nothing-like-this"), []),
    (TradeQuery(text="u1"), []),  # users are a filter, not text
])
def test_filters_and_text_return_exactly_the_expected_records(index: TradeIndex, query: TradeQuery,
                                                              expected: list[str]) -> None:
    page = index.search(query)
    assert ids(page.records) == expected
    assert page.total == len(expected)
    assert page.next_cursor is None


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("size", [1, 5, 12, MAX_PAGE_SIZE])
def test_every_sort_gives_one_total_order_whatever_the_page_size(index: TradeIndex, sort: str, size: int) -> None:
    records, totals = all_pages(index, TradeQuery(sort=sort, size=size))
    assert ids(records) == ids(sorted(RECORDS, key=ORDER[sort]))
    assert set(totals) == {len(RECORDS)}
    assert len(totals) == -(-len(RECORDS) // size)  # no empty last page


def test_a_filtered_sort_pages_within_the_filter(index: TradeIndex) -> None:
    query = TradeQuery(status="executed", sort="notional_desc", size=2)
    records, totals = all_pages(index, query)
    expected = sorted((r for r in RECORDS if r.executed), key=ORDER["notional_desc"])
    assert ids(records) == ids(expected)
    assert set(totals) == {len(expected)}


def _bad_cursor(index: TradeIndex) -> str:
    cursor = index.search(TradeQuery(symbol="AAPL", size=2)).next_cursor
    assert cursor is not None
    return cursor


@pytest.mark.parametrize("other", [
    TradeQuery(symbol="MSFT", size=2), TradeQuery(size=2), TradeQuery(symbol="AAPL", sort="decided_asc"),
    TradeQuery(symbol="AAPL", text="o"), TradeQuery(symbol="AAPL", from_ms=0),
])
def test_a_cursor_of_another_search_is_refused(index: TradeIndex, other: TradeQuery) -> None:
    with pytest.raises(InvalidCursor):
        index.search(replace(other, cursor=_bad_cursor(index)))


@pytest.mark.parametrize("cursor", ["", "garbage", "eyJub3QiOiAiYSBjdXJzb3IifQ", "WzEsWzEsMl0sIngiXQ"])
def test_a_cursor_it_did_not_hand_out_is_refused(index: TradeIndex, cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        index.search(TradeQuery(cursor=cursor))


def test_a_cursor_still_works_with_another_page_size(index: TradeIndex) -> None:
    page = index.search(TradeQuery(symbol="AAPL", size=2, cursor=_bad_cursor(index)))
    assert ids(page.records) == ["o-02", "o-01"]
    assert index.search(TradeQuery(symbol="AAPL", size=1, cursor=_bad_cursor(index))).next_cursor is not None


@pytest.mark.parametrize("sort", SORTS)
def test_pages_neither_repeat_nor_skip_while_outcomes_arrive(fresh: TradeIndex, sort: str) -> None:
    """Documents never change, so their sort values do not either: search_after continues exactly after the
    last one shown. Outcomes arriving meanwhile show up only if they sort after the cursor (never twice)."""
    base = T0 + 10_000_000
    existing = [record_of(o) for o in outcomes(["u1", "u2", "u3"], ["AAPL", "MSFT"], 150, seed=3, start_ms=base)]
    fresh.write(existing, refresh=True)
    rng = random.Random(sort)  # noqa: S311 - test data, not crypto
    arrived: list[TradeRecord] = []

    def arrive(page: int) -> None:
        # newer ones, and late ones decided before everything shown so far (a slow sink catching up)
        batch = outcomes(["u1", "u4"], ["AAPL", "TSLA"], 6, seed=1000 + page,
                         start_ms=rng.choice([base + 5_000, base - 5_000]))
        arrived.extend(record_of(o) for o in batch)
        fresh.write([record_of(o) for o in batch], refresh=True)

    records, totals = all_pages(fresh, TradeQuery(sort=sort, size=13), between=arrive)
    got = ids(records)
    assert len(got) == len(set(got)), "a record was shown twice"
    assert set(ids(existing)) <= set(got), "a record that existed at the first page was skipped"
    assert set(got) <= set(ids(existing)) | set(ids(arrived))
    assert got == ids(sorted(records, key=ORDER[sort])), "pages are out of order"
    assert totals[0] == len(existing)
    assert totals == sorted(totals)  # the total grows as outcomes arrive


def test_the_mapping_refuses_unknown_fields(index: TradeIndex) -> None:
    doc = {**encode(RECORDS[0]), "order_id": "o-strict", "colour": "red"}
    answer = index.client.bulk([{"create": {"_index": index.alias, "_id": "o-strict"}}, doc])
    failure = bulk_failure(answer)
    assert isinstance(failure, IndexingFailed)
    assert "strict_dynamic_mapping_exception" in failure.failures["o-strict"]


def test_a_malformed_stored_document_is_refused_naming_the_field(fresh: TradeIndex) -> None:
    """A document written by someone else with a float price is refused on read, not turned into money."""
    doc = {**encode(RECORDS[0]), "price": 101.25}
    answer = fresh.client.bulk([{"create": {"_index": fresh.alias, "_id": "o-01"}}, doc], refresh=True)
    assert bulk_failure(answer) is None  # the server takes it: a number is valid for scaled_float
    with pytest.raises(InvalidRecord) as info:
        fresh.search(TradeQuery())
    assert info.value.field == "price"


def test_writes_through_a_missing_alias_are_held_and_create_nothing(new_index: Callable[[], TradeIndex]) -> None:
    """The node does not auto-create indices (mappings come from `up`), and writes demand an alias. A missing one
    is the store's outage, which the persistence service holds and retries (`up` makes it again), not refused
    documents, which it would set aside for good (a probe saw every outcome dead-lettered so)."""
    index = new_index()
    with pytest.raises(SearchUnavailable, match="index_not_found_exception"):
        index.write(RECORDS[:2])
    assert index.current() == []
