"""High-throughput tick producer: batching (linger), lz4, delivery callbacks, no per-message flush."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, Message

from tradesim.adapters.kafka.client import producer
from tradesim.adapters.kafka.errors import KafkaDeliveryError
from tradesim.domain.events import Tick, encode
from tradesim.settings import Settings


@dataclass
class PublishStats:
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    first_error: str | None = None
    started: float = field(default_factory=time.monotonic)
    last_event_time_ms: int = 0

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        return self.delivered / self.elapsed_s if self.elapsed_s > 0 else 0.0


class TickPublisher:
    """Produces ticks asynchronously; `close()` waits for every delivery report and raises on any failure.
    `paced`: held to a clock, so each tick goes out at once; else it lingers 1 ms to batch (market-data.md)."""

    def __init__(self, settings: Settings, *, paced: bool) -> None:
        self.topic = settings.topics.market_data
        self._producer = producer(settings.kafka, **{
            "linger.ms": 0 if paced else 1,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 500_000,
        })
        self.stats = PublishStats()

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            self.stats.delivered += 1
        else:
            self.stats.failed += 1
            self.stats.first_error = self.stats.first_error or str(err)

    def publish(self, tick: Tick) -> None:
        value = encode(tick)
        while True:
            try:
                self._producer.produce(self.topic, key=tick.key, value=value, on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.05)  # local queue full: serve delivery reports, then retry
        self.stats.sent += 1
        self.stats.last_event_time_ms = tick.event_time_ms
        if self.stats.sent % 1000 == 0:
            self._producer.poll(0)

    def poll(self, timeout_s: float = 0.0) -> None:
        """Serve delivery reports now: a slow steady feed would otherwise count them only every 1000 ticks."""
        self._producer.poll(timeout_s)

    def close(self, timeout_s: float = 60) -> PublishStats:
        remaining = self._producer.flush(timeout_s)
        if remaining or self.stats.failed:
            raise KafkaDeliveryError(
                f"{self.stats.failed} ticks failed and {remaining} were not acknowledged within {timeout_s:.0f} s"
                + (f": {self.stats.first_error}" if self.stats.first_error else ""))
        return self.stats


def publish_all(settings: Settings, ticks: Iterable[Tick], run_id: int | None = None,
                pace: Callable[[int], None] | None = None,
                progress: Callable[[PublishStats], None] | None = None, paced: bool | None = None) -> PublishStats:
    """Publish a tick stream stamped with one run id; `pace(event_time_ms)` may hold each tick back. `paced`
    (default: whether `pace` is given) says the stream comes at a clock's rate, for one paced by its iterator."""
    run = run_id if run_id is not None else int(time.time() * 1000)
    pub = TickPublisher(settings, paced=pace is not None if paced is None else paced)
    for tick in ticks:
        if pace is not None:
            pace(tick.event_time_ms)
        pub.publish(tick.model_copy(update={"run_id": run}))
        if progress is not None and pub.stats.sent % 500 == 0:
            progress(pub.stats)
    stats = pub.close()
    if progress is not None:
        progress(stats)
    return stats
