"""Dead letters on their way to `dead_letter`, and whether they arrived.

A consumer may commit a batch's position only once the batch's letters are acknowledged, or a crash or a Kafka
outage loses them. `Producer.flush()` returning 0 is not that answer: it says librdkafka's queue is empty, and a
letter that expired or was refused leaves the queue too. So each letter's delivery report is counted, per round
(the letters sent since the last `delivered`).
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from tradesim.adapters.kafka.client import producer as make_producer
from tradesim.domain.events import DeadLetter, encode
from tradesim.settings import KafkaSettings

#: librdkafka fails expired messages on a timer that runs about once a second, so a report can come that late.
_REPORT_SLACK_S = 1.5


def letters_producer(kafka: KafkaSettings, deadline_s: float) -> Producer:
    """A producer whose letters are answered within `deadline_s`: delivered, or failed for good (expired), so no copy
    is still in flight when a round is answered. Not idempotent: letters are at least once anyway, and a fatal
    idempotence error would leave the producer unusable."""
    return make_producer(kafka, **{"message.timeout.ms": int(deadline_s * 1000), "enable.idempotence": False})


class DeadLetterSender:
    """One consumer's dead letters. Not thread-safe: sends, `delivered`, `poll` and the producer's delivery reports
    all run on the consuming thread (librdkafka serves reports only inside this thread's polls)."""

    def __init__(self, producer: Producer, topic: str, consumer: str, deadline_s: float) -> None:
        self.producer = producer
        self.deadline_s = deadline_s  # the producer's message.timeout.ms: every letter is answered within it
        self._topic = topic
        self._consumer = consumer
        self._round = 0
        self._waiting = 0
        self._failed = 0

    @classmethod
    def connect(cls, kafka: KafkaSettings, topic: str, consumer: str, deadline_s: float) -> DeadLetterSender:
        return cls(letters_producer(kafka, deadline_s), topic, consumer, deadline_s)

    def send(self, msg: Message, reason: str) -> None:
        """Queue the letter of `msg` (its key kept, so the letter lands beside its source's partition key)."""
        letter = DeadLetter.of(msg.value() or b"", source_topic=msg.topic() or "", consumer=self._consumer,
                               reason=reason)
        this_round = self._round

        def report(err: KafkaError | None, _msg: Message) -> None:
            if this_round != self._round:
                return  # a letter of a round already answered: its source is handled again, with a new letter
            self._waiting -= 1
            if err is not None:
                self._failed += 1

        self._waiting += 1
        try:
            self.producer.produce(self._topic, key=msg.key(), value=encode(letter), on_delivery=report)
        except (BufferError, KafkaException):
            self._waiting -= 1
            self._failed += 1

    def delivered(self, stop: threading.Event | None = None) -> bool:
        """Whether Kafka acknowledged every letter sent since the last call; waits until each is answered (the
        producer's deadline bounds it) or `stop` is set. False: one failed, so the caller must not commit past its
        source record and sends it again when it handles that record again (a letter may then arrive twice).
        Starts a new round either way."""
        deadline = time.monotonic() + self.deadline_s + _REPORT_SLACK_S
        while self._waiting and (left := deadline - time.monotonic()) > 0 and not (stop and stop.is_set()):
            self.producer.poll(min(left, 0.1))
        answered = self._waiting == 0 and self._failed == 0
        self._round += 1
        self._waiting = self._failed = 0
        return answered

    def poll(self) -> None:
        """Serve the producer's reports and log events without waiting (call it once per consume loop turn)."""
        self.producer.poll(0)

    def close(self, timeout_s: float) -> None:
        """Give letters still queued a last chance (their sources are uncommitted: the next start sends them too)."""
        self.producer.flush(timeout_s)
