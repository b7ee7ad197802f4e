"""AccountStore's pending accounts, over a low-level client that answers as told and keeps the requests."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tradesim.adapters.dynamodb.accounts import Account, AccountStore, AccountUnfinished, _item
from tradesim.settings import DynamoDBSettings

ACCOUNT = Account(user_id="bob", api_key_hash="h1", starting_cash=Decimal("700"), created_at_ms=5,
                  rate_limit_per_s=9, pending=True)
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


def test_a_take_over_and_a_finish_hold_only_while_the_key_hash_is_the_one_seen() -> None:
    client = Client({}, REFUSED, {}, REFUSED)
    store = _store(client)
    assert store.take_over(replace(ACCOUNT, api_key_hash="h2"), "h1")
    assert not store.take_over(replace(ACCOUNT, api_key_hash="h3"), "h1")
    assert store.finish("bob", "h2")
    assert not store.finish("bob", "h3")
    (_, take), _, (_, finish), _ = client.requests
    assert take["ConditionExpression"] == "attribute_exists(pending) AND api_key_hash = :seen"
    assert take["ExpressionAttributeValues"] == {":seen": {"S": "h1"}}
    assert take["Item"]["api_key_hash"] == {"S": "h2"}
    assert (finish["UpdateExpression"], finish["ConditionExpression"]) == ("REMOVE pending", "api_key_hash = :h")


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
