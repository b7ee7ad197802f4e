"""Search errors in tradesim's terms: the one place that turns opensearch-py exceptions, error answers and
failed bulk items into ours."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import opensearchpy

from tradesim.adapters.search.schema import mapping
from tradesim.ports import Refused, Unavailable
from tradesim.settings import redacted

#: 4xx statuses that mean "the cluster cannot serve now" rather than "this request is wrong"; every 5xx does too
UNAVAILABLE_4XX = frozenset({408, 429})
#: a write to an index under a block (the old index of an alias switch, or a full disk): retry it through the
#: alias, which by then names a writable index; an index closed by hand serves again once opened (HTTP 400, but
#: the store's state, not the record: dead-lettering would lose the outcome from search)
RETRYABLE_TYPES = frozenset({"cluster_block_exception", "index_closed_exception"})
#: the index or alias a read or a write names is gone: the store's layout is missing (deleted by hand, a cluster
#: wiped), not the request wrong; `tradesim up` makes it again and `tradesim rebuild search` refills it
MISSING_INDEX = "index_not_found_exception"
#: a bulk item refused for the alias's or index's layout, as changed by hand, not for the document: the alias
#: names no write index (two indices behind it, or `is_write_index: false`), or the index behind it is strict
#: without one of tradesim's own fields (not made from tradesim's template). Each failed every outcome alike:
#: dead-lettering them lost them from search; they are held until the layout is put back. A field of the
#: document's that tradesim does not map stays the document's fault (refused)
NO_WRITE_INDEX = "no write index is defined for alias"
_INTRODUCED = re.compile(r"dynamic introduction of \[([^\]]+)\]")


class SearchUnavailable(Unavailable):
    """The search cluster did not answer within the deadline, or said it cannot serve now."""


class SearchRequestError(Exception):
    """The cluster answered and refused the request (bad query, mapping conflict, missing index)."""

    def __init__(self, what: str, status: int | None, error_type: str, reason: str) -> None:
        self.status = status
        self.error_type = error_type
        self.reason = reason
        super().__init__(f"{what}: {error_type} (HTTP {status}): {reason}")


class IndexingFailed(Refused):
    """Some documents of a bulk request were refused for good; `failures` maps document id → reason."""

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = failures
        first = next(iter(failures.items()))
        super().__init__(f"{len(failures)} document(s) rejected, e.g. {first[0]}: {first[1]}")


class IndexLayoutError(Exception):
    """The indices behind the alias are not in a shape tradesim can take over (e.g. a pre-alias index)."""


def retryable(status: int | None, error_type: str) -> bool:
    """Whether an error answer means "cannot serve now" rather than "this request is wrong"."""
    return (status is not None and (status >= 500 or status in UNAVAILABLE_4XX)) or error_type in RETRYABLE_TYPES


def from_status(what: str, status: int | None, error_type: str, reason: str) -> Exception:
    """The exception an HTTP error answer stands for: unavailable (retry later) or a refused request."""
    if retryable(status, error_type):
        return SearchUnavailable(f"{what}: cluster cannot serve (HTTP {status} {error_type}): {reason}")
    return SearchRequestError(what, status, error_type, reason)


def _error_details(exc: opensearchpy.TransportError) -> tuple[str, str]:
    """(error type, reason) from an error answer, whatever shape its body has."""
    info = exc.info
    if isinstance(info, dict):
        err = info.get("error")
        if isinstance(err, dict):
            return str(err.get("type", exc.error)), str(err.get("reason", ""))
        if err is not None:
            return str(err), str(info.get("reason", ""))
    return str(exc.error), str(info or "")


@contextmanager
def translated(what: str, url: str, timeout_s: float) -> Iterator[None]:
    """Run a client call, raising SearchUnavailable or SearchRequestError instead of vendor exceptions."""
    try:
        yield
    except opensearchpy.ConnectionTimeout as exc:  # a ConnectionError: must precede it
        raise SearchUnavailable(f"{what}: no answer from {redacted(url)} within {timeout_s:g} s ({exc.error})"
                                ) from None
    except opensearchpy.ConnectionError as exc:  # refused, reset, no route: at once, not after the timeout
        raise SearchUnavailable(f"{what}: cannot reach {redacted(url)} ({exc.error})") from None
    except opensearchpy.TransportError as exc:
        status = exc.status_code if isinstance(exc.status_code, int) else None
        raise from_status(what, status, *_error_details(exc)) from None
    except opensearchpy.SerializationError as exc:
        if not _unreadable_answer(exc):  # our own request body would not encode: a bug, shown as one
            raise
        raise not_opensearch(what, url, exc) from None


def not_opensearch(what: str, url: str, answer: object) -> SearchUnavailable:
    """Another server at the cluster's address: an answer that is not JSON, or JSON of another shape."""
    return SearchUnavailable(f"{what}: what answers at {redacted(url)} is not OpenSearch: {str(answer)[:100]!r}")


def _unreadable_answer(exc: opensearchpy.SerializationError) -> bool:
    """Whether the client failed to read the answer (not JSON, or a content type it has no reader for), rather
    than to write the request: the one error type stands for both."""
    return isinstance(exc.args[-1] if exc.args else None, json.JSONDecodeError) or "unable to deserialize" in str(exc)


def _error_type(error: object) -> str:
    return str(error.get("type")) if isinstance(error, dict) else str(error)


def missing_index_unavailable(exc: SearchRequestError, index: str) -> Exception:
    """A read of an index that is gone is the store's outage (SearchUnavailable), not a refused request."""
    if exc.error_type != MISSING_INDEX:
        return exc
    return SearchUnavailable(f"the search index {index} is missing (`tradesim up` makes it again, `tradesim rebuild "
                             "search` refills it)")


def _layout_refusal(error_type: str, reason: str) -> bool:
    """Whether a bulk item's error is the alias's or index's layout (NO_WRITE_INDEX, a strict index without one of
    our fields) rather than the document's."""
    if error_type == "illegal_argument_exception":
        return NO_WRITE_INDEX in reason
    if error_type == "strict_dynamic_mapping_exception":
        introduced = _INTRODUCED.search(reason)
        return introduced is not None and introduced.group(1) in mapping()["properties"]
    return False


def bulk_failure(answer: Mapping[str, Any]) -> Exception | None:
    """What a _bulk answer of `create` operations amounts to: None if every document is now stored (a 409
    version conflict means an earlier write stored it), SearchUnavailable if any item may succeed on a retry
    (429, 5xx, a missing index: held until `up` makes it again; an alias or index out of tradesim's layout:
    `_layout_refusal`), IndexingFailed naming the refused ids otherwise."""
    if not answer.get("errors"):
        return None
    refused: dict[str, str] = {}
    retry: dict[str, str] = {}
    for item in answer.get("items", []):
        result = next(iter(item.values()))
        error = result.get("error")
        status = result.get("status")
        if not error or (status == 409 and _error_type(error) == "version_conflict_engine_exception"):
            continue
        detail = f"HTTP {status} {_error_type(error)}: {error.get('reason') if isinstance(error, dict) else ''}"
        reason = str(error.get("reason", "")) if isinstance(error, dict) else ""
        transient = (retryable(status, _error_type(error)) or _error_type(error) == MISSING_INDEX
                     or _layout_refusal(_error_type(error), reason))
        (retry if transient else refused)[str(result.get("_id"))] = detail
    if refused:
        return IndexingFailed(refused)
    if retry:
        first = next(iter(retry.items()))
        return SearchUnavailable(f"bulk: {len(retry)} document(s) not stored for now, e.g. {first[0]}: {first[1]}")
    return None
