"""The account channel's input: every OrderOutcome on `trade_executed`, read from where the topic ended at start.

No consumer-group offsets: a client is promised the outcomes read after its subscription was acknowledged and
fills older ones over REST, so every service copy reads every partition (any copy serves any user) from its end.
Partitions added later are found by a metadata refresh every REFRESH_S and read from their beginning (all their
records are newer than the start). A malformed record is skipped with a log line and a metric: this is a
read-only fan-out; the topic's owners dead-letter it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from tradesim.adapters.kafka.client import consumer as make_consumer
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.events import OrderOutcome, decode
from tradesim.services.marketdata import metrics
from tradesim.services.marketdata.consumer import FETCH_WAIT_MS
from tradesim.settings import Settings

log = logging.getLogger("tradesim.marketdata.outcomes")
#: seconds between looks for partitions added to trade_executed (one metadata request)
REFRESH_S = 10.0
#: an outcome and its record's JSON text (sent on as is)
Outcome = tuple[OrderOutcome, str]
Deliver = Callable[[list[Outcome]], None]
#: called (from the feed's thread) once every partition's start offset is fixed
Ready = Callable[[], None]


class OutcomeFeed:
    """Consumes in its own thread; hands each batch of decoded outcomes to `deliver` (which must be thread-safe).

    `ready` is called (thread-safe too) once every partition's start offset is fixed: an account subscription
    acknowledged after that gets every outcome written after that.
    """

    def __init__(self, settings: Settings, stop: threading.Event, deliver: Deliver, ready: Ready) -> None:
        self.settings = settings
        self.topic = settings.topics.trade_executed
        self.stop = stop
        self.deliver = deliver
        self.ready = ready
        self._partitions: set[int] = set()

    def run(self) -> None:
        s = self.settings
        # assign(), never subscribe(): the group id only names the client (no offsets are committed or read)
        consumer = make_consumer(s.kafka, f"{s.marketdata.group_id}-outcomes", **{"fetch.wait.max.ms": FETCH_WAIT_MS})
        try:
            self._start_at_end(consumer)
            self.ready()
            log.info("following outcomes", extra={"topic": self.topic, "partitions": sorted(self._partitions)})
            refreshed = time.monotonic()
            while not self.stop.is_set():
                first = consumer.poll(0.1)
                batch = [] if first is None else [first, *consumer.consume(s.marketdata.batch_size - 1, 0)]
                outcomes = self._decode(batch)
                if outcomes:
                    self.deliver(outcomes)
                if time.monotonic() - refreshed >= REFRESH_S:
                    refreshed = time.monotonic()
                    self._add_new_partitions(consumer)
        finally:
            consumer.close()

    def _list_partitions(self, consumer: Consumer, timeout_s: float) -> set[int] | None:
        """The topic's partitions; an empty set if it does not exist (yet); None if Kafka did not answer."""
        try:
            meta = consumer.list_topics(self.topic, timeout=timeout_s).topics.get(self.topic)
        except KafkaException as exc:
            log.warning("no metadata for the outcome topic", extra={"topic": self.topic, "error": str(exc)})
            return None
        if meta is None or meta.error is not None:
            return set()
        return set(meta.partitions)

    def _start_at_end(self, consumer: Consumer) -> None:
        """Assign every partition at its current end, retrying (capped backoff) until Kafka answers."""
        backoff = 0.1
        while not self.stop.is_set():
            try:
                parts = self._list_partitions(consumer, 5.0)
                if parts is not None:
                    ends = [TopicPartition(self.topic, p, consumer.get_watermark_offsets(
                        TopicPartition(self.topic, p), timeout=5.0, cached=False)[1]) for p in sorted(parts)]
                    consumer.assign(ends)
                    self._partitions = parts
                    return
            except KafkaException as exc:
                log.warning("cannot find the end of the outcome topic, retrying",
                            extra={"topic": self.topic, "error": str(exc), "backoff_s": backoff})
            self.stop.wait(backoff)
            backoff = min(backoff * 2, 2.0)

    def _add_new_partitions(self, consumer: Consumer) -> None:
        parts = self._list_partitions(consumer, 2.0)
        new = sorted((parts or set()) - self._partitions)
        if new:
            consumer.incremental_assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in new])
            self._partitions.update(new)
            log.info("following new outcome partitions", extra={"topic": self.topic, "partitions": new})

    def _decode(self, batch: list[Message]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for msg in batch:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error", extra={"topic": self.topic, "error": str(err)})
                continue
            metrics.OUTCOMES_IN.inc()
            raw = msg.value() or b""
            try:
                outcome = decode(OrderOutcome, raw)
                text = raw.decode()
            except (InvalidRecord, UnicodeDecodeError) as exc:
                metrics.OUTCOMES_SKIPPED.inc()
                log.warning("malformed outcome record skipped", extra={
                    "source": f"{msg.topic()}/{msg.partition()}/{msg.offset()}", "error": str(exc)})
                continue
            if outcome.order_type == "market" and outcome.placed_at_ms is not None:  # resting orders wait by design
                metrics.ORDER_TO_OUTCOME.observe(max(0, outcome.decided_at_ms - outcome.placed_at_ms) / 1000)
            outcomes.append((outcome, text))
        return outcomes
