"""The feed: `generate_live` ticks stamped with one run id, paced on the simulated clock, published with the
ingest publisher.

Each start of the feed takes a run id newer than the last one (epoch ms, at least the previous + 1), so the
price cache's "newer run wins" lets it take over; its passes keep that id (seq keeps counting). Event time
starts at the wall clock (rounded up to the tick interval), so bars, DAY orders and the TUI see the present.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path

from tradesim.adapters.kafka.errors import KafkaDeliveryError
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


def read_run(path: Path) -> RunRecord | None:
    try:
        return RunRecord(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_run(path: Path, record: RunRecord) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record)) + "\n")
    os.replace(tmp, path)


def next_run_id(previous: int | None, now_ms: int) -> int:
    """Newer than any earlier run: the wall clock in ms, but past the previous id even if the clock went back."""
    return now_ms if previous is None else max(now_ms, previous + 1)


def first_event_time(now_ms: int, interval_ms: int) -> int:
    """The wall clock rounded up to the tick interval, so ticks fall on round times."""
    return -(-now_ms // interval_ms) * interval_ms


def cached_prices(settings: Settings, scenario: Scenario) -> dict[str, Decimal]:
    """The last cached price of each of the scenario's symbols that this scenario wrote (a restarted feed goes
    on from there instead of jumping back to the file's initial prices); {} when Redis does not answer."""
    import redis

    from tradesim.adapters.redis.client import connect
    from tradesim.adapters.redis.prices import PriceCache

    found: dict[str, Decimal] = {}
    try:
        cache = PriceCache(connect(settings.redis))
        for spec in scenario.symbols:
            latest = cache.latest(spec.symbol)
            if latest is not None and latest[0].scenario_id == scenario.id:
                found[spec.symbol] = latest[0].last
    except redis.RedisError as exc:
        _log.warning("no cached prices to continue from; starting at the scenario's",
                     extra={"error": str(exc)})
        return {}
    return found


class LiveFeed:
    """Publishes the live market until `stop` is set (or, without loop, until the scenario ends)."""

    def __init__(self, settings: Settings, scenario: Scenario, *, speed: float, loop: bool, run_id: int,
                 start_ms: int, initial_prices: dict[str, Decimal] | None = None) -> None:
        self.settings = settings
        self.scenario = scenario
        self.speed = speed
        self.loop = loop
        self.run_id = run_id
        self.start_ms = start_ms
        self.initial_prices = initial_prices or {}
        self._counted = (0, 0)  # delivered, failed already added to the counters
        self._failure_logged_at = float("-inf")

    def run(self, stop: threading.Event) -> PublishStats:
        """Publish until stopped; flushes what is in flight before returning."""
        metrics.RUN_ID.set(self.run_id)
        publisher = TickPublisher(self.settings)
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
                self._count(publisher.stats)
            else:
                metrics.LOOPS.inc()
                metrics.FINISHED.set(1)
                _log.info("scenario played to the end; not looping, so the feed idles until stopped",
                          extra={"ticks": publisher.stats.sent})
        finally:
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
