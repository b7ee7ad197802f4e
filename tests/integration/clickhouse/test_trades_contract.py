"""The TradeStore contract, run against ClickHouse 18.16 (server) and modern ClickHouse (chdb)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.integration.clickhouse.conftest import ENGINES, reset
from tradesim.adapters.clickhouse.client import ClickHouseClient
from tradesim.adapters.clickhouse.trades import MinuteVolume, TradeStore
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.trades import Trade

pytestmark = pytest.mark.integration

T0 = datetime(2024, 5, 1, 14, 30, tzinfo=UTC)


def trade(n: int, symbol: str, side: str, qty: int, price: str, at: timedelta, fee: str = "0.0000") -> Trade:
    return Trade(trade_id=f"tr-{n}", order_id=f"ord-{n}", user_id=f"user-{n % 3}", symbol=symbol,
                 side=side, qty=qty, price=Decimal(price), fee=Decimal(fee), executed_at=T0 + at)  # type: ignore[arg-type]


#: 14:30 AAPL: 10@187.1234 + 5@187.5000 + 1@186.9999; 14:31 AAPL: 3@188.0001; 14:30 MSFT: 7@411.0000 (sell)
DATASET = [
    trade(1, "AAPL", "buy", 10, "187.1234", timedelta(seconds=1, microseconds=250_000), fee="0.0100"),
    trade(2, "AAPL", "sell", 5, "187.5000", timedelta(seconds=30)),
    trade(3, "AAPL", "buy", 1, "186.9999", timedelta(seconds=59, microseconds=999_999)),
    trade(4, "AAPL", "buy", 3, "188.0001", timedelta(minutes=1)),
    trade(5, "MSFT", "sell", 7, "411.0000", timedelta(seconds=10)),
]
MIN_0, MIN_1 = T0, T0 + timedelta(minutes=1)
#: VWAP 14:30 AAPL = (1871.2340 + 937.5000 + 186.9999) / 16 = 2995.7339 / 16 = 187.23336875
EXPECTED = [
    MinuteVolume("AAPL", MIN_0, 16, 3, Decimal("187.23336875")),
    MinuteVolume("AAPL", MIN_1, 3, 1, Decimal("188.00010000")),
    MinuteVolume("MSFT", MIN_0, 7, 1, Decimal("411.00000000")),
]


def test_redelivered_trade_is_one_row_after_final(store: TradeStore) -> None:
    first, second = DATASET[0], DATASET[1]
    store.insert([first])
    store.insert([first, second])  # the execution is delivered again, in another batch
    store.insert([first])
    assert store.count_final() == 2
    assert store.rows_final() == [first, second]


def test_round_trip_is_exact(store: TradeStore) -> None:
    store.insert(DATASET)
    got = store.rows_final()
    assert got == sorted(DATASET, key=lambda t: (t.symbol, t.trade_id))
    assert got[0].executed_at.microsecond == 250_000
    assert got[0].fee == Decimal("0.0100")
    assert all(isinstance(t.price, Decimal) for t in got)


def test_volume_and_vwap_per_minute_are_exact(store: TradeStore) -> None:
    store.insert(DATASET)
    store.insert(DATASET[:2])  # duplicates must not count twice
    assert store.volume_per_minute() == EXPECTED


@pytest.mark.parametrize(("query", "expected"), [
    ({"symbol": "AAPL"}, EXPECTED[:2]),
    ({"symbol": "NVDA"}, []),
    ({"start": MIN_1}, EXPECTED[1:2]),
    ({"end": MIN_1}, [EXPECTED[0], EXPECTED[2]]),
    # [14:30:30, 14:31:00) keeps trades 2 and 3 of AAPL only: (937.5000 + 186.9999) / 6
    ({"symbol": "AAPL", "start": T0 + timedelta(seconds=30), "end": MIN_1},
     [MinuteVolume("AAPL", MIN_0, 6, 2, Decimal("187.41665000"))]),
])
def test_volume_filters(store: TradeStore, query: dict[str, Any], expected: list[MinuteVolume]) -> None:
    store.insert(DATASET)
    assert store.volume_per_minute(**query) == expected


def test_invalid_trade_writes_nothing(store: TradeStore) -> None:
    bad = Trade(trade_id="tr-bad", order_id="o", user_id="u", symbol="AAPL", side="buy", qty=1,
                price=Decimal("1.00001"), fee=Decimal(0), executed_at=T0)
    with pytest.raises(InvalidRecord, match="^price:"):
        store.insert([DATASET[0], bad])
    assert store.count_final() == 0


def test_naive_time_bounds_are_refused(store: TradeStore) -> None:
    with pytest.raises(InvalidRecord, match="^start:"):
        store.volume_per_minute(start=datetime(2024, 5, 1))  # noqa: DTZ001 - the point of the test


def test_schema_creation_is_idempotent(store: TradeStore) -> None:
    store.insert(DATASET[:1])
    store.create_schema()
    assert store.count_final() == 1


def test_both_engines_give_identical_answers(clients: dict[str, ClickHouseClient]) -> None:
    """The same data through the same adapter: 18.16 and modern ClickHouse agree to the last digit."""
    answers = {}
    for name in ENGINES:
        store = reset(TradeStore(clients[name]))
        store.insert(DATASET)
        store.insert(DATASET[2:4])
        answers[name] = (store.count_final(), store.rows_final(), store.volume_per_minute(),
                         store.volume_per_minute(symbol="AAPL", start=T0 + timedelta(seconds=1)))
    assert answers["server"] == answers["chdb"]
    assert answers["server"][2] == EXPECTED
    assert clients["server"].get().server_version.startswith("18.16")
    assert not clients["chdb"].get().server_version.startswith("18.")
