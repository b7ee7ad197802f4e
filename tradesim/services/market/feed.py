"""The feed: `generate_live` ticks stamped with one run id, paced on the simulated clock, published with the
ingest publisher.

Each start of the feed takes a run id newer than the last one (epoch ms, at least the previous + 1), so the
price cache's "newer run wins" lets it take over; its passes keep that id (seq keeps counting). Event time
starts at the wall clock (rounded up to the tick interval), so bars, DAY orders and the TUI see the present —
unless an earlier run already took these symbols past it: then it goes on from there (`known_clocks`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from pathlib import Path

from pydantic import TypeAdapter

from tradesim.adapters.kafka.errors import KafkaDeliveryError
from tradesim.domain.events import Tick
from tradesim.files import replace_text
from tradesim.scenarios.generators import generate_live, pass_of
from tradesim.scenarios.model import Scenario
from tradesim.scenarios.runner import SimClock
from tradesim.services.ingest.publisher import PublishStats, TickPublisher
from tradesim.services.market import metrics
from tradesim.settings import Settings

_log = logging.getLogger("tradesim.market")
FAILURE_LOG_EVERY_S = 30.0


@dataclass(frozen=True)
class RunRecord:
    """What the running feed plays, as written to its run file (read by `tradesim market status`)."""

    run_id: int
    scenario: str
    scenario_id: str
    speed: float
    loop: bool
    start_ms: int  # event time of the first tick
    started_at_ms: int  # wall time the feed started
    pid: int
    #: the market time each symbol reached, in this run and every earlier one (see RunFile)
    clocks: dict[str, int] = field(default_factory=dict)
    continued_ms: int | None = None  # the market time this run went on from; None: it started at the wall clock
    cache_answered: bool = True  # False: Redis did not answer at the start (prices and clocks not read from it)


#: the run file read as RunRecord declares its fields, strictly (`true` is no run id, `100` is a speed); fields of
#: another version are left out
_RUN_FILE = TypeAdapter(RunRecord)


def read_run(path: Path) -> RunRecord | None:
    """The run file, or None when it is missing or not one (a field of the wrong type included)."""
    try:
        return _RUN_FILE.validate_json(path.read_bytes(), strict=True)
    except (OSError, ValueError):  # a file of another shape: as missing (the feed's next run id, `market status`)
        return None


def write_run(path: Path, record: RunRecord) -> None:
    replace_text(path, json.dumps(asdict(record)) + "\n")


def next_run_id(previous: int | None, now_ms: int) -> int:
    """Newer than any earlier run: the wall clock in ms, but past the previous id even if the clock went back."""
    return now_ms if previous is None else max(now_ms, previous + 1)


def first_event_time(now_ms: int, interval_ms: int) -> int:
    """The wall clock rounded up to the tick interval, so ticks fall on round times."""
    return -(-now_ms // interval_ms) * interval_ms


def start_time(now_ms: int, interval_ms: int, symbols: Iterable[str], clocks: Mapping[str, int]
               ) -> tuple[int, int | None]:
    """A run's first event time, and the market time it goes on after (None: it starts at the wall clock):
    after the latest market time its symbols reached (`known_clocks`) when the wall clock is not past it."""
    wall = first_event_time(now_ms, interval_ms)
    reached = max((clocks[s] for s in symbols if s in clocks), default=None)
    if reached is None or reached < wall:
        return wall, None
    return first_event_time(reached + 1, interval_ms), reached


def known_clocks(cached: Mapping[str, Tick], previous: RunRecord | None) -> dict[str, int]:
    """The latest market time known for each symbol: its cached tick (any scenario's: they share symbol names) and
    the last run file's clocks, which every run carries forward (a replay on an older clock may have taken the
    cache over since). A new run starts after the latest of its symbols: the bars job closes each symbol's
    windows on that symbol's clock, so a run that started behind it (after one at --speed 100) had every tick
    dropped as late until the wall clock caught up, hours later."""
    clocks = dict(previous.clocks) if previous is not None else {}
    for symbol, tick in cached.items():
        clocks[symbol] = max(clocks.get(symbol, tick.event_time_ms), tick.event_time_ms)
    return clocks


def cached_ticks(settings: Settings, symbols: Iterable[str]) -> dict[str, Tick] | None:
    """The cached tick of each of these symbols that has one; None when Redis does not answer."""
    import redis

    from tradesim.adapters.redis.client import connect
    from tradesim.adapters.redis.prices import PriceCache

    try:
        return PriceCache(connect(settings.redis)).latest_many(symbols)
    except redis.RedisError:
        return None


def continued_prices(scenario: Scenario, cached: Mapping[str, Tick]) -> dict[str, Decimal]:
    """The cached prices this scenario wrote: a restarted feed goes on from there instead of jumping back to the
    file's initial prices (another scenario's price of a shared symbol is not this one's path)."""
    return {symbol: tick.last for symbol, tick in cached.items() if tick.scenario_id == scenario.id}


