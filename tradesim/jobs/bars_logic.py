"""Per-record logic of the `bars` job as plain functions: tick parsing, bar accumulation and merge, bar → event.

Everything here is order-independent: a bar is a pure function of the *set* of ticks in its window (open and
close are the ticks with the smallest and largest (event_time_ms, run_id, seq)), so a window recomputed after a
restart from a checkpoint yields byte-identical output. That is what makes an at-least-once sink safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal

from tradesim.domain.errors import InvalidRecord
from tradesim.domain.events import Bar, BarInterval, Tick, decode, encode
from tradesim.jobs.guard import dead_letter

JOB_NAME = "bars"
INTERVALS_MS: dict[BarInterval, int] = {"1s": 1_000, "1m": 60_000}  # every one of events.BAR_INTERVALS
VWAP_QUANTUM = Decimal("0.00000001")  # 8 decimal places, banker's rounding: deterministic and exact for tests


@dataclass(frozen=True)
class BarAcc:
    """Running aggregate of one symbol's ticks in one window (picklable: it lives in Flink state)."""

    symbol: str
    first: tuple[int, int, int]  # (event_time_ms, run_id, seq) of the open
    open: Decimal
    last: tuple[int, int, int]  # same key of the close
    close: Decimal
    high: Decimal
    low: Decimal
    volume: int
    notional: Decimal  # sum(last * size)
    count: int


def parse_tick(raw: bytes | str) -> Tick:
    """A `market_data` record as a Tick; raises InvalidRecord naming the field."""
    return decode(Tick, raw)


def classify(raw: str, source_topic: str) -> tuple[Tick | None, str | None]:
    """(tick, None) for a valid record, (None, dead-letter JSON) for a malformed one; never raises."""
    try:
        return parse_tick(raw), None
    except InvalidRecord as exc:
        return None, dead_letter(raw, str(exc), source_topic, JOB_NAME)


def tick_key(tick: Tick) -> tuple[int, int, int]:
    return (tick.event_time_ms, tick.run_id, tick.seq)


def acc_from_tick(tick: Tick) -> BarAcc:
    k = tick_key(tick)
    return BarAcc(symbol=tick.symbol, first=k, open=tick.last, last=k, close=tick.last, high=tick.last,
                  low=tick.last, volume=tick.size, notional=tick.last * tick.size, count=1)


def merge(a: BarAcc, b: BarAcc) -> BarAcc:
    """Combine two aggregates of the same symbol; associative and commutative."""
    if a.symbol != b.symbol:
        raise ValueError(f"cannot merge bars of {a.symbol} and {b.symbol}")
    opener = a if a.first <= b.first else b
    closer = a if a.last >= b.last else b
    return BarAcc(symbol=a.symbol, first=opener.first, open=opener.open, last=closer.last, close=closer.close,
                  high=max(a.high, b.high), low=min(a.low, b.low), volume=a.volume + b.volume,
                  notional=a.notional + b.notional, count=a.count + b.count)


def add_tick(acc: BarAcc | None, tick: Tick) -> BarAcc:
    one = acc_from_tick(tick)
    return one if acc is None else merge(acc, one)


def window_start(ts_ms: int, size_ms: int) -> int:
    """Start of the tumbling window (aligned to the epoch) that holds ts_ms."""
    return ts_ms - ts_ms % size_ms


def to_bar(acc: BarAcc, interval: str, start_ms: int, end_ms: int) -> Bar:
    vwap = (acc.notional / acc.volume).quantize(VWAP_QUANTUM, ROUND_HALF_EVEN) if acc.volume else acc.close
    return Bar(symbol=acc.symbol, interval=interval, window_start_ms=start_ms,  # type: ignore[arg-type]
               window_end_ms=end_ms, open=acc.open, high=acc.high, low=acc.low, close=acc.close, vwap=vwap,
               volume=acc.volume, trade_count=acc.count)


def bar_json(acc: BarAcc, interval: str, start_ms: int, end_ms: int) -> str:
    return encode(to_bar(acc, interval, start_ms, end_ms)).decode()


@dataclass
class SymbolBars:
    """One symbol's bar state in the job: its own event-time clock and the windows still open (picklable)."""

    clock_ms: int = -1
    open: dict[tuple[str, int], BarAcc] = field(default_factory=dict)  # (interval, window start) → aggregate


def is_late(clock_ms: int, event_time_ms: int, lag_ms: int) -> bool:
    """A tick is late on its symbol's clock when its 1 s window already closed there (Bars.java's rule too)."""
    return window_start(event_time_ms, INTERVALS_MS["1s"]) + INTERVALS_MS["1s"] - 1 <= clock_ms - lag_ms - 1


def on_tick(state: SymbolBars, tick: Tick, lag_ms: int) -> list[Bar]:
    """Feed one tick to its symbol's state (mutated) and return the bars it closes, oldest window first.

    Event time is per symbol: a window closes when this symbol's own stream passed its end by `lag_ms` (bounded
    out-of-orderness), whatever other symbols' clocks say — so a replay on an older clock on the same topic gets
    its bars. A tick whose 1 s window already closed is late and dropped (its 1 min window closes no earlier).
    """
    if is_late(state.clock_ms, tick.event_time_ms, lag_ms):
        return []
    for interval, size in INTERVALS_MS.items():
        key = (interval, window_start(tick.event_time_ms, size))
        state.open[key] = add_tick(state.open.get(key), tick)
    state.clock_ms = max(state.clock_ms, tick.event_time_ms)
    watermark = state.clock_ms - lag_ms - 1
    done = sorted((start + INTERVALS_MS[interval], INTERVALS_MS[interval], interval, start)
                  for interval, start in state.open if start + INTERVALS_MS[interval] - 1 <= watermark)
    return [to_bar(state.open.pop((iv, start)), iv, start, end) for end, _, iv, start in done]


def reference_bars(ticks: list[Tick], interval: str, watermark_lag_ms: int | None = None) -> list[Bar]:
    """What the job emits for these ticks in this arrival order (no Flink): the oracle for tests and benchmarks.

    With watermark_lag_ms, the job's rule (`on_tick`): per symbol, a tick is dropped as late when its window
    already closed on that symbol's clock. Without it, every tick counts and every window is returned.
    """
    if watermark_lag_ms is not None:
        states: dict[str, SymbolBars] = {}
        bars = [b for t in ticks for b in on_tick(states.setdefault(t.symbol, SymbolBars()), t, watermark_lag_ms)]
        bars += [to_bar(acc, iv, start, start + INTERVALS_MS[iv]) for st in states.values()
                 for (iv, start), acc in st.open.items()]
        return sorted((b for b in bars if b.interval == interval), key=lambda b: (b.symbol, b.window_start_ms))
    size = INTERVALS_MS[interval]
    accs: dict[tuple[str, int], BarAcc] = {}
    for tick in ticks:
        key = (tick.symbol, window_start(tick.event_time_ms, size))
        accs[key] = add_tick(accs.get(key), tick)
    return [to_bar(acc, interval, start, start + size) for (_, start), acc in sorted(accs.items())]
