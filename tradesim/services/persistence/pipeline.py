"""One sink's loop: consume `trade_executed` → batch (size or age) → write → commit.

The position advances only after the batch is in the sink, so a crash re-delivers it; the sink makes a repeat a
no-op (effectively once). While the sink is down the batch is retried with a capped backoff and the position
holds; the consumer keeps polling, so it stays in its group, and holds what arrives for the next batch (paused
only once MAX_HELD_BATCHES are held). A record that is not an outcome, or that
the sink refuses for what it is (`Refused`), goes to `dead_letter` with the reason. Any other error is the
record's fault only if the sink takes other records: a batch that fails is written one record at a time, and a
record that fails, and fails again after others were written, goes to `dead_letter`; when nothing is written (a
missing table, a bug that hits all) the sink stalls, retrying, and takes in the records that arrive meanwhile, so
that one poison record alone in its batch is told apart by the next one that passes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from tradesim.adapters.kafka.client import SHORT_SESSION, group_lag
from tradesim.adapters.kafka.client import consumer as make_consumer
from tradesim.adapters.kafka.dead_letters import DeadLetterSender
from tradesim.adapters.tracing import ORDER_ATTRIBUTE, SpanKind, Tracing
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.events import OrderOutcome, decode
from tradesim.domain.trades import TradeRecord, record_of
from tradesim.ports import Refused, TradeSink, Unavailable
from tradesim.services.persistence import metrics
from tradesim.settings import Settings

log = logging.getLogger("tradesim.persistence")
#: while a sink retries, up to this many batches of new records are held (then the consumer pauses), and a batch
#: that nothing of is written grows to at most as many
MAX_HELD_BATCHES = 4
#: a held batch reads on to this many hold limits, written ones too (a bound on memory and on what a crash re-reads)
MAX_HELD_SPAN = 8
#: the broker holds a fetch until this much is there or FETCH_WAIT_MS passed (docs/design/persistence.md)
FETCH_MIN_BYTES = 1 << 20
FETCH_WAIT_MS = 100
#: how long Kafka has to acknowledge a batch's dead letters before the batch is handled again
LETTER_DEADLINE_S = 30.0


def fetch_held_ms(settings: Settings) -> int:
    """How long the broker may hold a sink's fetch: FETCH_WAIT_MS, taken from the batch's `flush_ms` so the oldest
    outcome still waits at most that; 0 (a fetch answered per record) when `flush_ms` is too short to share."""
    return FETCH_WAIT_MS if settings.persistence.flush_ms >= 2 * FETCH_WAIT_MS else 0


def sink_consumer(settings: Settings, group: str) -> Consumer:
    """A sink's consumer of `trade_executed` (a short session: a restarted service resumed 45 s after a kill -9)."""
    held = fetch_held_ms(settings)
    fetch = {"fetch.min.bytes": FETCH_MIN_BYTES, "fetch.wait.max.ms": held} if held else {}
    return make_consumer(settings.kafka, group, **fetch, **SHORT_SESSION)


@dataclass
class Decoded:
    records: list[tuple[TradeRecord, Message]]
    refused: list[tuple[Message, str]]
    parents: dict[str, str] = field(default_factory=dict)  # order id → traceparent, for the traced outcomes


def decode_batch(batch: Sequence[Message]) -> Decoded:
    """Outcomes of a batch of `trade_executed` records, and the records that are not (with the reason)."""
    out = Decoded([], [])
    for msg in batch:
        try:
            outcome = decode(OrderOutcome, msg.value() or b"")
            out.records.append((record_of(outcome), msg))
        except InvalidRecord as exc:
            out.refused.append((msg, f"invalid outcome: {exc}"))
            continue
        if outcome.traceparent is not None:
            out.parents[outcome.order_id] = outcome.traceparent
    return out


def next_offsets(batch: Sequence[Message]) -> list[TopicPartition]:
    """The position after each partition's last record in the batch."""
    last: dict[tuple[str, int], int] = {}
    for msg in batch:
        key = (msg.topic() or "", msg.partition() or 0)
        last[key] = max(last.get(key, -1), msg.offset() or 0)
    return [TopicPartition(topic, part, offset + 1) for (topic, part), offset in last.items()]


S = TypeVar("S")  # where a record was read (a Kafka message in the service): what a dead letter names


