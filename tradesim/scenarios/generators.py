"""Turns a scenario into ticks: seeded GBM per symbol, shocks on top, recorded CSV rows merged in by time.

Determinism: each symbol draws from its own `random.Random`, seeded from (seed, symbol, purpose) by string
(hashed with SHA-512 by the stdlib, so independent of PYTHONHASHSEED). The same seed therefore gives a
byte-identical `encode()` stream, and asking for a subset of symbols gives exactly their ticks from the full run.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterator, Mapping
from decimal import ROUND_CEILING, Decimal

from tradesim.domain.events import MAX_PRICE, MAX_PRINT_SIZE, Tick
from tradesim.scenarios.errors import ScenarioError
from tradesim.scenarios.model import LognormalVolume, PoissonVolume, Scenario, ShockSpec, SymbolSpec
from tradesim.scenarios.replay import read_csv

YEAR_MS = 365 * 24 * 3600 * 1000  # drift and volatility are per calendar year: simulated time never pauses
_EPS_TICKS = 1e-6
#: exp() of more than ~709 overflows a float; a path this high is capped at MAX_PRICE anyway
_MAX_LOG = 700.0


def generate(scenario: Scenario, symbols: list[str] | None = None) -> Iterator[Tick]:
    """All ticks of the scenario in event-time order (ties: generated symbols in file order, then CSV rows).
    Raises ScenarioError for a symbol the scenario does not have at once, before the first tick is asked for."""
    return _ticks(scenario, _wanted(scenario, symbols))


def _ticks(scenario: Scenario, wanted: set[str] | None) -> Iterator[Tick]:
    specs = [s for s in scenario.symbols if wanted is None or s.symbol in wanted]
    streams: list[Iterator[Tick]] = []
    if specs:
        streams.append(_generated(scenario, specs))
    if scenario.source is not None:
        streams.append(read_csv(scenario.source.csv, scenario.id, wanted))
    if len(streams) == 1:
        yield from streams[0]
    elif streams:
        yield from heapq.merge(*streams, key=lambda t: t.event_time_ms)


def _wanted(scenario: Scenario, symbols: list[str] | None) -> set[str] | None:
    if symbols is None:
        return None
    known = scenario.symbol_names()
    unknown = [s for s in symbols if s not in known]
    if unknown:
        raise ScenarioError.one(scenario.id, "symbols",
                                f"unknown symbol {', '.join(unknown)} (scenario has: {', '.join(known)})")
    return set(symbols)


def _rng(key: str) -> random.Random:
    """A reproducible stream per key; a str seed is hashed with SHA-512, so PYTHONHASHSEED does not matter."""
    return random.Random(key)  # noqa: S311 - a simulation needs a seeded, repeatable PRNG, not a secure one


class PricePath:
    """Geometric Brownian motion in log space, unrounded: log S += (μ − σ²/2)·dt + σ·√dt·Z."""

    def __init__(self, initial: float, drift: float, volatility: float, dt_years: float, rng: random.Random) -> None:
        self._log = math.log(initial)
        self._mean = (drift - volatility * volatility / 2.0) * dt_years
        self._scale = volatility * math.sqrt(dt_years)
        self._rng = rng

    @property
    def price(self) -> float:
        return math.exp(min(self._log, _MAX_LOG))

    def step(self) -> float:
        """Advance one interval and return the new price (capped far above any tick's price: no overflow)."""
        self._log += self._mean + self._scale * self._rng.gauss(0.0, 1.0)
        return math.exp(min(self._log, _MAX_LOG))


def size_sampler(model: LognormalVolume | PoissonVolume, rng: random.Random) -> Callable[[], int]:
    """A function drawing one trade size (an int, a multiple of the model's lot, at most MAX_PRINT_SIZE: capped at
    the most whole lots that fit, as capping the shares made a size no multiple of a large lot)."""
    lot = model.lot
    most = MAX_PRINT_SIZE // lot
    if isinstance(model, LognormalVolume):
        mu = math.log(model.mean) - model.sigma * model.sigma / 2.0  # so the mean size is `mean`
        sigma = model.sigma
        return lambda: lot * min(max(1, round(rng.lognormvariate(mu, sigma) / lot)), most)
    lam = model.mean / lot
    if lam > 30:  # normal approximation; Knuth's method below gets slow and underflows for large means
        sd = math.sqrt(lam)
        return lambda: lot * min(max(0, round(rng.gauss(lam, sd))), most)
    threshold = math.exp(-lam)

    def poisson() -> int:
        count, product = 0, rng.random()
        while product > threshold:
            count += 1
            product *= rng.random()
        return lot * min(count, most)

    return poisson


class ShockPlan:
    """The deterministic part of a symbol's price: the product of all shocks active at a time."""

    def __init__(self, shocks: list[ShockSpec]) -> None:
        self._shocks = [(s.at_ms, s.over_ms, math.log1p(s.move_pct / 100.0), s.spread_multiplier) for s in shocks]

    def at(self, offset_ms: int) -> tuple[float, float]:
        """(price factor, spread multiplier) at `offset_ms` after start; the log-move is linear in the window."""
        log_factor, spread = 0.0, 1.0
        for at_ms, over_ms, log_move, multiplier in self._shocks:
            if offset_ms < at_ms:
                continue
            if over_ms == 0 or offset_ms >= at_ms + over_ms:
                log_factor += log_move
            else:
                log_factor += log_move * (offset_ms - at_ms) / over_ms
                spread = max(spread, multiplier)
        # shocks in a row can add up past what a float holds; the price is capped at MAX_PRICE anyway
        return math.exp(max(-_MAX_LOG, min(log_factor, _MAX_LOG))), spread


class _SymbolSim:
    def __init__(self, scenario: Scenario, spec: SymbolSpec, initial_price: Decimal | None = None) -> None:
        self.spec = spec
        self.symbol = spec.symbol
        self.scenario_id = scenario.id
        dt_years = scenario.tick_interval_ms / YEAR_MS
        base = f"{scenario.seed}/{spec.symbol}"
        initial = spec.initial_price if initial_price is None else initial_price
        self.path = PricePath(float(initial), spec.drift, spec.volatility, dt_years, _rng(f"{base}/price"))
        self.size = size_sampler(spec.volume, _rng(f"{base}/volume"))
        self.shocks = ShockPlan([s for s in scenario.events if s.symbol in ("*", spec.symbol)])
        #: shock factor carried over from earlier passes of a looping live market (1.0 otherwise: exact in float)
        self.carry = 1.0
        self.tick_size = spec.tick_size
        self.tick_f = float(spec.tick_size)
        self.max_ticks = int(MAX_PRICE / spec.tick_size)
        #: the highest bid below the cap (a tick's bid never reaches it; see events.Tick)
        self.max_bid_ticks = int((MAX_PRICE / spec.tick_size).to_integral_value(rounding=ROUND_CEILING)) - 1
        self.max_price_f = float(MAX_PRICE)

    def tick(self, step: int, offset_ms: int, time_ms: int) -> Tick:
        gbm = self.path.price if step == 0 else self.path.step()
        factor, spread_mult = self.shocks.at(offset_ms)
        # a path that ran away stays at the schema's price cap (MAX_PRICE) instead of producing an invalid tick
        mid = min(gbm * factor * self.carry, self.max_price_f)
        m = mid / self.tick_f  # work in whole ticks so every price is an exact multiple of tick_size
        half = self.spec.spread.half_width(mid) * spread_mult / self.tick_f
        if half == 0:
            bid_t = ask_t = round(m)
        else:
            # the tolerance keeps float noise (100 / 0.01 = 10000.000000000002) from adding a tick
            bid_t, ask_t = math.floor(m - half + _EPS_TICKS), math.ceil(m + half - _EPS_TICKS)
        bid_t = min(max(1, bid_t), self.max_bid_ticks)
        ask_t = min(max(bid_t, ask_t), self.max_ticks)
        last_t = min(max(round(m), bid_t), ask_t)
        ts = self.tick_size
        return Tick(symbol=self.symbol, bid=ts * bid_t, ask=ts * ask_t, last=ts * last_t,
                    size=self.size(),
                    event_time_ms=time_ms, seq=step + 1, scenario_id=self.scenario_id)


def _generated(scenario: Scenario, specs: list[SymbolSpec]) -> Iterator[Tick]:
    sims = [_SymbolSim(scenario, spec) for spec in specs]
    start_ms, interval = scenario.start_ms, scenario.tick_interval_ms
    for step in range(scenario.steps):
        offset = step * interval
        for sim in sims:
            yield sim.tick(step, offset, start_ms + offset)



def check_live(scenario: Scenario) -> None:
    """Raise ScenarioError unless the scenario can run as a live market (generated symbols only)."""
    if scenario.source is not None:
        raise ScenarioError.one(scenario.id, "source",
                                "a live market generates its prices and a recorded CSV cannot continue past its "
                                "end; replay it with `tradesim replay` instead")


def generate_live(scenario: Scenario, start_ms: int, *, loop: bool = True,
                  initial_prices: Mapping[str, Decimal] | None = None) -> Iterator[Tick]:
    """The scenario as a live market whose first tick is at `start_ms`; with `loop`, endless.

    A pass is the scenario once; the next pass continues every symbol's path where the last ended: the same
    random streams keep drawing, so the first price of a pass is one ordinary step from the last of the one
    before, the shocks already applied stay applied (the next pass's shocks act on top), and seq and event
    time keep counting. `initial_prices` replaces a symbol's `initial_price` (a restarted feed continues from
    the cached quote). Raises ScenarioError (at the first `next`) for a scenario `check_live` refuses.
    """
    check_live(scenario)
    given = initial_prices or {}
    sims = [_SymbolSim(scenario, spec, given.get(spec.symbol)) for spec in scenario.symbols]
    interval, steps = scenario.tick_interval_ms, scenario.steps
    step = 0
    while True:
        for i in range(steps):
            for sim in sims:
                yield sim.tick(step, i * interval, start_ms + step * interval)
            step += 1
        if not loop:
            return
        for sim in sims:
            # fold in the shock level of the pass's last tick, so the next pass starts from that price (bounded
            # as one pass's level is: a shock repeated every pass would otherwise reach inf, and inf × 0 is nan)
            level = math.log(sim.carry) + math.log(sim.shocks.at((steps - 1) * interval)[0])
            sim.carry = math.exp(max(-_MAX_LOG, min(level, _MAX_LOG)))


def pass_of(scenario: Scenario, tick: Tick) -> int:
    """Which pass (0, 1, ...) of `generate_live` a tick belongs to."""
    return (tick.seq - 1) // scenario.steps
