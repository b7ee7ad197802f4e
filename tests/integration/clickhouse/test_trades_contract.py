"""The TradeStore contract (TradeSink + TradeAnalytics + rebuild swaps), run against ClickHouse 18.16 (server)
and modern ClickHouse (chdb). Expected answers come from plain-Python oracles over the same records, and a few
are spelled out by hand."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest

from tests.integration.clickhouse.conftest import ENGINES, reset
from tradesim.adapters.clickhouse.client import ClickHouseClient
from tradesim.adapters.clickhouse.codec import record_to_row
from tradesim.adapters.clickhouse.schema import TRADE_COLUMN_NAMES, TRADE_COLUMN_TYPES, create_table_statement
from tradesim.adapters.clickhouse.trades import VWAP_QUANTUM, Rebuild, TradeStore
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.trades import TradeRecord, VolumeBucket, fold
from tradesim.ports import Unavailable

pytestmark = pytest.mark.integration

T0 = 1714573800000  # 2024-05-01T14:30:00Z, a multiple of 1 and 5 minutes
MIN = 60_000


def fill(n: int, user: str, symbol: str, side: str, qty: int, price: str, at: int, fee: str = "0") -> TradeRecord:
    return TradeRecord(order_id=f"ord-{n}", user_id=user, symbol=symbol, side=side, qty=qty,  # type: ignore[arg-type]
                       status="executed", decided_at_ms=T0 + at, order_type="market", placed_at_ms=T0 + at - 3,
                       price=Decimal(price), fee=Decimal(fee))


def other(n: int, user: str, symbol: str, status: str, at: int, reason: str | None = None) -> TradeRecord:
    return TradeRecord(order_id=f"ord-{n}", user_id=user, symbol=symbol, side="buy", qty=2, status=status,
                       decided_at_ms=T0 + at, order_type="limit", reason=reason)


DATASET = [
    fill(1, "u-1", "AAPL", "buy", 10, "187.1234", 1_250, fee="0.0100"),
    fill(2, "u-2", "AAPL", "sell", 5, "187.5000", 30_000),
    fill(3, "u-1", "AAPL", "buy", 1, "186.9999", 59_999),
    fill(4, "u-2", "AAPL", "buy", 3, "188.0001", 60_000),          # the next minute, to the millisecond
    fill(5, "u-3", "MSFT", "sell", 7, "411.0000", 10_000),
    other(6, "u-1", "AAPL", "rejected", 20_000, "insufficient_funds"),
    other(7, "u-3", "MSFT", "cancelled", 61_000),
    other(8, "u-2", "MSFT", "expired", 90_000),
    fill(9, "u-1", "AAPL", "buy", 2, "187.0000", 30_000),          # same instant as ord-2: ties go by order id
    # (31 × 100.0000 + 1 × 100.0001) / 32 = 100.000003125: the 9th place is an exact half, half-even keeps ...12
    fill(10, "u-3", "TIE", "buy", 31, "100.0000", 5_000),
    fill(11, "u-3", "TIE", "sell", 1, "100.0001", 6_000),
    # each notional ~10^15 overflows Decimal(18, 4): sums must be taken in Decimal128
    fill(12, "u-2", "BIG", "buy", 10_000_000, "99999999.9999", 1_000),
    fill(13, "u-2", "BIG", "buy", 10_000_000, "99999999.9998", 2_000),
    fill(14, "u-2", "MSFT", "buy", 1, "410.5000", 30_000),         # u-2 has two fills at T0 + 30 s
    TradeRecord(order_id="ord-15", user_id="u-1", symbol="AAPL", side="sell", qty=1, status="executed",
                decided_at_ms=T0 - 86_400_000, price=Decimal("150.0000"), fee=Decimal("1.0000")),  # a day before,
    # from an outcome that predates order_type and placed_at_ms
]
EXECUTED = [r for r in DATASET if r.executed]


def oracle_volume(records: Sequence[TradeRecord], interval_s: int, from_ms: int, to_ms: int,
                  symbol: str | None = None, user_id: str | None = None) -> list[VolumeBucket]:
    groups: dict[tuple[str, int], list[TradeRecord]] = {}
    for r in {r.order_id: r for r in reversed(records)}.values():
        if (r.executed and from_ms <= r.decided_at_ms < to_ms and symbol in (None, r.symbol)
                and user_id in (None, r.user_id)):
            groups.setdefault((r.symbol, r.decided_at_ms // (interval_s * 1000)), []).append(r)
    out = []
    for (sym, bucket), rs in sorted(groups.items()):
        shares = sum(r.qty for r in rs)
        notional = sum((r.notional for r in rs), Decimal(0))
        vwap = (notional / shares).quantize(VWAP_QUANTUM, rounding=ROUND_HALF_EVEN)
        out.append(VolumeBucket(sym, bucket * interval_s * 1000, shares, notional, len(rs), vwap))
    return out


def oracle_marks(records: Sequence[TradeRecord], symbols: Sequence[str],
                 ends: Sequence[int]) -> dict[int, dict[str, Decimal]]:
    out: dict[int, dict[str, Decimal]] = {}
    for end in ends:
        last: dict[str, TradeRecord] = {}
        for r in records:
            if r.executed and r.symbol in symbols and r.decided_at_ms < end:
                best = last.get(r.symbol)
                if best is None or (r.decided_at_ms, r.order_id) > (best.decided_at_ms, best.order_id):
                    last[r.symbol] = r
        out[end] = {s: r.price for s, r in last.items() if r.price is not None}
    return out


def by_decision(records: Sequence[TradeRecord]) -> list[TradeRecord]:
    return sorted({r.order_id: r for r in records}.values(), key=lambda r: (r.decided_at_ms, r.order_id))


# --- the sink: idempotent writes -----------------------------------------------------------------------------------

def test_store_is_the_analytics_sink(store: TradeStore) -> None:
    assert store.name == "analytics"
    store.write([])
    assert store.count_final() == 0


def test_redelivered_outcomes_collapse(store: TradeStore) -> None:
    writes = [DATASET[:6], DATASET[3:9] + DATASET[3:5], DATASET, DATASET[:1], DATASET[9:]]
    for batch in writes:
        store.write(batch)
    delivered = [r for batch in writes for r in batch]
    assert store.count_final() == len(DATASET)
    assert store.rows_final() == by_decision(DATASET)
    assert store.totals("symbol") == fold(delivered, "symbol")
    assert store.totals("user_id") == fold(delivered, "user_id")


def test_write_puts_every_record_in_both_tables(store: TradeStore) -> None:
    for batch in (DATASET[:6], DATASET[3:9] + DATASET[3:5], DATASET[9:], DATASET[:2]):
        store.write(batch)
    assert store.rows_final() == by_decision(DATASET)
    assert store.rows_final(by_user=True) == by_decision(DATASET)


def test_round_trip_is_exact_for_every_status(store: TradeStore) -> None:
    store.write(DATASET)
    got = {r.order_id: r for r in store.rows_final()}
    assert got == {r.order_id: r for r in DATASET}
    assert got["ord-6"].reason == "insufficient_funds"
    assert got["ord-6"].price is None
    assert got["ord-15"].order_type is None
    assert got["ord-15"].placed_at_ms is None
    assert got["ord-1"].fee == Decimal("0.0100")
    assert isinstance(got["ord-1"].price, Decimal)


def test_invalid_record_writes_nothing(store: TradeStore) -> None:
    bad = fill(99, "u-1", "AAPL", "buy", 1, "1.00001", 0)
    with pytest.raises(InvalidRecord, match="^price:"):
        store.write([DATASET[0], bad])
    assert store.count_final() == 0


# --- volume ----------------------------------------------------------------------------------------------------------

def test_volume_per_minute_is_exact(store: TradeStore) -> None:
    store.write(DATASET)
    store.write(DATASET[:5])  # duplicates must not count twice
    got = store.volume(interval_s=60, from_ms=T0, to_ms=T0 + 10 * MIN)
    assert got == [
        # 1871.2340 + 937.5000 + 186.9999 + 374.0000 = 3369.7339 over 18 shares = 187.2074388|8…
        VolumeBucket("AAPL", T0, 18, Decimal("3369.7339"), 4, Decimal("187.20743889")),
        VolumeBucket("AAPL", T0 + MIN, 3, Decimal("564.0003"), 1, Decimal("188.00010000")),
        VolumeBucket("BIG", T0, 20_000_000, Decimal("1999999999997000.0000"), 2, Decimal("99999999.99985000")),
        VolumeBucket("MSFT", T0, 8, Decimal("3287.5000"), 2, Decimal("410.93750000")),
        VolumeBucket("TIE", T0, 32, Decimal("3200.0001"), 2, Decimal("100.00000312")),  # half-even, not ...13
    ]
    assert all(isinstance(b.notional, Decimal) and isinstance(b.shares, int) for b in got)


@pytest.mark.parametrize("query", [
    {"interval_s": 60, "from_ms": T0, "to_ms": T0 + 10 * MIN, "symbol": "AAPL"},
    {"interval_s": 60, "from_ms": T0, "to_ms": T0 + 10 * MIN, "symbol": "NVDA"},
    {"interval_s": 60, "from_ms": T0, "to_ms": T0 + 10 * MIN, "user_id": "u-2"},
    {"interval_s": 60, "from_ms": T0, "to_ms": T0 + 10 * MIN, "user_id": "u-1", "symbol": "AAPL"},
    {"interval_s": 300, "from_ms": T0 - 2 * 86_400_000, "to_ms": T0 + 86_400_000},
    {"interval_s": 86_400, "from_ms": 0, "to_ms": 2 * T0},
    {"interval_s": 1, "from_ms": T0 + 30_000, "to_ms": T0 + 59_999},  # [from, to): ord-3 at 59_999 is out
    {"interval_s": 7, "from_ms": T0 + 1_250, "to_ms": T0 + 60_001},   # buckets aligned to the epoch, not to from
    {"interval_s": 60, "from_ms": T0 + MIN, "to_ms": T0},             # empty window
])
def test_volume_matches_the_oracle(store: TradeStore, query: dict[str, Any]) -> None:
    store.write(DATASET)
    store.write(DATASET[1:4] + DATASET[9:12])
    assert store.volume(**query) == oracle_volume(DATASET, **query)


def test_volume_refuses_a_non_positive_interval(store: TradeStore) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        store.volume(interval_s=0, from_ms=0, to_ms=1)


# --- executions and marks --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("user", "to_ms"), [("u-1", None), ("u-2", None), ("u-2", T0 + 30_000),
                                             ("u-2", T0 + 30_001), ("u-9", None)])
def test_executions_are_the_users_fills_in_decision_order(store: TradeStore, user: str, to_ms: int | None) -> None:
    store.write(DATASET)
    store.write(list(reversed(DATASET)))
    expected = [r for r in by_decision(EXECUTED) if r.user_id == user and (to_ms is None or r.decided_at_ms < to_ms)]
    assert store.executions(user, to_ms=to_ms) == expected


def test_executions_order_ties_by_order_id(store: TradeStore) -> None:
    store.write(DATASET)
    ids = [r.order_id for r in store.executions("u-2")]
    assert ids == ["ord-12", "ord-13", "ord-14", "ord-2", "ord-4"]  # ord-14 and ord-2 share T0 + 30 s


def test_a_users_reads_come_from_the_by_user_copy(store: TradeStore) -> None:
    for batch in (DATASET, DATASET[::-1], DATASET[:5]):
        store.write(batch)
    query: dict[str, Any] = {"interval_s": 60, "from_ms": 0, "to_ms": 2 * T0, "user_id": "u-2"}
    store.client.get().command(f"DROP TABLE {store.qualified}")  # only the by-user copy is left to answer
    assert store.executions("u-2") == [r for r in by_decision(EXECUTED) if r.user_id == "u-2"]
    assert store.volume(**query) == oracle_volume(DATASET, **query)


@pytest.mark.parametrize(("symbols", "ends"), [
    (["AAPL", "MSFT", "TIE"], [T0 + i * 15_000 for i in range(6)]),         # evenly spaced
    # evenly spaced but a shorter last bucket (a window cut at `to`: every API request), a fill at its start
    (["AAPL", "MSFT", "TIE"], [T0 + 20_000, T0 + 30_000, T0 + 30_001]),
    (["AAPL", "MSFT", "TIE"], [T0 - 15_000 + i * 15_000 for i in range(5)] + [T0 + 45_001]),
    (["AAPL", "MSFT"], [T0, T0 + 15_000, T0 + 60_001]),                     # a longer last bucket
    (["AAPL", "MSFT"], [T0 + 30_000, T0 + 30_001, T0 + 60_000, T0 + 60_001, T0 + 3_600_000]),  # uneven
    (["AAPL"], [T0 + 3_600_000]),                                           # one end: all history before it
    (["AAPL", "NVDA"], [T0 + 60_000, T0 - 86_400_000]),                     # unsorted; NVDA never traded
    (["BIG"], [T0 + 1_000, T0 + 1_000, T0 + 2_001]),                        # duplicate ends, strictly before
])
def test_marks_are_the_last_fill_before_each_end(store: TradeStore, symbols: list[str], ends: list[int]) -> None:
    store.write(DATASET)
    store.write(DATASET[:4])
    assert store.marks(symbols, ends) == oracle_marks(DATASET, symbols, ends)


def test_marks_hand_checked(store: TradeStore) -> None:
    store.write(DATASET)
    got = store.marks(["AAPL", "MSFT"], [T0, T0 + 30_001, T0 + 60_000, T0 + 60_001])
    assert got == {
        T0: {"AAPL": Decimal("150.0000")},                               # yesterday's fill, carried
        T0 + 30_001: {"AAPL": Decimal("187.0000"), "MSFT": Decimal("410.5000")},  # ord-9 beats ord-2 (same ms)
        T0 + 60_000: {"AAPL": Decimal("186.9999"), "MSFT": Decimal("410.5000")},  # ord-4 at the end is not before
        T0 + 60_001: {"AAPL": Decimal("188.0001"), "MSFT": Decimal("410.5000")},
    }
    assert store.marks([], [T0]) == {T0: {}}
    assert store.marks(["AAPL"], []) == {}


# --- schema and rebuilds ---------------------------------------------------------------------------------------------

def _tables(store: TradeStore) -> set[str]:
    return store.table_names()


PAIR = {"trades", "trades_by_user"}


def test_schema_creation_is_idempotent(store: TradeStore) -> None:
    store.write(DATASET[:1])
    assert store.create_schema() is None
    assert store.count_final() == 1
    assert store.rows_final(by_user=True) == DATASET[:1]
    assert _tables(store) == PAIR


def _insert_only_into(store: TradeStore, table: str, batches: Sequence[Sequence[TradeRecord]]) -> None:
    """Rows as a writer of one table would have left them (copies and all), one INSERT per batch."""
    for i, batch in enumerate(batches):
        store.client.get().insert(table, [record_to_row(r, version=i + 1) for r in batch],
                                  database=store.client.database, column_names=list(TRADE_COLUMN_NAMES),
                                  column_type_names=list(TRADE_COLUMN_TYPES))


def test_an_upgrade_fills_the_by_user_copy_from_trades(store: TradeStore) -> None:
    store.drop()  # the layout before trades_by_user: only `trades`, written by the old write()
    store.client.get().command(create_table_statement(store.client.database))
    _insert_only_into(store, "trades", [DATASET[:9], DATASET[4:], DATASET[:3]])
    assert store.create_schema() is None
    assert _tables(store) == PAIR
    assert store.rows_final(by_user=True) == by_decision(DATASET)
    for user in ("u-1", "u-2", "u-3"):  # the cost basis survives the upgrade
        assert store.executions(user) == [r for r in by_decision(EXECUTED) if r.user_id == user]
    store.write(DATASET[-2:])  # and writes go on into both
    assert store.rows_final(by_user=True) == store.rows_final() == by_decision(DATASET)


def test_an_interrupted_fill_is_started_again(store: TradeStore) -> None:
    store.write(DATASET)
    db = store.client.database
    store.client.get().command(f"DROP TABLE {db}.trades_by_user")
    store.client.get().command(create_table_statement(db, "trades_by_user_fill"))  # a fill that stopped halfway
    _insert_only_into(store, "trades_by_user_fill", [DATASET[:3]])
    assert store.create_schema() is None
    assert _tables(store) == PAIR
    assert store.rows_final(by_user=True) == by_decision(DATASET)


def test_a_by_user_copy_alone_refills_trades(store: TradeStore) -> None:
    store.write(DATASET)
    store.client.get().command(f"DROP TABLE {store.qualified}")
    assert store.create_schema() is None
    assert _tables(store) == PAIR
    assert store.rows_final() == by_decision(DATASET)
    assert store.totals("symbol") == fold(DATASET, "symbol")


def test_a_table_of_the_old_layout_is_set_aside(store: TradeStore) -> None:
    store.drop()
    store.client.get().command(f"CREATE TABLE {store.qualified} (trade_id String, qty UInt64)"
                               " ENGINE = MergeTree ORDER BY trade_id")
    legacy = store.create_schema()
    assert legacy is not None
    assert legacy.startswith("trades_legacy_")
    assert _tables(store) == PAIR | {legacy}
    store.write(DATASET)
    assert store.count_final() == len(DATASET)
    assert store.rows_final(by_user=True) == by_decision(DATASET)


def test_a_by_user_copy_of_another_layout_sets_the_pair_aside(store: TradeStore) -> None:
    store.write(DATASET)
    store.client.get().command(f"DROP TABLE {store.by_user_qualified}")
    store.client.get().command(f"CREATE TABLE {store.by_user_qualified} (user_id String, qty UInt64)"
                               " ENGINE = MergeTree ORDER BY user_id")
    legacy = store.create_schema()
    assert legacy is not None
    assert _tables(store) == PAIR | {legacy, f"{legacy}_by_user"}
    assert store.count_final() == 0


def test_swap_replaces_the_live_pair(store: TradeStore) -> None:
    store.write(DATASET[:3])
    rebuilt = store.fresh("trades_rebuild")
    assert _tables(store) == PAIR | {"trades_rebuild", "trades_rebuild_by_user"}
    assert rebuilt.count_final() == 0
    rebuilt.write(DATASET)
    rebuilt.write(DATASET[5:])
    store.swap(rebuilt)
    assert _tables(store) == PAIR
    assert store.rows_final() == store.rows_final(by_user=True) == by_decision(DATASET)
    assert store.executions("u-2") == [r for r in by_decision(EXECUTED) if r.user_id == "u-2"]
    store.write(DATASET[:1])  # the live pair takes writes as before
    assert store.count_final() == len(DATASET)
    assert len(store.rows_final(by_user=True)) == len(DATASET)


def test_fresh_drops_a_leftover_rebuild_and_refuses_the_live_names(store: TradeStore) -> None:
    leftover = store.fresh("trades_rebuild")
    leftover.write(DATASET)
    again = store.fresh("trades_rebuild")
    assert again.count_final() == 0
    assert again.rows_final(by_user=True) == []
    for name in ("trades", "trades_by_user"):
        with pytest.raises(ValueError, match="live table"):
            store.fresh(name)
    with pytest.raises(ValueError, match="cannot swap"):
        store.swap(TradeStore(store.client, "trades_by_user"))


@pytest.mark.parametrize("left", [(), ("trades_by_user",), ("trades",)])
def test_swap_without_a_live_pair_renames(store: TradeStore, left: tuple[str, ...]) -> None:
    rebuilt = store.fresh("trades_rebuild")
    rebuilt.write(DATASET[:2])
    for table in PAIR - set(left):
        store.client.get().command(f"DROP TABLE {store.client.database}.{table}")
    store.swap(rebuilt)
    assert _tables(store) == PAIR
    assert store.rows_final() == store.rows_final(by_user=True) == by_decision(DATASET[:2])


def test_swap_refuses_a_rebuilt_pair_without_its_by_user_copy(store: TradeStore) -> None:
    rebuilt = store.fresh("trades_rebuild")
    store.client.get().command(f"DROP TABLE {rebuilt.by_user_qualified}")
    with pytest.raises(ValueError, match="trades_rebuild_by_user does not exist"):
        store.swap(rebuilt)
    assert _tables(store) == PAIR | {"trades_rebuild"}


def test_rebuild_drives_fresh_switch_live(store: TradeStore) -> None:
    store.write(DATASET[:2])
    rebuild = Rebuild(store)
    with pytest.raises(RuntimeError, match="before fresh"):
        rebuild.switch()
    rebuild.fresh().write(DATASET[2:10])
    assert store.count_final() == 2  # the live table serves until the switch
    rebuild.switch()
    assert store.count_final() == 8
    assert len(store.rows_final(by_user=True)) == 8
    rebuild.live().write(DATASET)  # the catch-up through the live name
    assert store.rows_final() == store.rows_final(by_user=True) == by_decision(DATASET)
    assert _tables(store) == PAIR
    rebuild.discard()  # as after a switch that failed late: nothing of the live pair goes
    assert store.rows_final() == by_decision(DATASET)
    assert _tables(store) == PAIR
    halfway = Rebuild(store)
    loaded = halfway.fresh()
    loaded.write(DATASET)
    store.client.get().command(f"RENAME TABLE {store.qualified} TO {store.client.database}.trades_out")
    halfway.discard()  # a swap stopped between its renames: the loaded pair is what `trades` is to become
    assert loaded.table in _tables(store)


def test_two_rebuilds_at_once_each_load_a_pair_of_their_own(store: TradeStore) -> None:
    """Before: both loaded `trades_rebuild`; the second's fresh() dropped the first's half-loaded pair, and the
    first then swapped in a partial copy (trades lost from portfolios and analytics until another rebuild)."""
    store.write(DATASET[:2])
    first, second = Rebuild(store), Rebuild(store)
    loading = first.fresh()
    loading.write(DATASET[:6])
    second.fresh().write(DATASET)
    loading.write(DATASET[6:])
    first.switch()
    assert store.rows_final() == by_decision(DATASET)
    second.switch()
    assert store.rows_final() == store.rows_final(by_user=True) == by_decision(DATASET)
    assert _tables(store) == PAIR


def test_a_rebuild_drops_its_own_pair_when_discarded_and_a_stale_one_left_by_a_killed_rebuild(
        store: TradeStore) -> None:
    stale = store.fresh(f"trades_rebuild_{store.clock_us() - Rebuild.STALE_US - 1}")
    legacy = store.fresh("trades_rebuild")  # the pair every rebuild used before they had their own
    old = store.fresh(f"trades_old_{store.clock_us() - Rebuild.STALE_US - 1}")  # a swap did not get to drop it
    half = store.fresh(f"trades_rebuild_{store.clock_us() - Rebuild.STALE_US - 2}")
    store.client.get().command(f"DROP TABLE {half.qualified}")  # a swap stopped after renaming this half in
    running = store.fresh(f"trades_rebuild_{store.clock_us() - 1_000_000}")  # another rebuild, loading now
    rebuild = Rebuild(store)
    rebuild.fresh().write(DATASET)
    tables = _tables(store)
    assert not {stale.table, stale.by_user_table, legacy.table, legacy.by_user_table, old.table, old.by_user_table,
                half.by_user_table} & tables
    assert {running.table, running.by_user_table} <= tables
    rebuild.discard()
    assert _tables(store) == PAIR | {running.table, running.by_user_table}
    running.drop()


def test_readers_during_swaps_see_one_table_or_the_other(store: TradeStore) -> None:
    store.write(DATASET[:4])
    seen: list[int | str] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.append(store.count_final())
                seen.append(len(store.rows_final(by_user=True)))
            except Unavailable:
                seen.append("unavailable")  # the instants between 18.16's renames

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(5):
            rebuilt = store.fresh("trades_rebuild")
            rebuilt.write(DATASET[: 8 + i])
            store.swap(rebuilt)
    finally:
        stop.set()
        reader.join(timeout=30)
    assert set(seen) <= {4, 8, 9, 10, 11, 12, "unavailable"}
    assert store.count_final() == 12
    assert _tables(store) == PAIR


def test_a_missing_table_reads_as_unavailable(store: TradeStore) -> None:
    store.drop()
    with pytest.raises(Unavailable, match="cannot serve now"):
        store.count_final()
    with pytest.raises(Unavailable):
        store.write(DATASET[:1])
    with pytest.raises(Unavailable):
        store.executions("u-1")


# --- one dialect ---------------------------------------------------------------------------------------------------

def test_both_engines_give_identical_answers(clients: dict[str, ClickHouseClient]) -> None:
    """The same data through the same adapter: 18.16 and modern ClickHouse agree to the last digit."""
    answers = {}
    for name in ENGINES:
        store = reset(TradeStore(clients[name]))
        store.write(DATASET)
        store.write(DATASET[2:9])
        answers[name] = (store.count_final(), store.rows_final(), store.totals("symbol"),
                         store.volume(interval_s=60, from_ms=0, to_ms=2 * T0),
                         store.volume(interval_s=30, from_ms=T0, to_ms=T0 + MIN, user_id="u-2"),
                         store.executions("u-1"),
                         store.marks(["AAPL", "MSFT", "BIG"], [T0, T0 + 30_001, T0 + 59_000, T0 + 3_600_000]))
        for table in PAIR:
            described = store.client.get().query(
                "SELECT name FROM system.columns WHERE database = %(db)s AND table = %(table)s",
                parameters={"db": store.client.database, "table": table}).result_rows
            assert {str(r[0]) for r in described} == set(TRADE_COLUMN_NAMES)
    assert answers["server"] == answers["chdb"]
    assert answers["server"][3] == oracle_volume(DATASET, 60, 0, 2 * T0)
    assert str(clients["server"].get().server_version).startswith("18.16")
    assert not str(clients["chdb"].get().server_version).startswith("18.")