@dataclass
class Pass(Generic[S]):
    """One write of a list of records: how many the sink took, those that failed with an error other than a
    refusal (with where each was read and the error), and how many of those come after the last record the sink
    answered (took or refused)."""

    written: int
    failed: list[tuple[TradeRecord, S, Exception]]
    trailing: int


class BatchWriter(Generic[S]):
    """The write rule of a batch, apart from Kafka: which failing records are set aside and which are held.

    `write` is the sink's write, retried while the sink is unavailable (False: asked to stop first); `set_aside`
    sends a record to dead_letter with the reason."""

    def __init__(self, name: str, write: Callable[[list[TradeRecord]], bool],
                 set_aside: Callable[[S, str], None]) -> None:
        self.name = name
        self._put = write
        self._set_aside = set_aside

    def settle(self, records: list[tuple[TradeRecord, S]],
               held: Callable[[list[tuple[TradeRecord, S, Exception]]], list[tuple[TradeRecord, S]]]) -> int | None:
        """Write the records until each is in the sink or set aside. While some are held, `held` is called with
        the failed ones before each retry: it waits and returns the records read meanwhile, written after them.
        Returns how many records the sink took; None if asked to stop first."""
        written = 0
        while (got := self.write(records)) is not None:
            written += got.written
            if not got.failed:
                return written
            if not got.trailing:  # the sink took a record after each that failed: these fail on their own; once more
                again = self.write([(record, src) for record, src, _ in got.failed])  # (it may have come back)
                if again is None:
                    return None
                for _, src, exc in again.failed:
                    self._set_aside(src, f"{self.name} failed on this record: {type(exc).__name__}: {exc}")
                return written + again.written
            # the sink failed every record after its last write (or wrote none): the sink rather than a record (it
            # broke midway: a disk full), or the last records are the poison and only records after them tell; hold
            # the position and retry, with what comes in
            records = [(record, src) for record, src, _ in got.failed] + held(got.failed)
        return None  # stopping: the batch is not committed, the next start re-delivers it

    def write(self, sources: list[tuple[TradeRecord, S]]) -> Pass[S] | None:
        """Write the batch; if the sink fails it, one record at a time. The records the sink refuses are set aside.
        None if asked to stop first."""
        if not sources:
            return Pass(0, [], 0)
        try:
            return Pass(len(sources), [], 0) if self._put([r for r, _ in sources]) else None
        except Exception as exc:  # noqa: BLE001 - Refused, InvalidRecord or unexpected: find the record(s) at fault
            log.warning("sink failed the batch; writing one by one", extra={"sink": self.name, "error": str(exc)})
        failed: list[tuple[TradeRecord, S, Exception]] = []
        written = trailing = 0
        for record, src in sources:
            try:
                if not self._put([record]):
                    return None
                written += 1
                trailing = 0
            except (Refused, InvalidRecord) as exc:  # this one record cannot be stored: set it aside, go on
                self._set_aside(src, f"refused by {self.name}: {exc}")
                trailing = 0
            except Exception as exc:  # noqa: BLE001 - settle tells a poison record from a broken sink
                failed.append((record, src, exc))
                trailing += 1
        return Pass(written, failed, trailing)


