"""ClickHouse client errors in tradesim's terms."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from tradesim.ports import Unavailable

#: server error codes that mean "cannot serve now", not "this statement is wrong": retrying later can succeed
TRANSIENT_CODES = frozenset({
    60,   # UNKNOWN_TABLE: the instant between the two renames of a swap (18.16 renames one table at a time)
    81,   # UNKNOWN_DATABASE: the store's layout is gone (a wiped server, an external one never `up`ped), not the
          # statement wrong: `tradesim up` makes it again, as a missing search index (GET /portfolio degrades)
    159,  # TIMEOUT_EXCEEDED
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    241,  # MEMORY_LIMIT_EXCEEDED
    252,  # TOO_MANY_PARTS: inserts faster than merges; the server asks to slow down
})
#: the server refused who we are (an unknown user, a wrong or missing password, an address it does not allow): a
#: setting to fix, as an answer that is not ClickHouse's is, not a statement's bug
CREDENTIAL_CODES = frozenset({
    192,  # UNKNOWN_USER
    193,  # WRONG_PASSWORD
    194,  # REQUIRED_PASSWORD
    195,  # IP_ADDRESS_NOT_ALLOWED
    516,  # AUTHENTICATION_FAILED (the modern server's word for all of these)
})
#: a table of the read model that is not in the layout tradesim made (replaced, or a column dropped or renamed by
#: hand): the operator's to fix (`tradesim rebuild analytics` makes the pair again), not a statement's bug
LAYOUT_CODES = frozenset({
    10,   # NOT_FOUND_COLUMN_IN_BLOCK
    16,   # NO_SUCH_COLUMN_IN_TABLE: an INSERT naming a column the table lacks
    47,   # UNKNOWN_IDENTIFIER: a SELECT naming one
    181,  # ILLEGAL_FINAL: FINAL on an engine that is not a MergeTree
})
#: 18.16 sends no X-ClickHouse-Exception-Code header, so the code is read from the message when the client has none
_CODE = re.compile(r"\bCode:\s*(\d+)")
#: clickhouse-connect's words for an HTTP answer that is not a query's result
_HTTP_STATUS = re.compile(r"HTTP status (\d{3})")
#: HTTP statuses without a ClickHouse code that still mean "later": too many requests, a gateway before a server
#: that is down or restarting
BUSY_STATUSES = frozenset({429, 502, 503, 504})


class ClickHouseRefused(Exception):
    """A refusal that is a setting to fix rather than a statement to debug: an HTTP refusal without a ClickHouse
    error code (what answers at the address is not ClickHouse: another server, a proxy asking for credentials),
    ClickHouse refusing the configured credentials, or a table changed by hand out of tradesim's layout."""


def error_code(exc: BaseException) -> int | None:
    """The server's numeric error code of a client exception, if it carries one."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    found = _CODE.search(str(exc))
    return int(found.group(1)) if found else None


@contextmanager
def translated(address: str) -> Iterator[None]:
    """Connection failures, timeouts and transient server errors become `Unavailable`, an answer that is not
    ClickHouse's, a refusal of our credentials or a table not in our layout `ClickHouseRefused`; other SQL errors
    stay as they are (they are bugs)."""
    try:
        yield
    except OperationalError as exc:  # clickhouse-connect's class for refused, reset and timed-out requests
        raise Unavailable(f"ClickHouse at {address} did not answer ({_network_reason(exc)})") from exc
    except DatabaseError as exc:
        code = error_code(exc)
        status = _HTTP_STATUS.search(str(exc))
        if code is None and status:
            if int(status.group(1)) in BUSY_STATUSES:  # a proxy before a restarting server, or one asking to slow
                raise Unavailable(f"ClickHouse at {address} cannot serve now: {_first_line(exc)}") from exc
            raise ClickHouseRefused(f"ClickHouse at {address} refused: {_first_line(exc)}") from exc
        if code in CREDENTIAL_CODES:
            raise ClickHouseRefused(f"ClickHouse at {address} refused the credentials of `clickhouse.user`: "
                                    f"{_first_line(exc)}") from exc
        if code in LAYOUT_CODES:
            raise ClickHouseRefused(f"ClickHouse at {address}: a table is not in tradesim's layout (changed by "
                                    f"hand? `tradesim rebuild analytics` makes it again): {_first_line(exc)}") from exc
        if code not in TRANSIENT_CODES:
            raise
        raise Unavailable(f"ClickHouse at {address} cannot serve now: {_first_line(exc)}") from exc


#: what a failed request's text says, in a few words: the client's own line names the whole URL with its query
#: parameters and urllib3's retry state (~600 characters in a user's `error:` line)
_NETWORK_REASONS = (("refused", "connection refused"), ("timed out", "timed out"), ("reset", "connection reset"),
                    ("name or service not known", "unknown host"), ("name resolution", "unknown host"),
                    ("no route", "no route to host"), ("remotedisconnected", "connection closed"),
                    ("remote end closed", "connection closed"))


def _network_reason(exc: BaseException) -> str:
    """The failure in a few words, read from the text without its URLs (whose query could hold any word)."""
    text = re.sub(r"\w+://\S+", "", str(exc))
    found = next((said for word, said in _NETWORK_REASONS if word in text.lower()), None)
    return found or _first_line(exc)[:120]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
