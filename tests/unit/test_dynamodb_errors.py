"""botocore failures become tradesim errors: domain refusals, `Unavailable`, or a DynamoDBError naming the cause."""

from __future__ import annotations

from decimal import Decimal

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.codec import Portfolio
from tradesim.adapters.dynamodb.errors import DynamoDBError, is_condition_failed, translate
from tradesim.adapters.dynamodb.portfolios import PortfolioStore
from tradesim.domain.errors import (
    InsufficientFunds,
    InsufficientShares,
    InvalidRecord,
    OutcomeAlreadyRecorded,
    PortfolioNotFound,
    VersionConflict,
)
from tradesim.domain.settlement import RecordedOutcome
from tradesim.ports import Unavailable
from tradesim.settings import Settings

ENDPOINT = "http://127.0.0.1:1"


def client_error(code: str, message: str = "refused", operation: str = "UpdateItem") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def test_failed_condition_becomes_the_error_the_caller_names() -> None:
    wanted = InsufficientFunds("u1: cash 5 cannot cover 10")
    exc = client_error("ConditionalCheckFailedException", "The conditional request failed")
    assert is_condition_failed(exc)
    assert translate(exc, "apply", wanted) is wanted


def test_failed_condition_without_a_named_error_is_a_version_conflict() -> None:
    result = translate(client_error("ConditionalCheckFailedException"), "put order")
    assert isinstance(result, VersionConflict)
    assert "put order" in str(result)


@pytest.mark.parametrize("exc", [
    EndpointConnectionError(endpoint_url=ENDPOINT),
    ConnectTimeoutError(endpoint_url=ENDPOINT),
    ReadTimeoutError(endpoint_url=ENDPOINT),
    client_error("ThrottlingException"),
    client_error("ProvisionedThroughputExceededException"),
    client_error("InternalServerError"),
])
def test_unreachable_or_overloaded_store_is_unavailable(exc: Exception) -> None:
    result = translate(exc, "get portfolio", InsufficientFunds("never used"))  # type: ignore[arg-type]
    assert isinstance(result, Unavailable)
    assert "get portfolio" in str(result)


def test_missing_table_says_how_to_fix_it() -> None:
    result = translate(client_error("ResourceNotFoundException", "Cannot do operations on a non-existent table"),
                       "get portfolio")
    assert isinstance(result, DynamoDBError)
    assert result.code == "ResourceNotFoundException"
    assert "tradesim up" in str(result)


def test_bad_request_keeps_the_server_message() -> None:
    result = translate(client_error("ValidationException", "Invalid UpdateExpression: Syntax error"), "apply")
    assert isinstance(result, DynamoDBError)
    assert not isinstance(result, Unavailable)
    assert "Invalid UpdateExpression" in str(result)


def test_local_failure_before_sending_is_not_unavailable() -> None:
    result = translate(NoCredentialsError(), "get portfolio")
    assert isinstance(result, DynamoDBError)
    assert result.code == "NoCredentialsError"


def _portfolio(**kw: object) -> Portfolio:
    base: dict[str, object] = {"user_id": "u1", "cash": Decimal("100"), "positions": {"AAPL": 2}}
    return Portfolio(**{**base, **kw})  # type: ignore[arg-type]


def test_refusal_prefers_the_recorded_outcome_over_funds() -> None:
    first = RecordedOutcome(status="executed", cash_delta=Decimal("-50"), symbol="AAPL", qty_delta=1)
    current = _portfolio(cash=Decimal("0"), outcomes={"o1": first})
    refusal = PortfolioStore._refusal(current, "u1", "o1", Decimal("-500"), "AAPL", 5)
    assert isinstance(refusal, OutcomeAlreadyRecorded)
    assert refusal.order_id == "o1"
    assert refusal.outcome == first


@pytest.mark.parametrize(("current", "cash_delta", "qty_delta", "expected"), [
    (None, Decimal("-1"), 1, PortfolioNotFound),
    (_portfolio(), Decimal("-100.01"), 1, InsufficientFunds),
    (_portfolio(), Decimal("10"), -3, InsufficientShares),
    (_portfolio(), Decimal("-100"), -2, None),  # holds now: the item changed after the failed write; retry
    (_portfolio(cash=Decimal("0")), Decimal("-1"), -9, InsufficientShares),  # the shares first, as the pre-check
])
def test_refusal_names_the_part_of_the_condition_that_fails(
    current: Portfolio | None, cash_delta: Decimal, qty_delta: int, expected: type[Exception] | None,
) -> None:
    refusal = PortfolioStore._refusal(current, "u1", "o9", cash_delta, "AAPL", qty_delta)
    if expected is None:
        assert refusal is None
    else:
        assert isinstance(refusal, expected)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"cash_delta": -1.5}, "cash_delta"),
    ({"cash_delta": Decimal("NaN")}, "cash_delta"),
    ({"qty_delta": True}, "qty_delta"),
    ({"qty_delta": 1.0}, "qty_delta"),
    ({"symbol": ""}, "symbol"),
    ({"order_id": ""}, "order_id"),
])
def test_malformed_fill_is_rejected_naming_the_field_before_any_request(
    settings: Settings, kwargs: dict[str, object], field: str,
) -> None:
    # port 1 is closed: if validation let the call through, the error would be Unavailable, not InvalidRecord
    store = PortfolioStore(DynamoDB(settings.dynamodb.model_copy(update={"port": 1})))
    args: dict[str, object] = {"user_id": "u1", "order_id": "o1", "cash_delta": Decimal("-1"), "symbol": "AAPL",
                               "qty_delta": 1, **kwargs}
    with pytest.raises(InvalidRecord) as info:
        store.apply_fill(**args)  # type: ignore[arg-type]
    assert info.value.field == field


def test_float_cash_is_refused(settings: Settings) -> None:
    store = PortfolioStore(DynamoDB(settings.dynamodb.model_copy(update={"port": 1})))
    with pytest.raises(InvalidRecord, match="cash"):
        store.create("u1", 100.0)  # type: ignore[arg-type]
