"""The trades index on the real OpenSearch node: filters, exact aggregations, idempotent writes, restarts,
malformed documents and a store that is down."""

from __future__ import annotations

import socket
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

import pytest

from tradesim.adapters.search.client import SearchClient
from tradesim.adapters.search.errors import IndexingFailed
from tradesim.adapters.search.trades import MinuteVolume, TradeIndex
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.trades import Trade
from tradesim.ports import Unavailable
from tradesim.settings import Settings
from tradesim.stack.supervisor import Supervisor

pytestmark = pytest.mark.integration

T = TypeVar("T")
T0 = datetime(2024, 3, 1, 14, 30, tzinfo=UTC)

# (trade_id, user, symbol, side, qty, price, fee, seconds after 14:30:00)
ROWS = [
    ("t01", "u1", "AAPL", "buy", 10, "101.25", "0.10", 5),
    ("t02", "u2", "AAPL", "sell", 3, "101.3001", "0.05", 59.999),  # last millisecond of 14:30
    ("t03", "u1", "AAPL", "buy", 7, "100.9999", "0", 60),  # first instant of 14:31
    ("t04", "u3", "MSFT", "buy", 1, "410.1234", "0.01", 30),
    ("t05", "u2", "MSFT", "sell", 20, "409.8766", "1.00", 90),
    ("t06", "u3", "MSFT", "buy", 5, "410.0001", "0.02", 119.5),
    ("t07", "u1", "TSLA", "sell", 2, "199.99", "0.02", 120),  # exactly 14:32: outside [14:31, 14:32)
    ("t08", "u2", "AAPL", "sell", 4, "101.0000", "0.04", 185),
    ("t09", "u1", "TSLA", "buy", 3, "200.0001", "0.03", 240),
    # 0.1 three times: a float sum would be 0.30000000000000004
    ("t10", "u4", "PENNY", "buy", 1, "0.1", "0", 10),
    ("t11", "u4", "PENNY", "buy", 1, "0.1", "0", 11),
    ("t12", "u5", "PENNY", "sell", 1, "0.1", "0", 12),
]
TRADES = [
    Trade(trade_id=tid, order_id=f"o-{tid}", user_id=user, symbol=sym, side=side, qty=qty,  # type: ignore[arg-type]
          price=Decimal(price), fee=Decimal(fee), executed_at=T0 + timedelta(seconds=secs))
    for tid, user, sym, side, qty, price, fee, secs in ROWS
]


def eventually(probe: Callable[[], T], ok: Callable[[T], bool], deadline_s: float = 30) -> T:
    """Poll until ok(probe()) or the deadline; errors while the node settles count as 'not yet'."""
    end = time.monotonic() + deadline_s
    last: object = None
    while time.monotonic() < end:
        try:
            value = probe()
            if ok(value):
                return value
            last = value
        except Exception as exc:  # a node recovering its shards may refuse for a moment
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {deadline_s} s; last: {last!r}")


def ids(trades: list[Trade]) -> list[str]:
    return [t.trade_id for t in trades]


def expected_volume(trades: list[Trade]) -> list[MinuteVolume]:
    """The same numbers computed with Decimal in Python, independently of the server."""
    acc: dict[tuple[str, datetime], list[Trade]] = defaultdict(list)
    for t in trades:
        acc[(t.symbol, t.executed_at.replace(second=0, microsecond=0))].append(t)
    return [
        MinuteVolume(sym, minute, sum(t.qty for t in ts), len(ts), sum((t.notional for t in ts), Decimal(0)))
        for (sym, minute), ts in sorted(acc.items())
    ]


@pytest.fixture(scope="module")
def index(settings: Settings) -> Iterator[TradeIndex]:
    idx = TradeIndex.from_settings(settings.opensearch)
    idx.drop()
    assert idx.ensure() is True
    assert idx.ensure() is False  # idempotent: the second call finds the index
    idx.index(TRADES, refresh=True)
    yield idx
    idx.close()


def test_all_trades_are_stored_and_read_back_exactly(index: TradeIndex) -> None:
    assert index.count() == len(TRADES)
    stored = {t.trade_id: t for t in index.search(size=100)}
    assert stored == {t.trade_id: t for t in TRADES}
    assert str(stored["t08"].price) == "101.0000"  # the digits survive, not only the value


@pytest.mark.parametrize(("filters", "expected"), [
    ({"symbol": "AAPL"}, ["t01", "t02", "t03", "t08"]),
    ({"side": "sell"}, ["t12", "t02", "t05", "t07", "t08"]),
    ({"symbol": "MSFT", "side": "buy"}, ["t04", "t06"]),
    ({"user_id": "u1"}, ["t01", "t03", "t07", "t09"]),
    ({"start": T0 + timedelta(minutes=1), "end": T0 + timedelta(minutes=2)}, ["t03", "t05", "t06"]),
    ({"symbol": "AAPL", "start": T0 + timedelta(seconds=59.999)}, ["t02", "t03", "t08"]),
    ({"symbol": "AAPL", "end": T0 + timedelta(seconds=59.999)}, ["t01"]),
    ({"symbol": "TSLA", "side": "buy", "start": T0, "end": T0 + timedelta(minutes=5)}, ["t09"]),
    ({"symbol": "NOPE"}, []),
])
def test_search_filters_return_exactly_the_expected_trades(index: TradeIndex, filters: dict[str, object],
                                                           expected: list[str]) -> None:
    assert ids(index.search(**filters)) == expected  # type: ignore[arg-type]


