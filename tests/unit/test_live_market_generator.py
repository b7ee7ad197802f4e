"""The live market's generator: endless passes that continue each symbol's path, with no jump at the loop point."""

from __future__ import annotations

import math
from decimal import Decimal
from itertools import islice

import pytest

from tradesim.domain.events import Tick, encode
from tradesim.scenarios.errors import ScenarioError
from tradesim.scenarios.generators import generate, generate_live, pass_of
from tradesim.scenarios.model import Scenario

START_MS = 1_700_000_000_000


def _scenario(**overrides: object) -> Scenario:
    data: dict[str, object] = {
        "id": "live", "start": "2024-01-02T14:30:00Z", "duration_s": 60, "tick_interval_ms": 1000, "seed": 7,
        "symbols": [{"symbol": "AAA", "initial_price": "100.00", "volatility": 0.3},
                    {"symbol": "BBB", "initial_price": "50.00", "volatility": 0.2, "spread": {"absolute": "0.02"}}],
    }
    data.update(overrides)
    return Scenario.model_validate(data)


def _of(ticks: list[Tick], symbol: str) -> list[Tick]:
    return [t for t in ticks if t.symbol == symbol]


def test_two_passes_are_exactly_one_scenario_twice_as_long() -> None:
    """The loop point is an ordinary step: looping twice gives the very ticks of one run of double length."""
    sc = _scenario()
    per_pass = sc.steps * len(sc.symbols)
    looped = list(islice(generate_live(sc, sc.start_ms), 2 * per_pass))
    longer = list(generate(sc.model_copy(update={"duration_s": 2 * sc.duration_s})))
    assert [encode(t) for t in looped] == [encode(t) for t in longer]


def test_first_price_of_a_pass_continues_from_the_last_one_not_from_the_initial_price() -> None:
    # no randomness: drift only, so every ordinary step multiplies the mid by the same factor
    sc = _scenario(symbols=[{"symbol": "AAA", "initial_price": "1000.0000", "drift": 50.0, "volatility": 0,
                             "tick_size": "0.0001", "spread": {"absolute": 0}}])
    ticks = list(islice(generate_live(sc, START_MS), 3 * sc.steps))
    prices = [float(t.last) for t in ticks]
    ratios = [b / a for a, b in zip(prices, prices[1:], strict=False)]
    step = ratios[0]
    assert step > 1.0
    for k in (1, 2):  # the loop points: last of pass k-1 → first of pass k
        assert pass_of(sc, ticks[k * sc.steps - 1]) == k - 1
        assert pass_of(sc, ticks[k * sc.steps]) == k
        assert ratios[k * sc.steps - 1] == pytest.approx(step, rel=1e-6)
    assert ticks[sc.steps].last != Decimal("1000.0000")
    assert all(r == pytest.approx(step, rel=1e-6) for r in ratios)


def test_a_shock_stays_applied_across_the_loop_and_repeats_on_top() -> None:
    """A -10 % gap mid-pass: pass 2 starts at 90 (not back at 100) and gaps again to 81."""
    sc = _scenario(symbols=[{"symbol": "AAA", "initial_price": "100.00", "volatility": 0, "spread": {"absolute": 0}}],
                   events=[{"at_s": 30, "symbol": "AAA", "move_pct": -10}])
    ticks = list(islice(generate_live(sc, START_MS), 2 * sc.steps))
    lasts = [t.last for t in ticks]
    assert lasts[0] == Decimal("100.00")
    assert lasts[sc.steps - 1] == Decimal("90.00")
    assert lasts[sc.steps] == Decimal("90.00")  # the loop point: no jump back to 100
    assert lasts[sc.steps + 29] == Decimal("90.00")
    assert lasts[sc.steps + 30] == Decimal("81.00")
    assert lasts[-1] == Decimal("81.00")


def test_seq_and_event_time_strictly_increase_across_passes_for_every_symbol() -> None:
    sc = _scenario()
    ticks = list(islice(generate_live(sc, START_MS), 3 * sc.steps * len(sc.symbols)))
    for symbol in ("AAA", "BBB"):
        mine = _of(ticks, symbol)
        assert [t.seq for t in mine] == list(range(1, 3 * sc.steps + 1))
        times = [t.event_time_ms for t in mine]
        assert times[0] == START_MS
        assert all(b - a == sc.tick_interval_ms for a, b in zip(times, times[1:], strict=False))
    assert {pass_of(sc, t) for t in ticks} == {0, 1, 2}


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    sc = _scenario()
    n = 3 * sc.steps * len(sc.symbols)
    first = [encode(t) for t in islice(generate_live(sc, START_MS), n)]
    again = [encode(t) for t in islice(generate_live(_scenario(), START_MS), n)]
    other = [encode(t) for t in islice(generate_live(_scenario(seed=8), START_MS), n)]
    assert first == again
    assert sum(a != b for a, b in zip(first, other, strict=True)) > n * 0.9


def test_without_loop_one_pass_then_the_end() -> None:
    sc = _scenario()
    ticks = list(generate_live(sc, START_MS, loop=False))
    assert len(ticks) == sc.steps * len(sc.symbols)
    assert ticks[0].event_time_ms == START_MS  # event time starts where the caller says, not at the file's start


def test_initial_prices_replace_the_scenarios_for_the_symbols_given() -> None:
    sc = _scenario()
    first = {t.symbol: t for t in islice(generate_live(sc, START_MS, initial_prices={"AAA": Decimal("123.45")}), 2)}
    assert math.isclose(float(first["AAA"].bid + first["AAA"].ask) / 2, 123.45, rel_tol=1e-3)
    assert math.isclose(float(first["BBB"].bid + first["BBB"].ask) / 2, 50.0, rel_tol=1e-3)


def test_a_csv_source_cannot_run_live() -> None:
    sc = _scenario().model_copy(update={"source": object()})  # any source: refused before it is read
    with pytest.raises(ScenarioError, match="recorded CSV cannot continue"):
        next(generate_live(sc, START_MS))


def test_a_big_shock_every_pass_keeps_a_looping_market_valid() -> None:
    """Each pass folds its last shock level into the next: a +1,000,000 % shock per pass reaches a float's limit
    within ~80 passes, and a falling one reaches 0; a path so wild that it reaches 0 itself (a volatility of 1e300
    then; a drift now, volatility being capped) made that inf × 0 = nan (a ValueError at the next tick). The level
    stays within a float's range instead."""
    from tradesim.domain.events import MAX_PRICE

    for move, drift in ((1_000_000, -1e300), (1_000_000, 0.0), (-99.9999, 0.0)):
        sc = _scenario(duration_s=2, events=[{"at_s": 0, "symbol": "*", "move_pct": move}],
                       symbols=[{"symbol": "AAA", "initial_price": "100.00", "drift": drift}])
        ticks = list(islice(generate_live(sc, START_MS), 400 * sc.steps * len(sc.symbols)))
        assert len(ticks) == 400 * sc.steps * len(sc.symbols)  # 400 passes (an empty stream would pass below)
        assert all(Decimal(0) < t.bid <= t.last <= t.ask <= MAX_PRICE and t.bid < MAX_PRICE for t in ticks)
