"""The bars job's per-record logic, without Flink: exact OHLCV/VWAP in Decimal, order independence, bad input."""

from __future__ import annotations

import itertools
import json
from decimal import Decimal

import pytest

from tradesim.domain.errors import InvalidRecord
from tradesim.domain.events import BAR_INTERVALS, Bar, DeadLetter, Tick, decode, encode
from tradesim.jobs import bars_logic as logic


def tick(seq: int, t_ms: int, last: str, size: int, symbol: str = "ACME") -> Tick:
    price = Decimal(last)
    return Tick(symbol=symbol, bid=price - Decimal("0.01"), ask=price + Decimal("0.01"), last=price, size=size,
                event_time_ms=t_ms, seq=seq, scenario_id="unit")


TICKS = [
    tick(1, 1_000, "100.00", 10),
    tick(2, 1_250, "101.50", 5),
    tick(3, 1_500, "99.75", 20),
    tick(4, 1_999, "100.25", 1),
]


def test_one_second_bar_is_exact() -> None:
    (bar,) = logic.reference_bars(TICKS, "1s")
    assert bar == Bar(symbol="ACME", interval="1s", window_start_ms=1_000, window_end_ms=2_000,
                      open=Decimal("100.00"), high=Decimal("101.50"), low=Decimal("99.75"),
                      close=Decimal("100.25"), volume=36, trade_count=4,
                      # (1000 + 507.5 + 1995 + 100.25) / 36 = 3602.75 / 36 = 100.07638888…
                      vwap=Decimal("100.07638889"))


def test_bar_does_not_depend_on_arrival_order() -> None:
    expected = logic.reference_bars(TICKS, "1s")
    for order in itertools.permutations(TICKS):
        assert logic.reference_bars(list(order), "1s") == expected


def test_merge_is_associative_and_commutative_and_matches_direct_aggregation() -> None:
    accs = [logic.acc_from_tick(t) for t in TICKS]
    left = logic.merge(logic.merge(accs[0], accs[1]), logic.merge(accs[2], accs[3]))
    right = logic.merge(accs[3], logic.merge(accs[1], logic.merge(accs[2], accs[0])))
    assert left == right
    assert logic.to_bar(left, "1s", 1_000, 2_000) == logic.reference_bars(TICKS, "1s")[0]


def test_minute_bar_from_second_bars_equals_minute_bar_from_ticks() -> None:
    ticks = [tick(i + 1, 60_000 + i * 700, f"{100 + (i * 37) % 11}.{i % 100:02d}", i % 7) for i in range(80)]
    seconds: dict[int, logic.BarAcc] = {}
    for t in ticks:
        start = logic.window_start(t.event_time_ms, 1_000)
        seconds[start] = logic.add_tick(seconds.get(start), t)
    minute = None
    for acc in reversed(list(seconds.values())):  # merge order must not matter
        minute = acc if minute is None else logic.merge(minute, acc)
    assert minute is not None
    from_bars = logic.to_bar(minute, "1m", 60_000, 120_000)
    (from_ticks,) = [b for b in logic.reference_bars(ticks, "1m") if b.window_start_ms == 60_000]
    assert from_bars == from_ticks
    assert from_bars.trade_count == len([t for t in ticks if t.event_time_ms < 120_000])


def test_same_timestamp_ties_break_by_seq() -> None:
    a, b = tick(7, 5_000, "10", 1), tick(8, 5_000, "11", 1)
    (bar,) = logic.reference_bars([b, a], "1s")
    assert (bar.open, bar.close) == (Decimal("10"), Decimal("11"))


def test_zero_volume_window_uses_close_as_vwap() -> None:
    (bar,) = logic.reference_bars([tick(1, 0, "5.5", 0), tick(2, 10, "6.5", 0)], "1s")
    assert bar.volume == 0
    assert bar.vwap == Decimal("6.5")


def test_symbols_and_windows_are_separate() -> None:
    bars = logic.reference_bars([tick(1, 999, "1", 1), tick(2, 1_000, "2", 1), tick(1, 999, "3", 1, "XYZ")], "1s")
    assert [(b.symbol, b.window_start_ms, b.close) for b in bars] == [
        ("ACME", 0, Decimal("1")), ("ACME", 1_000, Decimal("2")), ("XYZ", 0, Decimal("3"))]


