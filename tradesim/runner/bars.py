"""Bars for a strategy, built by the runner from the ticks it publishes: the same windows and values as the `bars`
job (tradesim.jobs.bars_logic), closed on the stream's time so a strategy sees each bar at a fixed point of the
tick stream, whatever the job's watermark does."""

from __future__ import annotations

from collections.abc import Callable

from tradesim.domain.events import Bar, Tick
from tradesim.jobs.bars_logic import INTERVALS_MS, BarAcc, add_tick, to_bar, window_start


class BarBuilder:
    """Tumbling 1 s / 1 min bars per symbol; `closed_by(t)` hands out, once, every bar whose window ended at or
    before `t` (stream time across all symbols), in (window end, interval, symbol) order. `name`: the symbol to
    order by (the scenario's, not the run's: `BRK` and `BRK.B` renamed per run sort either way)."""

    def __init__(self, name: Callable[[str], str] = str) -> None:
        self._open: dict[tuple[str, str, int], BarAcc] = {}
        self._name = name

    def add(self, tick: Tick) -> None:
        for interval, size in INTERVALS_MS.items():
            key = (tick.symbol, interval, window_start(tick.event_time_ms, size))
            self._open[key] = add_tick(self._open.get(key), tick)

    def closed_by(self, time_ms: int) -> list[Bar]:
        done = [k for k in self._open if k[2] + INTERVALS_MS[k[1]] <= time_ms]
        bars = [to_bar(self._open.pop(k), k[1], k[2], k[2] + INTERVALS_MS[k[1]]) for k in done]
        return sorted(bars, key=lambda b: (b.window_end_ms, b.interval, self._name(b.symbol)))
