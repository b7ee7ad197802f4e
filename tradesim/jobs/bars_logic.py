"""Per-record logic of the `bars` job as plain functions: tick parsing, bar accumulation and merge, bar → event.

Everything here is order-independent: a bar is a pure function of the *set* of ticks in its window (open and
close are the ticks with the smallest and largest (event_time_ms, run_id, seq)), so a window recomputed after a
restart from a checkpoint yields byte-identical output. That is what makes an at-least-once sink safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from tradesim.domain.errors import InvalidRecord
from tradesim.domain.events import Bar, DeadLetter, Tick, decode, encode

JOB_NAME = "bars"
INTERVALS_MS: dict[str, int] = {"1s": 1_000, "1m": 60_000}
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


def dead_letter(raw: bytes | str, reason: str, source_topic: str, consumer: str = JOB_NAME) -> str:
    """The JSON record sent to `dead_letter` for a record that could not be parsed."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return encode(DeadLetter(source_topic=source_topic, consumer=consumer, reason=reason, record=text)).decode()


def classify(raw: str, source_topic: str) -> tuple[Tick | None, str | None]:
    """(tick, None) for a valid record, (None, dead-letter JSON) for a malformed one; never raises."""
    try:
        return parse_tick(raw), None
    except InvalidRecord as exc:
        return None, dead_letter(raw, str(exc), source_topic)


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


def reference_bars(ticks: list[Tick], interval: str, watermark_lag_ms: int | None = None) -> list[Bar]:
    """What the job emits for these ticks in this arrival order (no Flink): the oracle for tests and benchmarks.

    With watermark_lag_ms, a tick is dropped as late when its window already closed, i.e. its window end is
    at or before max(event time seen so far) - lag (bounded out-of-orderness watermarks, no allowed lateness).
    """
    size = INTERVALS_MS[interval]
    accs: dict[tuple[str, int], BarAcc] = {}
    max_seen = -1
    for tick in ticks:
        start = window_start(tick.event_time_ms, size)
        watermark = max_seen - (watermark_lag_ms or 0) - 1
        if watermark_lag_ms is not None and start + size - 1 <= watermark:
            continue
        max_seen = max(max_seen, tick.event_time_ms)
        key = (tick.symbol, start)
        accs[key] = add_tick(accs.get(key), tick)
    return [to_bar(acc, interval, start, start + size) for (_, start), acc in sorted(accs.items())]
