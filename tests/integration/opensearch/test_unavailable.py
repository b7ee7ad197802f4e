"""A search node that is not there, or does not answer, is Unavailable within the deadline, for every call."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from decimal import Decimal

import pytest

from tradesim.adapters.search.trades import TradeIndex
from tradesim.domain.trades import TradeQuery, TradeRecord
from tradesim.ports import Unavailable
from tradesim.settings import Settings
from tradesim.testing.net import free_port

pytestmark = pytest.mark.integration

RECORD = TradeRecord(order_id="o-1", user_id="u1", symbol="AAPL", side="buy", qty=1, status="executed",
                     decided_at_ms=1_709_303_400_000, price=Decimal("1"), fee=Decimal("0"))


def _calls(index: TradeIndex) -> list[Callable[[], object]]:
    return [lambda: index.write([RECORD]), lambda: index.search(TradeQuery()), index.count, index.refresh,
            lambda: list(index.records()), index.ensure, index.create_next]


def test_a_closed_port_is_unavailable_quickly(settings: Settings) -> None:
    cfg = settings.opensearch.model_copy(update={"host": "127.0.0.1", "port": free_port(), "url": None})
    down = TradeIndex.from_settings(cfg, timeout_s=2)
    started = time.monotonic()
    for call in _calls(down):
        with pytest.raises(Unavailable, match="cannot reach http://127.0.0.1"):  # before: "within 2 s", at once
            call()
    assert time.monotonic() - started < 8


def test_a_silent_server_is_unavailable_within_the_timeout(settings: Settings) -> None:
    """A port that accepts connections but never answers (a hung node) must not hang the caller."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        cfg = settings.opensearch.model_copy(update={"host": "127.0.0.1", "port": listener.getsockname()[1],
                                                      "url": None})
        hung = TradeIndex.from_settings(cfg, timeout_s=1)
        started = time.monotonic()
        with pytest.raises(Unavailable, match="within 1 s"):
            hung.search(TradeQuery())
        elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 5
