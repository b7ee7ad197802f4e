"""Rebuild a read model from `trade_executed`: load a fresh copy from the earliest offset while the live one keeps
serving, switch to it, then catch up through the live name with what arrived during the load (repeats are
no-ops, so the overlap with the live service's own writes is harmless). From the switch until the catch-up ends,
the live copy misses what arrived during the load (the live service wrote it into the retired copy and went on),
so the caller marks that span (`switching`)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from tradesim.adapters.kafka.client import consumer as make_consumer
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.trades import TradeRecord
from tradesim.ports import Rebuildable, Refused, TradeSink, Unavailable
from tradesim.services.persistence.pipeline import decode_batch
from tradesim.settings import Settings

log = logging.getLogger("tradesim.persistence.rebuild")
Progress = Callable[[int, int], None]  # (records read, records to read)
#: how long a write is retried while its server answers "later" (a bulk load is often met by a 429 or two)
PATIENCE_S = 60.0


@dataclass
class Rebuilt:
    name: str
    read: int
    written: int
    skipped: int


def _ends(consumer: Consumer, topic: str) -> dict[int, int]:
    try:
        found = consumer.list_topics(topic, timeout=10).topics[topic]
        if found.error is not None or not found.partitions:
            # without this an unknown topic would read as an empty one, and the switch would empty the live model
            why = found.error.str() if found.error is not None else "no partitions"
            raise Unavailable(f"topic {topic!r} is not on the Kafka cluster ({why}): check topics.trade_executed, "
                              "or run `tradesim up`")
        partitions = sorted(found.partitions)
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    except KafkaException as exc:
        raise Unavailable(f"reading {topic}'s offsets: {exc.args[0].str() if exc.args else exc}") from None


def _copy(consumer: Consumer, topic: str, start: dict[int, int], end: dict[int, int], sink: TradeSink,
          batch_size: int, backoff_max_s: float, progress: Progress, done: int, total: int
          ) -> tuple[int, int, int]:
    """Write every outcome in [start, end) per partition into `sink`; returns (read, written, skipped)."""
    todo = {p: (start.get(p, 0), e) for p, e in end.items() if e > start.get(p, 0)}
    if not todo:
        return 0, 0, 0
    consumer.assign([TopicPartition(topic, p, s) for p, (s, _) in todo.items()])
    at = {p: s for p, (s, _) in todo.items()}  # each partition's position
    read = written = skipped = 0
    while todo:
        # no more than the offsets still due: a consume returns early only on a full batch, so one asking for more
        # than is left waits out its timeout at the end of every pass
        due = sum(e - at[p] for p, (_, e) in todo.items())
        batch = [m for m in consumer.consume(min(batch_size, due), 1.0)
                 if (error := m.error()) is None or error.code() != KafkaError._PARTITION_EOF]
        wanted = []
        for msg in batch:
            if msg.error() is not None:
                raise Unavailable(f"reading {topic}: {msg.error()}")
            part, offset = msg.partition() or 0, msg.offset() or 0
            if part in todo and offset < todo[part][1]:
                wanted.append(msg)
        # by position, not by the last record seen: transaction markers take offsets no record carries
        for tp in consumer.position([TopicPartition(topic, p) for p in todo]):
            at[tp.partition] = max(at[tp.partition], tp.offset)  # (none yet before a partition's first record)
            if tp.offset >= todo[tp.partition][1]:
                del todo[tp.partition]
        decoded = decode_batch(wanted)
        refused = _write(sink, [r for r, _ in decoded.records], backoff_max_s)
        read += len(wanted)
        written += len(decoded.records) - refused
        skipped += len(decoded.refused) + refused
        progress(done + read, total)
    consumer.unassign()
    return read, written, skipped


def _retrying(sink: TradeSink, records: list[TradeRecord], backoff_max_s: float) -> None:
    """Write, retrying for PATIENCE_S with a capped backoff while the sink is unavailable; then Unavailable."""
    deadline, backoff = time.monotonic() + PATIENCE_S, 0.1
    while True:
        try:
            sink.write(records)
            return
        except Unavailable as exc:
            if time.monotonic() + backoff > deadline:
                raise
            log.warning("sink unavailable, retrying", extra={"model": sink.name, "error": str(exc),
                                                             "backoff_s": backoff})
            time.sleep(backoff)
            backoff = min(backoff * 2, backoff_max_s)


def _write(sink: TradeSink, records: list[TradeRecord], backoff_max_s: float) -> int:
    """Write a batch; if the sink refuses it, one record at a time. Returns how many it refused (the live service
    sent those to dead_letter already). Raises Unavailable."""
    try:
        _retrying(sink, records, backoff_max_s)
        return 0
    except (Refused, InvalidRecord):
        pass
    refused = 0
    for record in records:
        try:
            _retrying(sink, [record], backoff_max_s)
        except (Refused, InvalidRecord) as exc:
            log.warning("record refused", extra={"model": sink.name, "order_id": record.order_id, "error": str(exc)})
            refused += 1
    return refused


def _discard(model: Rebuildable) -> None:
    """Best effort: a copy left by a load that stopped (its server gone too, say) is the next rebuild's to drop."""
    try:
        model.discard()
    except Exception as exc:  # noqa: BLE001 - the load's own error is the one to report
        log.warning("the unfinished copy was not dropped", extra={"model": model.name, "error": str(exc)})


def rebuild(settings: Settings, model: Rebuildable, progress: Progress = lambda _done, _total: None,
            switching: Callable[[], None] = lambda: None) -> Rebuilt:
    """Raises Unavailable if a server stops answering: before `switching` was called the live copy is untouched;
    after it the live copy misses what arrived during the load until a rebuild finishes."""
    topic = settings.topics.trade_executed
    consumer = make_consumer(settings.kafka, f"tradesim-rebuild-{uuid.uuid4().hex[:8]}")
    try:
        first = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0]
                 for p in _ends(consumer, topic)}
        loaded = _ends(consumer, topic)
        total = sum(loaded[p] - first[p] for p in loaded)
        batch, backoff = settings.persistence.batch_size, settings.persistence.backoff_max_s
        fresh = model.fresh()
        try:
            read, written, skipped = _copy(consumer, topic, first, loaded, fresh, batch, backoff, progress, 0, total)
            switching()
            model.switch()
        except BaseException:
            _discard(model)  # the model keeps a copy a switch may already have made live
            raise
        log.info("switched", extra={"model": model.name, "read": read})
        caught = _ends(consumer, topic)
        total += sum(caught[p] - loaded.get(p, 0) for p in caught)
        more = _copy(consumer, topic, loaded, caught, model.live(), batch, backoff, progress, read, total)
        return Rebuilt(model.name, read + more[0], written + more[1], skipped + more[2])
    finally:
        consumer.close()
