"""botocore exceptions in tradesim's terms: business refusals become domain errors, outages `Unavailable`."""

from __future__ import annotations

from collections.abc import Callable

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from tradesim.domain.errors import DomainError, VersionConflict
from tradesim.ports import Unavailable

CONDITION_FAILED = "ConditionalCheckFailedException"
#: answered, but "not now": the caller may retry later, exactly as if the store were down
_OVERLOADED = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded",
    "InternalServerError", "ServiceUnavailable", "LimitExceededException",
})
#: EndpointConnectionError, ConnectTimeoutError (connect), ReadTimeoutError, ConnectionClosedError (HTTP)
_UNREACHABLE = (BotoConnectionError, HTTPClientError)


class DynamoDBError(Exception):
    """The store refused a request for a reason that is a bug or a setup problem (bad request, missing table)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(f"{code}: {message}")


def error_code(exc: BaseException) -> str | None:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or None
    return None


def is_condition_failed(exc: BaseException) -> bool:
    return error_code(exc) == CONDITION_FAILED


def conditional_write(call: Callable[[], object], what: str) -> bool:
    """Run one conditional write: True if written, False if its condition failed; other failures raise as
    `translate` says (Unavailable, DynamoDBError)."""
    try:
        call()
    except ClientError as exc:
        if is_condition_failed(exc):
            return False
        raise translate(exc, what) from None
    except BotoCoreError as exc:
        raise translate(exc, what) from None
    return True


def is_item_too_large(exc: BaseException) -> bool:
    """The write would take the item past DynamoDB's 400 KB (same message from AWS and dynalite)."""
    if error_code(exc) != "ValidationException" or not isinstance(exc, ClientError):
        return False
    return "item size" in str(exc.response.get("Error", {}).get("Message", "")).lower()


def translate(exc: BotoCoreError | ClientError, what: str,
              condition_error: DomainError | None = None) -> Exception:
    """The exception to raise instead of `exc`; `condition_error` is what a failed condition means to the caller.

    A read timeout is `Unavailable` even for a write: the write may have been applied, so callers retry with
    the same order id and let the recorded outcome decide.
    """
    if isinstance(exc, _UNREACHABLE):
        return Unavailable(f"DynamoDB did not answer {what}: {exc}")
    code = error_code(exc)
    if code == CONDITION_FAILED:
        return condition_error if condition_error is not None else VersionConflict(f"{what}: condition failed")
    if code in _OVERLOADED:
        return Unavailable(f"DynamoDB refused {what} for now ({code})")
    if code == "ResourceNotFoundException":
        return DynamoDBError(code, f"{what}: table missing; run `tradesim up` to create the tables")
    if isinstance(exc, ClientError):
        message = str(exc.response.get("Error", {}).get("Message", exc))
        return DynamoDBError(code or "ClientError", f"{what}: {message}")
    # no credentials, invalid parameters: the request never left, and retrying will not help
    return DynamoDBError(type(exc).__name__, f"{what}: {exc}")
