"""ClickHouse client errors in tradesim's terms."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from clickhouse_connect.driver.exceptions import OperationalError

from tradesim.ports import Unavailable


@contextmanager
def translated(address: str) -> Iterator[None]:
    """Connection failures and timeouts become `Unavailable`; SQL errors stay as they are (they are bugs)."""
    try:
        yield
    except OperationalError as exc:  # clickhouse-connect's class for refused, reset and timed-out requests
        raise Unavailable(f"ClickHouse at {address} did not answer: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