def test_late_tick_is_dropped_by_the_watermark_oracle() -> None:
    ticks = [tick(1, 500, "1", 1), tick(2, 3_600, "2", 1), tick(3, 900, "9", 1)]  # 900 arrives 2.7 s late
    assert [b.window_start_ms for b in logic.reference_bars(ticks, "1s", watermark_lag_ms=2_000)] == [0, 3_000]
    assert logic.reference_bars(ticks, "1s", watermark_lag_ms=2_000)[0].close == Decimal("1")
    assert logic.reference_bars(ticks, "1s", watermark_lag_ms=3_000)[0].close == Decimal("9")


def test_bar_json_round_trips_with_decimal_strings() -> None:
    acc = logic.acc_from_tick(TICKS[1])
    text = logic.bar_json(acc, "1s", 1_000, 2_000)
    assert json.loads(text)["open"] == "101.50"
    assert decode(Bar, text) == logic.to_bar(acc, "1s", 1_000, 2_000)


@pytest.mark.parametrize(("raw", "field"), [
    (b"not json", "$"),
    (b'{"symbol": "ACME"}', "bid"),
    (encode(TICKS[0]).replace(b'"last":"100.00"', b'"last":100.5'), "last"),  # a float price
    (encode(TICKS[0]).replace(b'"size":10', b'"size":-1'), "size"),
])
def test_malformed_records_become_dead_letters_with_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(InvalidRecord) as info:
        logic.parse_tick(raw)
    assert info.value.field == field
    parsed, letter = logic.classify(raw.decode(), "market_data")
    assert parsed is None
    assert letter is not None
    dl = decode(DeadLetter, letter)
    assert dl.reason.startswith(field + ":")
    assert (dl.source_topic, dl.consumer, dl.record) == ("market_data", "bars", raw.decode())


def test_valid_record_is_not_a_dead_letter() -> None:
    parsed, letter = logic.classify(encode(TICKS[0]).decode(), "market_data")
    assert letter is None
    assert parsed == TICKS[0]


def test_bar_rejects_inconsistent_values() -> None:
    with pytest.raises(ValueError, match="within low..high"):
        Bar(symbol="ACME", interval="1s", window_start_ms=0, window_end_ms=1000, open=Decimal(5), high=Decimal(4),
            low=Decimal(3), close=Decimal(4), vwap=Decimal(4), volume=1, trade_count=1)


def test_each_symbol_has_its_own_clock() -> None:
    """A symbol far ahead in event time (the live market) neither closes nor makes late another symbol's
    windows (a replay on a 2024 clock): both get their bars."""
    ahead = [tick(i, 10_000_000 + i * 1_000, "5", 1, "LIVE") for i in range(1, 6)]
    replay = [tick(1, 500, "1", 1, "OLD"), tick(2, 1_500, "2", 1, "OLD"), tick(3, 4_000, "3", 1, "OLD")]
    state: dict[str, logic.SymbolBars] = {}
    emitted = [b for t in [*ahead, *replay] for b in logic.on_tick(state.setdefault(t.symbol, logic.SymbolBars()),
                                                                       t, 2_000)]
    old = [(b.interval, b.window_start_ms) for b in emitted if b.symbol == "OLD"]
    assert old == [("1s", 0), ("1s", 1_000)]  # closed by OLD's own tick at 4.0 s, not by LIVE's clock
    assert [b.window_start_ms for b in logic.reference_bars([*ahead, *replay], "1s", watermark_lag_ms=2_000)
            if b.symbol == "OLD"] == [0, 1_000, 4_000]


def test_on_tick_closes_the_minute_once_the_symbols_clock_passes_it() -> None:
    state = logic.SymbolBars()
    assert logic.on_tick(state, tick(1, 59_000, "1", 1), 2_000) == []
    assert logic.on_tick(state, tick(2, 61_000, "2", 1), 2_000) == []
    closed = logic.on_tick(state, tick(3, 62_000, "3", 1), 2_000)
    assert [(b.interval, b.window_start_ms, b.close) for b in closed] == [("1s", 59_000, Decimal("1")),
                                                                          ("1m", 0, Decimal("1"))]
    assert logic.on_tick(state, tick(4, 59_500, "9", 1), 2_000) == []  # its second already closed: late
    assert ("1m", 60_000) in state.open
    assert state.open[("1s", 61_000)].count == 1


def test_the_job_closes_windows_of_exactly_the_intervals_a_bar_can_have() -> None:
    assert tuple(logic.INTERVALS_MS) == BAR_INTERVALS
