"""AccountStore's pending accounts, over a low-level client that answers as told and keeps the requests."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tradesim.adapters.dynamodb.accounts import Account, AccountStore, AccountTakenOver, AccountUnfinished, _item
from tradesim.adapters.dynamodb.codec import portfolio_of
from tradesim.adapters.dynamodb.portfolios import PortfolioStore
from tradesim.settings import DynamoDBSettings

ACCOUNT = Account(user_id="bob", api_key_hash="h1", starting_cash=Decimal("700"), created_at_ms=5,
                  rate_limit_per_s=9, pending=True, generation=1)
REFUSED = ClientError({"Error": {"Code": "ConditionalCheckFailedException", "Message": "failed"}}, "UpdateItem")


class Client:
    """Answers each call with the next of `answers` (an exception is raised); keeps (operation, request)."""

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def _answer(self, operation: str, request: dict[str, Any]) -> Any:
        self.requests.append((operation, request))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def put_item(self, **request: Any) -> Any:
        return self._answer("put_item", request)

    def update_item(self, **request: Any) -> Any:
        return self._answer("update_item", request)

    def get_item(self, **request: Any) -> Any:
        return self._answer("get_item", request)

    def query(self, **request: Any) -> Any:
        return self._answer("query", request)


def _store(client: Client) -> AccountStore:
    return AccountStore(SimpleNamespace(settings=DynamoDBSettings(), client=client))  # type: ignore[arg-type]


def test_a_pending_account_is_stored_and_read_as_pending_and_a_finished_one_without_the_attribute() -> None:
    client = Client({"Item": _item(ACCOUNT)}, {"Item": _item(replace(ACCOUNT, pending=False))})
    store = _store(client)
    assert store.get("bob") == ACCOUNT
    assert store.get("bob") == replace(ACCOUNT, pending=False)
    assert _item(ACCOUNT)["pending"] == {"BOOL": True}
    assert "pending" not in _item(replace(ACCOUNT, pending=False))


def test_an_account_stores_its_generation_and_one_written_before_generations_reads_as_0() -> None:
    assert _item(ACCOUNT)["generation"] == {"N": "1"}
    legacy = _item(replace(ACCOUNT, generation=0))
    assert "generation" not in legacy
    assert _store(Client({"Item": legacy})).get("bob") == replace(ACCOUNT, generation=0)


def test_a_take_over_and_a_finish_hold_only_while_the_key_hash_and_generation_are_the_ones_seen() -> None:
    client = Client({}, REFUSED, {}, REFUSED)
    store = _store(client)
    assert store.take_over(replace(ACCOUNT, api_key_hash="h2", generation=2), ACCOUNT)
    assert not store.take_over(replace(ACCOUNT, api_key_hash="h3", generation=2), ACCOUNT)
    assert store.finish("bob", "h2", 2)
    assert not store.finish("bob", "h3", 2)
    (_, take), _, (_, finish), _ = client.requests
    assert take["ConditionExpression"] == "attribute_exists(pending) AND api_key_hash = :seen AND generation = :g"
    assert take["ExpressionAttributeValues"] == {":seen": {"S": "h1"}, ":g": {"N": "1"}}
    assert (take["Item"]["api_key_hash"], take["Item"]["generation"]) == ({"S": "h2"}, {"N": "2"})
    assert (finish["UpdateExpression"], finish["ConditionExpression"]) == ("REMOVE pending",
                                                                           "api_key_hash = :h AND generation = :g")
    assert finish["ExpressionAttributeValues"] == {":h": {"S": "h2"}, ":g": {"N": "2"}}


def test_a_pending_account_written_before_generations_is_taken_over_as_generation_0() -> None:
    client = Client({}, {})
    store = _store(client)
    assert store.take_over(replace(ACCOUNT, api_key_hash="h2", generation=1), replace(ACCOUNT, generation=0))
    assert store.finish("bob", "h1", 0)
    (_, take), (_, finish) = client.requests
    assert take["ConditionExpression"] == ("attribute_exists(pending) AND api_key_hash = :seen AND "
                                           "attribute_not_exists(generation)")
    assert take["ExpressionAttributeValues"] == {":seen": {"S": "h1"}}
    assert finish["ConditionExpression"] == "api_key_hash = :h AND attribute_not_exists(generation)"


def test_a_pending_accounts_key_is_not_set_but_told_unfinished() -> None:
    """A key set on a pending account would be stopped by the create of it again that takes it over."""
    client = Client(REFUSED, {"Item": _item(ACCOUNT)})
    with pytest.raises(AccountUnfinished) as refused:
        _store(client).set_key_hash("bob", "h9")
    assert refused.value.account == ACCOUNT
    assert "attribute_not_exists(pending)" in client.requests[0][1]["ConditionExpression"]


def test_a_key_is_set_on_a_finished_account_and_not_on_a_missing_one() -> None:
    assert _store(Client({})).set_key_hash("bob", "h9")
    assert not _store(Client(REFUSED, {})).set_key_hash("nobody", "h9")
    # pending when written, finished when read: written once more
    finished = replace(ACCOUNT, pending=False)
    client = Client(REFUSED, {"Item": _item(finished)}, {})
    assert _store(client).set_key_hash("bob", "h9")
    assert [op for op, _ in client.requests] == ["update_item", "get_item", "update_item"]


def test_a_pending_accounts_key_authenticates_nothing() -> None:
    """Its key was never shown; held by the lookup itself, not by that alone (the API and the WebSocket use it)."""
    finished = replace(ACCOUNT, pending=False)
    store = _store(Client({"Items": [_item(ACCOUNT)]}, {"Items": [_item(finished)]}, {"Items": []}))
    assert store.by_key_hash("h1") is None
    assert store.by_key_hash("h1") == finished
    assert store.by_key_hash("h1") is None


def _portfolio(version: int, create_generation: int | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"version": {"N": str(version)}}
    if create_generation is not None:
        item["create_generation"] = {"N": str(create_generation)}
    return {"Item": item}


def test_a_creates_reset_stamps_its_generation_on_the_condition_that_no_later_create_stamped_the_item() -> None:
    client = Client(_portfolio(4), {})
    assert _store(client).reset_portfolio("bob", Decimal("700"), lambda: 9, generation=2) == 5
    (_, read), (_, write) = client.requests
    assert read["ProjectionExpression"] == "version, create_generation"
    assert write["UpdateExpression"] == ("SET cash = :cash, positions = :empty, version = :next, reset_at_ms = :at, "
                                         "create_generation = :g")
    assert write["ConditionExpression"] == ("version = :v AND "
                                            "(attribute_not_exists(create_generation) OR create_generation <= :g)")
    assert (write["ExpressionAttributeValues"][":g"], write["ExpressionAttributeValues"][":v"]) == (
        {"N": "2"}, {"N": "4"})
    # its own stamp (a retry of the same create) holds too
    assert _store(Client(_portfolio(5, 2), {})).reset_portfolio("bob", Decimal("700"), lambda: 9, generation=2) == 6


def test_a_creates_reset_is_refused_once_a_later_create_stamped_the_item() -> None:
    """Read so: nothing written. Written in between (the condition failed): read again, and refused."""
    client = Client(_portfolio(7, 3))
    with pytest.raises(AccountTakenOver):
        _store(client).reset_portfolio("bob", Decimal("700"), lambda: 9, generation=2)
    assert [op for op, _ in client.requests] == ["get_item"]
    client = Client(_portfolio(4, 1), REFUSED, _portfolio(6, 3))
    with pytest.raises(AccountTakenOver):
        _store(client).reset_portfolio("bob", Decimal("700"), lambda: 9, generation=2)
    assert [op for op, _ in client.requests] == ["get_item", "update_item", "get_item"]


def test_an_admin_reset_leaves_the_create_stamp_as_it_is() -> None:
    client = Client(_portfolio(7), {})
    assert _store(client).reset_portfolio("bob", Decimal("700"), lambda: 9) == 8
    (_, read), (_, write) = client.requests
    assert read["ProjectionExpression"] == "version"
    assert "create_generation" not in write["UpdateExpression"]
    assert (write["ConditionExpression"], set(write["ExpressionAttributeValues"])) == (
        "version = :v", {":cash", ":empty", ":at", ":v", ":next"})


def test_a_portfolio_made_by_a_create_carries_its_generation_and_one_without_reads_as_0() -> None:
    client = Client({}, {})
    store = PortfolioStore(SimpleNamespace(settings=DynamoDBSettings(), client=client))  # type: ignore[arg-type]
    assert store.create("bob", Decimal("700"), 9, create_generation=2).create_generation == 2
    store.create("carol", Decimal("700"))
    (_, stamped), (_, plain) = client.requests
    assert stamped["Item"]["create_generation"] == {"N": "2"}
    assert "create_generation" not in plain["Item"]
    assert portfolio_of(stamped["Item"]).create_generation == 2
    assert portfolio_of(plain["Item"]).create_generation == 0
