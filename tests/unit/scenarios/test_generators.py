"""Generated ticks: deterministic, statistically GBM, shocks where and when the file says."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from tradesim.domain.events import Tick, encode
from tradesim.scenarios.errors import ScenarioError
from tradesim.scenarios.generators import YEAR_MS, PricePath, generate, size_sampler
from tradesim.scenarios.loader import load_scenario
from tradesim.scenarios.model import LognormalVolume, PoissonVolume, Scenario

from .conftest import HEADER


def _scenario(**overrides: object) -> Scenario:
    data: dict[str, object] = {
        "id": "t", "start": "2024-01-02T14:30:00Z", "duration_s": 300, "tick_interval_ms": 1000, "seed": 1,
        "symbols": [{"symbol": "AAA", "initial_price": "100.00", "volatility": 0, "spread": {"absolute": 0}},
                    {"symbol": "BBB", "initial_price": "50.00", "volatility": 0, "spread": {"absolute": 0}}],
    }
    data.update(overrides)
    return Scenario.model_validate(data)


def _by_symbol(ticks: list[Tick], symbol: str) -> dict[int, Tick]:
    """Ticks of one symbol keyed by seconds after start."""
    start = ticks[0].event_time_ms
    return {(t.event_time_ms - start) // 1000: t for t in ticks if t.symbol == symbol}


# --- determinism -----------------------------------------------------------------------------------------

def test_same_seed_gives_byte_identical_stream(repo_scenarios: Path) -> None:
    scenario = load_scenario(repo_scenarios / "calm.yaml")
    first = b"\n".join(encode(t) for t in generate(scenario))
    second = b"\n".join(encode(t) for t in generate(load_scenario(repo_scenarios / "calm.yaml")))
    assert first == second
    assert first.count(b"\n") + 1 == scenario.expected_ticks() == 3000


def test_different_seed_gives_different_stream(repo_scenarios: Path) -> None:
    scenario = load_scenario(repo_scenarios / "calm.yaml")
    other = scenario.model_copy(update={"seed": scenario.seed + 1})
    a = [encode(t) for t in generate(scenario)]
    b = [encode(t) for t in generate(other)]
    assert len(a) == len(b)
    differing = sum(x != y for x, y in zip(a, b, strict=True))
    assert differing > len(a) * 0.9


def test_symbol_subset_is_exactly_those_symbols_ticks_from_the_full_run(repo_scenarios: Path) -> None:
    scenario = load_scenario(repo_scenarios / "flash-crash.yaml")
    full = [encode(t) for t in generate(scenario) if t.symbol == "QQQ"]
    subset = [encode(t) for t in generate(scenario, ["QQQ"])]
    assert subset == full
    assert len(subset) == scenario.steps


def test_unknown_symbol_filter_is_a_scenario_error(repo_scenarios: Path) -> None:
    scenario = load_scenario(repo_scenarios / "calm.yaml")
    with pytest.raises(ScenarioError, match="unknown symbol NOPE"):
        list(generate(scenario, ["AAPL", "NOPE"]))


def test_stream_is_time_ordered_with_per_symbol_sequences(repo_scenarios: Path) -> None:
    scenario = load_scenario(repo_scenarios / "calm.yaml")
    ticks = list(generate(scenario))
    times = [t.event_time_ms for t in ticks]
    assert times == sorted(times)
    assert times[0] == scenario.start_ms
    for symbol in scenario.symbol_names():
        assert [t.seq for t in ticks if t.symbol == symbol] == list(range(1, scenario.steps + 1))
    for t in ticks:
        assert t.bid <= t.last <= t.ask
        assert t.bid % Decimal("0.01") == 0
        assert t.ask % Decimal("0.01") == 0
        assert t.scenario_id == "calm"


# --- GBM statistics --------------------------------------------------------------------------------------

def test_gbm_log_returns_match_drift_and_volatility() -> None:
    drift, vol, dt, n = 0.1, 0.6, 1 / 252, 200_000
    path = PricePath(100.0, drift, vol, dt, random.Random(5))  # noqa: S311 - test data
    prices = [path.price] + [path.step() for _ in range(n)]
    returns = [math.log(b / a) for a, b in zip(prices, prices[1:], strict=False)]
    step_sd = vol * math.sqrt(dt)
    mean_se = step_sd / math.sqrt(n)
    # Itô: E[log return] = (μ − σ²/2)·dt; without the correction the mean would be ~8 standard errors off.
    assert abs(statistics.fmean(returns) - (drift - vol**2 / 2) * dt) < 4 * mean_se
    assert abs(statistics.stdev(returns) - step_sd) < 4 * step_sd / math.sqrt(2 * n)


def test_generated_ticks_follow_the_annualised_volatility() -> None:
    """End to end: dt comes from tick_interval_ms over a calendar year; a fine tick size hides rounding."""
    interval, n, vol = 60_000, 20_000, 0.8
    scenario = _scenario(
        duration_s=interval / 1000 * n, tick_interval_ms=interval,
        symbols=[{"symbol": "AAA", "initial_price": "10000", "volatility": vol, "tick_size": "0.0001",
                  "spread": {"absolute": 0}}],
    )
    lasts = [float(t.last) for t in generate(scenario)]
    returns = [math.log(b / a) for a, b in zip(lasts, lasts[1:], strict=False)]
    expected_sd = vol * math.sqrt(interval / YEAR_MS)
    assert statistics.stdev(returns) == pytest.approx(expected_sd, rel=0.03)
    assert abs(statistics.fmean(returns)) < 4 * expected_sd / math.sqrt(n)


def test_zero_volatility_and_drift_keep_the_price_flat() -> None:
    ticks = list(generate(_scenario()))
    assert {t.last for t in ticks if t.symbol == "AAA"} == {Decimal("100.00")}


# --- spread and volume -----------------------------------------------------------------------------------

def test_bps_spread_straddles_the_mid() -> None:
    scenario = _scenario(symbols=[{"symbol": "AAA", "initial_price": "100.00", "volatility": 0,
                                   "spread": {"bps": 10}}])
    first = next(iter(generate(scenario)))
    assert (first.bid, first.last, first.ask) == (Decimal("99.95"), Decimal("100.00"), Decimal("100.05"))


@pytest.mark.parametrize(
    ("model", "minimum"),
    [(LognormalVolume(kind="lognormal", mean=500, sigma=0.7, lot=100), 100),
     (PoissonVolume(kind="poisson", mean=5), 0),
     (PoissonVolume(kind="poisson", mean=4000, lot=10), 0)],
)
def test_sizes_are_whole_lots_around_the_mean(model: LognormalVolume | PoissonVolume, minimum: int) -> None:
    draw = size_sampler(model, random.Random(3))  # noqa: S311 - test data
    sizes = [draw() for _ in range(20_000)]
    assert all(isinstance(s, int) and s >= minimum and s % model.lot == 0 for s in sizes)
    assert statistics.fmean(sizes) == pytest.approx(model.mean, rel=0.05)


# --- shocks ----------------------------------------------------------------------------------------------

def test_shock_moves_the_price_over_its_window_only() -> None:
    scenario = _scenario(events=[{"at_s": 120, "symbol": "AAA", "move_pct": -12, "over_s": 30}])
    ticks = list(generate(scenario))
    aaa, bbb = _by_symbol(ticks, "AAA"), _by_symbol(ticks, "BBB")
    assert {aaa[s].last for s in range(0, 121)} == {Decimal("100.00")}  # untouched up to the window start
    assert aaa[135].last == Decimal("93.81")  # halfway in log terms: 100·0.88^0.5
    assert [aaa[s].last for s in (121, 130, 140, 149)] == sorted(
        [aaa[s].last for s in (121, 130, 140, 149)], reverse=True)
    assert {aaa[s].last for s in range(150, 300)} == {Decimal("88.00")}  # full move, then it stays
    assert {t.last for t in bbb.values()} == {Decimal("50.00")}  # other symbols are not shocked


def test_gap_is_instant_and_star_hits_every_symbol() -> None:
    scenario = _scenario(events=[{"at_s": 60, "symbol": "*", "move_pct": 8}])
    ticks = list(generate(scenario))
    for symbol, before, after in (("AAA", "100.00", "108.00"), ("BBB", "50.00", "54.00")):
        series = _by_symbol(ticks, symbol)
        assert series[59].last == Decimal(before)
        assert series[60].last == Decimal(after)


def test_spread_widens_inside_the_shock_window() -> None:
    scenario = _scenario(
        symbols=[{"symbol": "AAA", "initial_price": "100.00", "volatility": 0, "spread": {"absolute": "0.10"}}],
        events=[{"at_s": 100, "symbol": "AAA", "move_pct": -1, "over_s": 50, "spread_multiplier": 4}],
    )
    series = _by_symbol(list(generate(scenario)), "AAA")
    assert series[99].ask - series[99].bid == Decimal("0.10")
    assert series[120].ask - series[120].bid >= Decimal("0.40")
    assert series[200].ask - series[200].bid <= Decimal("0.11")


def test_shipped_flash_crash_drops_about_twelve_percent_in_thirty_seconds(repo_scenarios: Path) -> None:
    scenario = load_scenario(repo_scenarios / "flash-crash.yaml")
    ticks = list(generate(scenario))
    start = scenario.start_ms
    for symbol in scenario.symbol_names():
        at = {t.event_time_ms - start: t.last for t in ticks if t.symbol == symbol}
        ratio = at[150_000] / at[120_000]
        assert Decimal("0.85") < ratio < Decimal("0.91"), (symbol, ratio)
        assert at[299_500] > at[150_000]  # partial recovery


def test_loader_and_model_agree_on_a_file(write: Callable[[str, str], Path]) -> None:
    path = write("s.yaml", HEADER + "symbols:\n  - {symbol: AAA, initial_price: '1.00'}\n")
    assert load_scenario(path).steps == 300


def test_a_runaway_path_stays_at_the_price_cap_and_every_tick_stays_valid() -> None:
    """Drift of 10^6 %/year from near the cap: without the cap the path overflows a float within the run."""
    from tradesim.domain.events import MAX_PRICE

    sc = _scenario(symbols=[{"symbol": "AAA", "initial_price": "999000", "drift": 1e4, "volatility": 50,
                             "spread": {"bps": 10}, "volume": {"kind": "lognormal", "mean": 1e9, "sigma": 3}}],
                   duration_s=3600)
    ticks = list(generate(sc))
    assert len(ticks) == 3600
    assert max(t.ask for t in ticks) == MAX_PRICE  # reached and held, never passed
    assert all(Decimal(0) < t.bid <= t.last <= t.ask for t in ticks)


@pytest.mark.parametrize("tick_size", ["0.01", "3", "999999.9999"])
def test_a_quote_at_the_cap_without_a_spread_bids_below_it(tick_size: str) -> None:
    """The probe found a scenario at the cap with no spread quoting bid = ask = 1,000,000: the runner's barrier
    sells (limit at the cap) filled against it and `run` reported positions the script never traded."""
    from tradesim.domain.events import MAX_PRICE

    sc = _scenario(symbols=[{"symbol": "AAA", "initial_price": "999999.9999", "volatility": 0, "drift": 1e4,
                             "tick_size": tick_size, "spread": {"absolute": "0"}}], duration_s=60)
    ticks = list(generate(sc))
    assert ticks
    assert all(t.bid < MAX_PRICE and t.bid <= t.last <= t.ask <= MAX_PRICE for t in ticks)
    assert max(t.bid for t in ticks) > MAX_PRICE - Decimal(tick_size) - Decimal(tick_size)  # as high as it may go


@pytest.mark.parametrize("event", [
    {"move_pct": 1_000_000}, {"move_pct": -99.999999}, {"over_s": 3_155_760_000, "move_pct": 50},
    {"spread_multiplier": 10_000, "over_s": 5, "move_pct": 1}])
def test_shocks_at_their_bounds_in_a_row_still_give_valid_ticks(event: dict[str, float]) -> None:
    """The review found `move_pct: 1e300` (twice) and `spread_multiplier: 1e308` passing `validate`, then
    `scenarios show` ending in an OverflowError: the bounds are the model's, and shocks adding up are clamped."""
    from tradesim.domain.events import MAX_PRICE

    shocks = [{"at_s": s, "symbol": "AAA", **event} for s in range(1, 100)]
    ticks = list(generate(_scenario(events=shocks, duration_s=120)))
    assert len(ticks) == 240
    assert all(Decimal(0) < t.bid <= t.last <= t.ask <= MAX_PRICE and t.bid < MAX_PRICE for t in ticks)