def test_search_size_limits_the_page(index: TradeIndex) -> None:
    assert ids(index.search(size=3)) == ["t01", "t10", "t11"]
    with pytest.raises(ValueError, match="size"):
        index.search(size=0)


def test_volume_per_symbol_per_minute_is_exact(index: TradeIndex) -> None:
    got = index.volume_by_symbol_per_minute()
    assert got == expected_volume(TRADES)
    by_key = {(v.symbol, v.minute): v for v in got}
    # Spot checks written out by hand, so a bug shared by both computations cannot hide.
    aapl_1430 = by_key[("AAPL", T0)]
    assert (aapl_1430.qty, aapl_1430.trades, aapl_1430.notional) == (13, 2, Decimal("1316.4003"))
    msft_1431 = by_key[("MSFT", T0 + timedelta(minutes=1))]
    assert (msft_1431.qty, msft_1431.trades, msft_1431.notional) == (25, 2, Decimal("10247.5325"))
    penny = by_key[("PENNY", T0)]
    assert (penny.qty, penny.trades, penny.notional) == (3, 3, Decimal("0.3"))
    assert [v.symbol for v in got] == ["AAPL"] * 3 + ["MSFT"] * 2 + ["PENNY"] + ["TSLA"] * 2


def test_volume_honours_filters(index: TradeIndex) -> None:
    start, end = T0 + timedelta(minutes=1), T0 + timedelta(minutes=4)
    got = index.volume_by_symbol_per_minute(side="sell", start=start, end=end)
    chosen = [t for t in TRADES if t.side == "sell" and start <= t.executed_at < end]
    assert got == expected_volume(chosen)
    assert [(v.symbol, v.qty) for v in got] == [("AAPL", 4), ("MSFT", 20), ("TSLA", 2)]


def test_reindexing_the_same_trades_changes_nothing(index: TradeIndex) -> None:
    before = index.volume_by_symbol_per_minute()
    index.index(TRADES)
    index.index(TRADES[:4], refresh=True)
    assert index.count() == len(TRADES)
    assert index.volume_by_symbol_per_minute() == before


def test_malformed_stored_document_is_rejected_naming_the_field(settings: Settings) -> None:
    """A document written by someone else with a float price is refused on read, not turned into money."""
    scratch = TradeIndex(SearchClient(settings.opensearch), "trades-malformed-test")
    scratch.drop()
    scratch.ensure()
    try:
        doc = {"trade_id": "bad-1", "order_id": "o", "user_id": "u", "symbol": "AAPL", "side": "buy",
               "qty": 1, "price": 101.25, "fee": "0", "executed_at": "2024-03-01T14:30:00Z"}
        answer = scratch.client.bulk([{"index": {"_index": scratch.name, "_id": "bad-1"}}, doc], refresh=True)
        assert answer["errors"] is False  # the server accepts it: a number is valid for scaled_float
        with pytest.raises(InvalidRecord) as info:
            scratch.search()
        assert info.value.field == "price"
    finally:
        scratch.drop()
        scratch.close()


def test_rejected_documents_are_reported_by_trade_id(settings: Settings) -> None:
    """The node does not auto-create indices (mappings come from `up`), so writing elsewhere fails per item."""
    missing = TradeIndex(SearchClient(settings.opensearch), "trades-never-created")
    try:
        with pytest.raises(IndexingFailed) as info:
            missing.index(TRADES[:2])
        assert set(info.value.failures) == {"t01", "t02"}
        assert "index_not_found_exception" in info.value.failures["t01"]
    finally:
        missing.close()


def test_data_survives_down_and_up(index: TradeIndex, supervisor: Supervisor) -> None:
    expected = index.volume_by_symbol_per_minute()
    supervisor.down()
    with pytest.raises(Unavailable):
        index.count()
    supervisor.up()
    eventually(index.count, lambda n: n == len(TRADES))
    assert ids(index.search(symbol="MSFT")) == ["t04", "t05", "t06"]
    assert index.volume_by_symbol_per_minute() == expected


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_closed_port_raises_unavailable_quickly(settings: Settings) -> None:
    cfg = settings.opensearch.model_copy(update={"port": _free_port(), "url": None})
    down = TradeIndex.from_settings(cfg, timeout_s=2)
    started = time.monotonic()
    for call in (down.count, down.search, down.refresh, lambda: down.index(TRADES[:1])):
        with pytest.raises(Unavailable):
            call()
    assert time.monotonic() - started < 8


def test_silent_server_raises_unavailable_within_the_timeout(settings: Settings) -> None:
    """A port that accepts connections but never answers (a hung node) must not hang the caller."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        cfg = settings.opensearch.model_copy(update={"port": port, "url": None})
        hung = TradeIndex.from_settings(cfg, timeout_s=1)
        started = time.monotonic()
        with pytest.raises(Unavailable, match="within 1 s"):
            hung.count()
        elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 5
