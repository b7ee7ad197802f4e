"""Search read model without a server: record ↔ document round trips, malformed documents rejected by field
name, the cursor, the request bodies, the mapping, and how error answers are classified."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from tradesim.adapters.search import queries
from tradesim.adapters.search.codec import decode, decode_cursor, encode, encode_cursor
from tradesim.adapters.search.errors import (
    IndexingFailed,
    SearchRequestError,
    SearchUnavailable,
    bulk_failure,
    from_status,
)
from tradesim.adapters.search.schema import TEXT_FIELD, mapping, template
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.events import MAX_PRICE, MAX_QTY
from tradesim.domain.trades import MAX_PAGE_SIZE, SORTS, TradeQuery, TradeRecord
from tradesim.ports import InvalidCursor, Unavailable

T0 = 1_709_303_405_123


def _record(**overrides: Any) -> TradeRecord:
    fields: dict[str, Any] = dict(
        order_id="o-1", user_id="u-1", symbol="AAPL", side="buy", qty=7, status="executed", decided_at_ms=T0,
        order_type="limit", placed_at_ms=T0 - 40, price=Decimal("101.2500"), fee=Decimal("0.35"),
    )
    fields.update(overrides)
    return TradeRecord(**fields)


REJECTED = _record(status="rejected", price=None, fee=None, reason="insufficient_funds")


@pytest.mark.parametrize("record", [
    _record(),
    _record(side="sell", qty=1, price=Decimal("0.0001"), fee=Decimal("0")),
    _record(price=Decimal("123456.9999"), qty=2_000_000, fee=Decimal("12.3400")),
    REJECTED,
    _record(status="cancelled", price=None, fee=None),
    _record(status="expired", price=None, fee=None, reason="not_processed_in_time", order_type=None,
            placed_at_ms=None),
])
def test_round_trip_is_exact(record: TradeRecord) -> None:
    back = decode(json.loads(json.dumps(encode(record))))
    assert back == record
    # Decimal equality ignores trailing zeros; the digits themselves must survive too.
    assert str(back.price) == str(record.price)
    assert str(back.fee) == str(record.fee)


def test_money_is_sent_as_strings_and_exact_units() -> None:
    doc = encode(_record(qty=3, price=Decimal("10.0001")))
    assert doc["price"] == "10.0001"
    assert doc["fee"] == "0.35"
    assert doc["notional"] == "30.0003"
    assert doc["notional_units"] == 300003
    assert doc["decided_at"] == T0
    assert doc["placed_at"] == T0 - 40
    assert not any(isinstance(v, float) for v in doc.values())


def test_an_order_that_did_not_execute_has_no_money_but_a_zero_notional() -> None:
    doc = encode(REJECTED)
    assert "price" not in doc
    assert "fee" not in doc
    assert (doc["notional"], doc["notional_units"]) == ("0", 0)
    assert doc["reason"] == "insufficient_funds"


@pytest.mark.parametrize(("overrides", "field"), [
    ({"price": Decimal("1.00001")}, "price"),  # finer than the index's 1/10000
    ({"fee": Decimal("0.000001")}, "fee"),
    ({"qty": 2**63}, "qty"),  # beyond the mapping's long
])
def test_encode_refuses_what_the_index_cannot_hold_exactly(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRecord) as info:
        encode(_record(**overrides))
    assert info.value.field == field


@pytest.mark.parametrize(("qty", "price", "units"), [
    (1_000_000_000, Decimal("1000.2820"), 10_002_820_000_000_000),  # above 2^53 units: the long sorts it exactly
    (MAX_QTY, MAX_PRICE, 2**63 - 1),  # the largest notional the domain allows: beyond the long, sorts as the top
])
def test_every_notional_the_domain_allows_is_indexed(qty: int, price: Decimal, units: int) -> None:
    record = _record(qty=qty, price=price)
    doc = encode(record)  # before: refused (dead letter), so search missed an outcome analytics held
    assert doc["notional_units"] == units
    assert decode(doc) == record


def test_every_encoded_field_is_mapped_and_the_mapping_is_strict() -> None:
    m = mapping()
    assert m["dynamic"] == "strict"
    assert set(encode(_record(reason="partial"))) <= set(m["properties"])
    assert m["properties"]["notional_units"]["type"] == "long"
    assert m["properties"]["price"] == {"type": "scaled_float", "scaling_factor": 10000}
    copied = {name for name, spec in m["properties"].items() if spec.get("copy_to") == TEXT_FIELD}
    assert copied == {"order_id", "symbol", "status", "reason"}


def test_template_covers_the_numbered_indices_and_longer_aliases_win() -> None:
    assert template("trades")["index_patterns"] == ["trades-*"]
    # `trades-x-*` overlaps `trades-*`: equal priorities would make OpenSearch refuse the second template
    assert template("trades-x")["priority"] > template("trades")["priority"]


def _doc(**changes: Any) -> dict[str, Any]:
    doc = encode(_record())
    for key, value in changes.items():
        if value is ...:
            del doc[key]
        else:
            doc[key] = value
    return doc


@pytest.mark.parametrize(("doc", "field"), [
    (_doc(order_id=...), "order_id"),
    (_doc(decided_at=...), "decided_at"),
    (_doc(symbol=""), "symbol"),
    (_doc(user_id=42), "user_id"),
    (_doc(side="hold"), "side"),
    (_doc(status="filled"), "status"),
    (_doc(order_type="iceberg"), "order_type"),
    (_doc(reason=5), "reason"),
    (_doc(qty=7.0), "qty"),
    (_doc(qty="7"), "qty"),
    (_doc(qty=True), "qty"),
    (_doc(qty=0), "qty"),
    (_doc(price=101.25), "price"),  # a JSON number: a float somewhere on the way in
    (_doc(price="abc"), "price"),
    (_doc(price="NaN"), "price"),
    (_doc(price="-1"), "price"),
    (_doc(price=...), "price"),  # executed without a price
    (_doc(status="rejected"), "price"),  # a price without an execution
    (_doc(decided_at="2024-03-01T14:30:05Z"), "decided_at"),
    (_doc(decided_at=1.5), "decided_at"),
    (_doc(placed_at="yesterday"), "placed_at"),
    (_doc(notional_units=1), "notional_units"),
    (["not", "an", "object"], "document"),
])
def test_decode_rejects_malformed_documents_naming_the_field(doc: Any, field: str) -> None:
    with pytest.raises(InvalidRecord) as info:
        decode(doc)
    assert info.value.field.removesuffix("_ms") == field


# ---- the cursor ----------------------------------------------------------------------------------------------

KINDS = (int, str)


def test_cursor_round_trip_is_opaque_and_url_safe() -> None:
    cursor = encode_cursor([T0, "o-9"], "abc")
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_cursor(cursor, "abc", KINDS) == [T0, "o-9"]


def _raw_cursor(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


@pytest.mark.parametrize("cursor", [
    "", "not a cursor", "!!!!", "eyJ", _raw_cursor({"a": 1}), _raw_cursor([1, [T0, "o"]]),
    _raw_cursor([2, [T0, "o"], "abc"]),  # another version
    _raw_cursor([1, [T0], "abc"]),  # too few sort values
    _raw_cursor([1, ["x", "o"], "abc"]),  # wrong types
    _raw_cursor([1, [True, "o"], "abc"]),
    _raw_cursor([1, [T0, "o", 3], "abc"]),
    _raw_cursor([1, [2**63, "o"], "abc"]),  # beyond a long: the engine would answer 400, the API 500
    _raw_cursor([1, [-(2**63) - 1, "o"], "abc"]),
    base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    base64.urlsafe_b64encode(b"[" * 3000).decode(),  # under the API's length limit, too deep for the JSON parser
])
def test_a_cursor_this_service_did_not_issue_is_invalid(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor, "abc", KINDS)


def test_a_cursor_of_another_query_is_invalid() -> None:
    with pytest.raises(InvalidCursor, match="other filters"):
        decode_cursor(encode_cursor([T0, "o-9"], "abc"), "abd", KINDS)


# ---- request bodies ----------------------------------------------------------------------------------------

def test_the_digest_binds_filters_text_and_sort_but_not_the_page() -> None:
    base = TradeQuery(user_id="u1")
    assert queries.digest(base) == queries.digest(replace(base, size=7, cursor="x"))
    others = [replace(base, user_id="u2"), replace(base, symbol="AAPL"), replace(base, side="buy"),
              replace(base, status="executed"), replace(base, from_ms=1), replace(base, to_ms=1),
              replace(base, text="funds"), replace(base, sort="decided_asc")]
    assert len({queries.digest(q) for q in [base, *others]}) == len(others) + 1


def test_search_body_filters_every_given_field_and_orders_totally() -> None:
    query = TradeQuery(user_id="u1", symbol="AAPL", side="sell", status="executed", from_ms=10, to_ms=20,
                       text="o-1", sort="qty_desc", size=25)
    body = queries.search_body(query, [5, 15, "o-1"])
    assert body["size"] == 26  # one more tells whether another page follows
    assert body["track_total_hits"] is True
    assert body["search_after"] == [5, 15, "o-1"]
    assert body["query"]["bool"]["filter"] == [
        {"term": {"user_id": "u1"}}, {"term": {"symbol": "AAPL"}}, {"term": {"side": "sell"}},
        {"term": {"status": "executed"}},
        {"range": {"decided_at": {"format": "epoch_millis", "gte": 10, "lt": 20}}},
        {"match": {TEXT_FIELD: {"query": "o-1", "operator": "and"}}},
    ]
    assert body["sort"] == [{"qty": {"order": "desc"}}, {"decided_at": {"order": "desc"}},
                            {"order_id": {"order": "asc"}}]


@pytest.mark.parametrize("sort", SORTS)
def test_every_sort_ends_with_the_order_id(sort: str) -> None:
    body = queries.search_body(TradeQuery(sort=sort), None)
    assert next(iter(body["sort"][-1])) == "order_id"
    assert "search_after" not in body
    assert body["query"]["bool"]["filter"] == []


def test_blank_text_is_no_filter() -> None:
    assert queries.filters(TradeQuery(text="  ")) == []


@pytest.mark.parametrize("query", [
    TradeQuery(size=0), TradeQuery(size=MAX_PAGE_SIZE + 1), TradeQuery(sort="price_desc"),
    TradeQuery(from_ms="1"),  # type: ignore[arg-type]
])
def test_queries_the_read_model_does_not_offer_are_refused(query: TradeQuery) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies with the field
        queries.validate(query)


# ---- errors ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_overload_and_server_statuses_mean_unavailable(status: int) -> None:
    exc = from_status("search trades", status, "some_exception", "busy")
    assert isinstance(exc, SearchUnavailable)
    assert isinstance(exc, Unavailable)


def test_a_write_block_means_unavailable() -> None:
    assert isinstance(from_status("bulk", 403, "cluster_block_exception", "index write (api)"), Unavailable)


def test_a_closed_index_means_unavailable() -> None:
    assert isinstance(from_status("search trades", 400, "index_closed_exception", "closed"), Unavailable)


@pytest.mark.parametrize("status", [400, 404])
def test_other_statuses_are_refused_requests(status: int) -> None:
    exc = from_status("search trades", status, "parsing_exception", "unknown query [nope]")
    assert isinstance(exc, SearchRequestError)
    assert not isinstance(exc, Unavailable)
    assert "parsing_exception" in str(exc)


def _item(order_id: str, status: int, error_type: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"_id": order_id, "status": status}
    if error_type:
        result["error"] = {"type": error_type, "reason": "because"}
    return {"create": result}


def _answer(*items: dict[str, Any]) -> dict[str, Any]:
    return {"errors": any("error" in i["create"] for i in items), "items": list(items)}


def test_a_repeated_create_is_success() -> None:
    assert bulk_failure(_answer(_item("a", 201), _item("b", 409, "version_conflict_engine_exception"))) is None


def test_refused_items_are_named() -> None:
    failure = bulk_failure(_answer(_item("a", 201), _item("b", 400, "mapper_parsing_exception"),
                                   _item("c", 429, "rejected_execution_exception")))
    assert isinstance(failure, IndexingFailed)
    assert set(failure.failures) == {"b"}
    assert "mapper_parsing_exception" in failure.failures["b"]


@pytest.mark.parametrize(("status", "error_type"), [
    (429, "rejected_execution_exception"), (503, "unavailable_shards_exception"),
    (403, "cluster_block_exception"),
    # a probe: the index deleted by hand made the persistence service dead-letter every outcome (lost from search)
    # instead of holding them until `up` made the index again
    (404, "index_not_found_exception"),
    # a probe: an index closed by hand (OpenSearch answers each item 400) dead-lettered every outcome meanwhile
    (400, "index_closed_exception"),
])
def test_items_that_may_succeed_later_mean_unavailable(status: int, error_type: str) -> None:
    failure = bulk_failure(_answer(_item("a", 201), _item("b", status, error_type)))
    assert isinstance(failure, Unavailable)
    assert "b" in str(failure)


@pytest.mark.parametrize(("error_type", "reason"), [
    # a probe: the alias pointed at a second index by hand (no write index) dead-lettered every outcome meanwhile
    ("illegal_argument_exception", "no write index is defined for alias [trades]. The write index may be explicitly "
     "disabled using is_write_index=false or the alias points to multiple indices without one being designated as a "
     "write index"),
    # the alias pointed at an index not made from tradesim's template: every outcome refused alike
    ("strict_dynamic_mapping_exception", "mapping set to strict, dynamic introduction of [order_id] within [_doc] "
     "is not allowed"),
])
def test_items_refused_for_the_alias_or_index_layout_are_held_not_refused(error_type: str, reason: str) -> None:
    item = {"create": {"_id": "b", "status": 400, "error": {"type": error_type, "reason": reason}}}
    failure = bulk_failure(_answer(_item("a", 201), item))
    assert isinstance(failure, Unavailable)
    assert not isinstance(failure, IndexingFailed)
    assert "b" in str(failure)


def test_a_field_tradesim_does_not_map_is_still_the_document_s() -> None:
    """The strict mapping's purpose: a document with an unknown field is refused (dead-lettered), not held for ever."""
    item = {"create": {"_id": "b", "status": 400, "error": {
        "type": "strict_dynamic_mapping_exception",
        "reason": "mapping set to strict, dynamic introduction of [colour] within [_doc] is not allowed"}}}
    assert isinstance(bulk_failure(_answer(item)), IndexingFailed)


def test_other_illegal_arguments_are_still_the_document_s() -> None:
    item = {"create": {"_id": "b", "status": 400, "error": {"type": "illegal_argument_exception",
                                                          "reason": "Document contains at least one immense term"}}}
    assert isinstance(bulk_failure(_answer(item)), IndexingFailed)


def test_an_answer_the_client_cannot_read_is_another_server_but_a_request_it_cannot_write_is_a_bug() -> None:
    """A review: the one SerializationError stands for both; only the answer's is the address's fault (503)."""
    import opensearchpy
    from opensearchpy.serializer import JSONSerializer

    from tradesim.adapters.search.errors import SearchUnavailable, translated

    with pytest.raises(SearchUnavailable, match="what answers at http://h:1 is not OpenSearch"):
        with translated("search trades", "http://h:1", 1):
            JSONSerializer().loads("<html>a web page</html>")
    with pytest.raises(opensearchpy.SerializationError):
        with translated("search trades", "http://h:1", 1):
            JSONSerializer().dumps({"ids": {1, 2}})  # a set: our body, not the server's answer