@pytest.mark.parametrize(("field", "value"), [
    ("move_pct", 1e300), ("move_pct", 1_000_001), ("over_s", 1e308), ("spread_multiplier", 1e308),
    ("spread_multiplier", 10_001)])
def test_a_shock_past_its_bound_is_refused_by_the_model(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        _scenario(events=[{"at_s": 1, "symbol": "AAA", "move_pct": 1, field: value}])


@pytest.mark.parametrize(("scenario", "field", "message"), [
    ({"events": [{"at_s": 60, "symbol": "AAA", "move_pct": -8, "spread_multiplier": 5}]},
     "spread_multiplier", "an instant gap (over_s 0) has no window"),
    ({"events": [{"at_s": 60.1, "symbol": "AAA", "move_pct": -8, "over_s": 0.5, "spread_multiplier": 5}]},
     "spread_multiplier", "no tick falls inside the window (60.1s to 60.6s, a tick every 1s)"),
    ({"duration_s": 10, "events": [{"at_s": 9.5, "symbol": "*", "move_pct": -8}]},
     "at_s", "after the last generated tick (at 9s): the move would never show"),
])
def test_a_shock_no_tick_would_show_is_refused(scenario: dict[str, object], field: str, message: str) -> None:
    """These validated and then did nothing: the spread was widened only inside a window holding a tick, and a
    shock after the last tick of a pass moved no price (not in a live market's later passes either)."""
    with pytest.raises(ValidationError, match=field) as caught:
        _scenario(**scenario)
    assert message in str(caught.value)


def test_a_star_shock_with_no_generated_symbol_is_refused(write: Callable[[str, str], Path]) -> None:
    """A file that only replays a CSV validated with `symbol: "*"` shocks, which moved nothing."""
    write("data.csv", "timestamp,symbol,bid,ask,last,size\n2024-01-02T14:30:00Z,XOM,1.00,1.01,1.00,5\n")
    path = write("s.yaml", HEADER + "source: {csv: data.csv}\nevents:\n  - {at_s: 1, symbol: '*', move_pct: 5}\n")
    with pytest.raises(ScenarioError, match=r"events\[0\]\.symbol: no generated symbols to shock"):
        load_scenario(path)


def test_a_shock_whose_window_holds_a_tick_widens_the_spread() -> None:
    scenario = _scenario(
        symbols=[{"symbol": "AAA", "initial_price": "100.00", "volatility": 0, "spread": {"absolute": "0.10"}}],
        events=[{"at_s": 59.5, "symbol": "AAA", "move_pct": -8, "over_s": 1, "spread_multiplier": 5}])
    series = _by_symbol(list(generate(scenario)), "AAA")
    assert series[60].ask - series[60].bid >= Decimal("0.50")


def test_an_initial_price_under_one_tick_is_refused_at_its_field(write: Callable[[str, str], Path]) -> None:
    """It validated, and every quote showed one tick (0.004 with the default 0.01 tick: 0.01 from the first)."""
    path = write("s.yaml", HEADER + "symbols:\n  - {symbol: AAA, initial_price: '0.004'}\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert [str(p) for p in caught.value.problems] == [
        "s.yaml:7: symbols[0].initial_price: below one tick_size (0.01): prices are whole ticks; give a smaller "
        "tick_size"]
    assert _scenario(symbols=[{"symbol": "AAA", "initial_price": "0.004", "tick_size": "0.001"}]).symbols


@pytest.mark.parametrize("model", [
    LognormalVolume(kind="lognormal", mean=1e9, sigma=0.5, lot=300_000_000),
    PoissonVolume(kind="poisson", mean=1e9, lot=300_000_000),
    PoissonVolume(kind="poisson", mean=1e9, lot=10_000_000)])
def test_sizes_near_the_print_cap_stay_whole_lots(model: LognormalVolume | PoissonVolume) -> None:
    """The cap applied to shares made 1,000,000,000 of a 300,000,000 lot, which the file says cannot happen."""
    from tradesim.domain.events import MAX_PRINT_SIZE

    sc = _scenario(symbols=[{"symbol": "AAA", "initial_price": "10", "volume": model.model_dump()}], duration_s=200)
    sizes = {t.size for t in generate(sc)}
    assert all(s % model.lot == 0 and s <= MAX_PRINT_SIZE for s in sizes)
    assert max(sizes) == MAX_PRINT_SIZE // model.lot * model.lot  # the cap is reached, in whole lots