class RunFile:
    """A running feed's run file, rewritten at most every `every_s` with the market time its symbols reached,
    so the next run knows it even when the price cache does not (a replay took it over, Redis was emptied).

    While the feed runs each clock is written ahead by what the feed may publish before the next write (twice
    `every_s` at its speed), and at once when a tick passes it (a burst after a stall), so a feed killed outright
    leaves a clock past its last tick, never behind it; a clean stop (`flush`) writes the exact one."""

    def __init__(self, path: Path, record: RunRecord, every_s: float = 1.0) -> None:
        self.path = path
        self.record = record
        self.every_s = every_s
        self._margin_ms = int(2 * every_s * record.speed * 1000)
        self._reached: dict[str, int] = {}
        self._written = record
        self._tried = record  # the last one written or tried (a failing disk: not tried again at every tick)
        self._written_at = time.monotonic()
        write_run(path, record)

    def advance(self, symbol: str, event_time_ms: int) -> None:
        """Also written at once when a tick passes its written clock: after a stall (the process stopped, a slow
        poll) the clock releases the missed ticks in a burst, more market time within a second than the margin."""
        self._reached[symbol] = event_time_ms
        written = self._tried.clocks.get(symbol)
        if time.monotonic() - self._written_at >= self.every_s or (written is not None and event_time_ms > written):
            self._write(self._margin_ms)

    def flush(self) -> None:
        """The exact clocks: the feed publishes no more."""
        self._write(0)

    def _write(self, margin_ms: int) -> None:
        self._written_at = time.monotonic()
        record = replace(self.record, clocks={**self.record.clocks,
                                              **{s: t + margin_ms for s, t in self._reached.items()}})
        if record == self._written:
            return
        self._tried = record
        try:
            write_run(self.path, record)
            self._written = record
        except OSError as exc:
            _log.warning("cannot update the run file", extra={"path": str(self.path), "error": str(exc)})


class LiveFeed:
    """Publishes the live market until `stop` is set (or, without loop, until the scenario ends)."""

    def __init__(self, settings: Settings, scenario: Scenario, *, speed: float, loop: bool, run_id: int,
                 start_ms: int, initial_prices: dict[str, Decimal] | None = None,
                 run_file: RunFile | None = None) -> None:
        self.settings = settings
        self.scenario = scenario
        self.speed = speed
        self.loop = loop
        self.run_id = run_id
        self.start_ms = start_ms
        self.initial_prices = initial_prices or {}
        self.run_file = run_file
        self._counted = (0, 0)  # delivered, failed already added to the counters
        self._failure_logged_at = float("-inf")

    def run(self, stop: threading.Event) -> PublishStats:
        """Publish until stopped; flushes what is in flight before returning."""
        metrics.RUN_ID.set(self.run_id)
        publisher = TickPublisher(self.settings, paced=True)  # held to its clock
        clock = SimClock(self.speed, start_ms=self.start_ms, sleep=_serving_sleep(stop, publisher))
        current = 0
        try:
            ticks = generate_live(self.scenario, self.start_ms, loop=self.loop, initial_prices=self.initial_prices)
            for tick in ticks:
                clock.wait_until(tick.event_time_ms)
                if stop.is_set():
                    break
                done = pass_of(self.scenario, tick)
                if done > current:
                    metrics.LOOPS.inc(done - current)
                    current = done
                    _log.info("pass completed; continuing from the last prices", extra={"passes": done})
                publisher.publish(tick.model_copy(update={"run_id": self.run_id}))
                publisher.poll()
                metrics.LAST_EVENT_TIME.set(tick.event_time_ms / 1000)
                if self.run_file is not None:
                    self.run_file.advance(tick.symbol, tick.event_time_ms)
                self._count(publisher.stats)
            else:
                metrics.LOOPS.inc()
                metrics.FINISHED.set(1)
                _log.info("scenario played to the end; not looping, so the feed idles until stopped",
                          extra={"ticks": publisher.stats.sent})
        finally:
            if self.run_file is not None:
                self.run_file.flush()  # before the close, which may take seconds or raise
            try:
                publisher.close(timeout_s=10)
            except KafkaDeliveryError as exc:
                _log.error("ticks not delivered at close", extra={"error": str(exc)})
            self._count(publisher.stats)
        stop.wait()
        return publisher.stats

    def _count(self, stats: PublishStats) -> None:
        delivered, failed = self._counted
        if stats.delivered > delivered:
            metrics.PUBLISHED.inc(stats.delivered - delivered)
        if stats.failed > failed:
            metrics.FAILED.inc(stats.failed - failed)
            now = time.monotonic()
            if now - self._failure_logged_at >= FAILURE_LOG_EVERY_S:
                self._failure_logged_at = now
                _log.error("ticks not delivered to Kafka", extra={"failed_total": stats.failed,
                                                                   "first_error": stats.first_error})
        self._counted = (stats.delivered, stats.failed)


def _serving_sleep(stop: threading.Event, publisher: TickPublisher) -> Callable[[float], None]:
    """The pacing sleep: serves delivery reports while it waits (so the counters are current) and ends early
    when SIGTERM sets `stop`."""

    def sleep(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            publisher.poll(min(remaining, 0.1))

    return sleep