class SinkWorker:
    """Carries `trade_executed` into one sink with its own consumer group (so one sink's outage never holds the
    other's position)."""

    def __init__(self, settings: Settings, sink: TradeSink, consumer: Consumer, letters: DeadLetterSender,
                 stop: threading.Event, clock: Callable[[], float] = time.time, probe: Consumer | None = None,
                 tracing: Tracing | None = None) -> None:
        self.settings = settings
        self.tracing = tracing or Tracing.off()
        self.sink = sink
        self.consumer = consumer
        self.probe = probe  # a consumer of the same group that consumes nothing, for the lag metric
        self.stop = stop
        self.name = settings.persistence.group(sink.name)
        self.letters = letters
        self.writer = BatchWriter[Message](sink.name, self._retrying, self._dead_letter)
        self._clock = clock
        self._last_lag = 0.0
        self._held: list[Message] = []  # read while the sink retried, not yet in a batch; they come first
        self._paused: set[tuple[str, int]] = set()  # partitions that brought more than the hold takes, until it drains
        self.persisted = 0  # records (valid or not) whose position is committed, since start

    @classmethod
    def wired(cls, settings: Settings, sink: TradeSink, stop: threading.Event, tracing: Tracing | None = None
              ) -> SinkWorker:
        group = settings.persistence.group(sink.name)
        letters = DeadLetterSender.connect(settings.kafka, settings.topics.dead_letter, group, LETTER_DEADLINE_S)
        return cls(settings, sink, sink_consumer(settings, group), letters, stop,
                   probe=make_consumer(settings.kafka, group), tracing=tracing)

    def subscribe(self) -> None:
        """Join the sink's group on `trade_executed` (`run` does it first)."""
        topic = self.settings.topics.trade_executed
        self.consumer.subscribe([topic], on_revoke=self._revoked)
        log.info("consuming", extra={"topic": topic, "group": self.name})

    def run(self) -> None:
        self.subscribe()
        try:
            while not self.stop.is_set():
                batch = self._collect()
                if batch:
                    self._persist(batch)
                self._report_lag()
        finally:
            self.letters.close(2)
            self.consumer.close()
            if self.probe is not None:
                self.probe.close()

    def _collect(self) -> list[Message]:
        """Up to batch_size records, or what came within flush_ms of the first one (counting the time the broker
        may have held it); the held records first."""
        p = self.settings.persistence
        batch, self._held = self._held[:p.batch_size], self._held[p.batch_size:]
        if self._paused and len(self._held) < self._hold_limit():  # taken from (or emptied by a rewind): room
            with contextlib.suppress(KafkaException):
                self.consumer.resume([TopicPartition(*key) for key in self._paused])
            self._paused.clear()
        if not batch:
            first = self.consumer.poll(0.2)
            if first is None:
                return []
            batch = [first]
        deadline = time.monotonic() + (p.flush_ms - fetch_held_ms(self.settings)) / 1000
        while len(batch) < p.batch_size and not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            batch += self.consumer.consume(p.batch_size - len(batch), min(left, 0.2))
        good = []
        for msg in batch:
            err = msg.error()
            if err is None:
                good.append(msg)
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("consume error", extra={"sink": self.sink.name, "error": str(err)})
        return good

    def _persist(self, batch: list[Message]) -> None:
        start_ns = time.time_ns()
        parents: dict[str, str] = {}
        records = self._decoded(batch, parents)
        outcomes = list(records)  # every outcome of the (growing) batch, for the visibility metric
        backoff = 0.1

        def held(failed: list[tuple[TradeRecord, Message, Exception]]) -> list[tuple[TradeRecord, Message]]:
            nonlocal backoff
            metrics.RETRIES.labels(self.sink.name).inc()
            log.error("sink write failed, retrying", extra={"sink": self.sink.name, "error": str(failed[-1][2]),
                                                            "records": len(failed), "backoff_s": backoff})
            self._idle(backoff)
            backoff = min(backoff * 2, self.settings.persistence.backoff_max_s)
            # the limit counts what is still to be written: records set aside (not outcomes, refused) are done
            room = len(failed) < self._hold_limit() and len(batch) < MAX_HELD_SPAN * self._hold_limit()
            more = self._collect() if room else []
            batch.extend(more)
            fresh = self._decoded(more, parents)
            outcomes.extend(fresh)
            return fresh

        written = self.writer.settle(records, held)
        if written is None:
            return  # stopping: the batch is not committed, the next start re-delivers it
        if not self.letters.delivered(self.stop):  # a record's position must not move before its letter is out
            if self.stop.is_set():
                return  # uncommitted: the next start handles the batch again
            log.warning("dead letters not delivered; the batch will be handled again",
                        extra={"sink": self.sink.name, "error": self.letters.last_error})
            self._rewind(batch)
            self.stop.wait(1.0)  # a letter Kafka refuses at once must not spin the sink
            return
        try:
            self.consumer.commit(offsets=next_offsets(batch), asynchronous=False)
        except KafkaException as exc:
            # e.g. a rebalance took the partitions away: the new owner re-delivers, the sink ignores the repeat
            log.warning("commit failed; the batch will be delivered again", extra={"error": str(exc)})
            self._rewind(batch)
            return
        self.persisted += len(batch)
        metrics.BATCHES.labels(self.sink.name).inc()
        metrics.WRITTEN.labels(self.sink.name).inc(written)
        now = self._clock()
        for record, _ in outcomes:
            metrics.VISIBLE.labels(self.sink.name).observe(max(0.0, now - record.decided_at_ms / 1000))
        for order_id, parent in parents.items():  # the write of each traced outcome, from its batch's start
            self.tracing.record(f"write {self.sink.name}", parent, start_ns, kind=SpanKind.CONSUMER,
                                attributes={ORDER_ATTRIBUTE: order_id, "batch": len(batch)})

    def _decoded(self, batch: list[Message], parents: dict[str, str]) -> list[tuple[TradeRecord, Message]]:
        """The batch's outcomes (their trace parents added to `parents`); the records that are not go to
        dead_letter."""
        decoded = decode_batch(batch)
        for msg, reason in decoded.refused:
            self._dead_letter(msg, reason)
        parents.update(decoded.parents)
        return decoded.records

    def _retrying(self, records: list[TradeRecord]) -> bool:
        """Write, retrying while the sink is unavailable with a capped backoff while the position holds; False if
        asked to stop first. Any other error is raised."""
        backoff = 0.1
        while not self.stop.is_set():
            try:
                for record in records:
                    self.settings.faults.check("persist", record.symbol)
                self.sink.write(records)
                return True
            except Unavailable as exc:
                metrics.RETRIES.labels(self.sink.name).inc()
                log.warning("sink unavailable, retrying", extra={"sink": self.sink.name, "error": str(exc),
                                                                 "backoff_s": backoff})
                self._idle(backoff)
                backoff = min(backoff * 2, self.settings.persistence.backoff_max_s)
        return False

    def _rewind(self, batch: list[Message]) -> None:
        """Consume the batch again from its first record (its position in memory had moved past it)."""
        first: dict[tuple[str, int], int] = {}
        for msg in batch:
            key = (msg.topic() or "", msg.partition() or 0)
            first[key] = min(first.get(key, msg.offset() or 0), msg.offset() or 0)
        for (topic, part), offset in first.items():
            with contextlib.suppress(KafkaException):  # not ours any more: its new owner starts from the commit
                self.consumer.seek(TopicPartition(topic, part, offset))
        self._forget(first)

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The held records of partitions taken away are dropped: their next owner reads them from the commit.
        They are resumed too: a pause outlives the assignment, and one that `_idle` made would outlive `_idle`."""
        with contextlib.suppress(KafkaException):
            self.consumer.resume(partitions)
        gone = {(tp.topic, tp.partition) for tp in partitions}
        self._paused -= gone
        self._forget(gone)

    def _forget(self, partitions: Container[tuple[str, int]]) -> None:
        """Drop the held records of these partitions (they will be read again)."""
        self._held = [m for m in self._held if (m.topic() or "", m.partition() or 0) not in partitions]

    def _hold_limit(self) -> int:
        return MAX_HELD_BATCHES * self.settings.persistence.batch_size

    def _idle(self, seconds: float) -> None:
        """Wait between retries, polling so the group does not think the consumer died, and hold what arrives for
        the next batch: a paused consumer drops what it fetched and fetches again only seconds after it resumes,
        so a retry would not see the records that came meanwhile. Once MAX_HELD_BATCHES are held, a partition
        that brings more is paused and sought back to that record, until `_collect` has taken from the hold."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set() and (left := deadline - time.monotonic()) > 0:
            msg = self.consumer.poll(min(left, 0.5))
            if msg is None or msg.error() is not None:
                continue
            if len(self._held) < self._hold_limit():
                self._held.append(msg)
                continue
            key = (msg.topic() or "", msg.partition() or 0)
            if key not in self._paused:
                at = TopicPartition(*key, msg.offset() or 0)
                try:
                    self.consumer.pause([at])
                    self.consumer.seek(at)
                except KafkaException:  # not ours any more: its next owner reads it from the commit
                    continue
                self._paused.add(key)  # only once sought back: a record of it dropped below is read again
        self._report_lag(force=True)

    def _dead_letter(self, msg: Message, reason: str) -> None:
        metrics.DEAD_LETTERS.labels(self.sink.name).inc()
        log.warning("dead letter", extra={"sink": self.sink.name, "reason": reason,
                                          "source": f"{msg.topic()}/{msg.partition()}/{msg.offset()}"})
        self.letters.send(msg, reason)

    def _report_lag(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_lag < 5:
            return
        self._last_lag = now
        if self.probe is None:
            return
        lag = group_lag(self.probe, self.settings.topics.trade_executed)
        if lag is not None:
            metrics.LAG.labels(self.sink.name).set(lag)
