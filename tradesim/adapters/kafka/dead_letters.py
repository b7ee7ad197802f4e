"""Dead letters on their way to `dead_letter`, and whether they arrived.

A consumer may commit a batch's position only once the batch's letters are acknowledged, or a crash or a Kafka
outage loses them. `Producer.flush()` returning 0 is not that answer: it says librdkafka's queue is empty, and a
letter that expired or was refused leaves the queue too. So each letter's delivery report is counted, per round
(the letters kept since the last `delivered`).
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from tradesim.adapters.kafka.client import producer as make_producer
from tradesim.domain.events import DeadLetter, encode
from tradesim.settings import KafkaSettings

#: librdkafka fails an expired letter on timers that run about once a second, in a loop that may block a second
#: more, so a report can come that late after the deadline.
_REPORT_SLACK_S = 5.0
#: a letter's key at most (the source's key, cut): with the record and reason capped, the letter fits a Kafka record
MAX_KEY_BYTES = 1024


def letters_producer(kafka: KafkaSettings, deadline_s: float) -> Producer:
    """A producer whose letters are answered within `deadline_s`: delivered, or failed for good (expired), so no copy
    is still in flight when a round is answered. Not idempotent: letters are at least once anyway, and a fatal
    idempotence error would leave the producer unusable."""
    return make_producer(kafka, **{"message.timeout.ms": int(deadline_s * 1000), "enable.idempotence": False})


class DeadLetterSender:
    """One consumer's dead letters. `send` keeps a letter until `delivered` produces the round's letters and waits for
    them, so a letter does not age while its batch waits for a sink. Not thread-safe: everything, the producer's
    delivery reports included, runs on the consuming thread (librdkafka serves reports only inside its polls)."""

    def __init__(self, producer: Producer, topic: str, consumer: str, deadline_s: float) -> None:
        if deadline_s < 0.001:
            raise ValueError("deadline_s must be at least 1 ms (0 is librdkafka's 'never expires')")
        self.producer = producer
        self.deadline_s = deadline_s  # the producer's message.timeout.ms: every letter is answered within it
        self.last_error: str | None = None  # why the last unanswered round failed, for the caller's log
        self._topic = topic
        self._consumer = consumer
        self._kept: list[tuple[bytes | None, bytes]] = []
        self._round = 0
        self._waiting = 0
        self._failed: list[str] = []

    @classmethod
    def connect(cls, kafka: KafkaSettings, topic: str, consumer: str, deadline_s: float) -> DeadLetterSender:
        return cls(letters_producer(kafka, deadline_s), topic, consumer, deadline_s)

    def send(self, msg: Message, reason: str) -> None:
        """Keep the letter of `msg` for this round (its key kept, cut to MAX_KEY_BYTES, so the letter lands beside
        its source's partition key)."""
        letter = DeadLetter.of(msg.value() or b"", source_topic=msg.topic() or "", consumer=self._consumer,
                               reason=reason)
        key = msg.key()
        self._kept.append((key[:MAX_KEY_BYTES] if key is not None else None, encode(letter)))

    def delivered(self, stop: threading.Event | None = None) -> bool:
        """Produce the round's letters and say whether Kafka acknowledged every one; waits until each is answered
        (the producer's deadline bounds it) or `stop` is set. False: one failed (`last_error` says why), so the
        caller must not commit past its source record and sends it again when it handles that record again (a
        letter may then arrive twice). Starts a new round either way."""
        this_round = self._round

        def report(err: KafkaError | None, _msg: Message) -> None:
            if this_round != self._round:
                return  # a letter of a round already answered: its source is handled again, with a new letter
            self._waiting -= 1
            if err is not None:
                self._failed.append(err.str())

        kept, self._kept = self._kept, []
        for key, value in kept:
            self._waiting += 1
            try:
                self.producer.produce(self._topic, key=key, value=value, on_delivery=report)
            except (BufferError, KafkaException) as exc:
                self._waiting -= 1
                self._failed.append(str(exc))
        deadline = time.monotonic() + self.deadline_s + _REPORT_SLACK_S
        while self._waiting and (left := deadline - time.monotonic()) > 0 and not (stop and stop.is_set()):
            self.producer.poll(min(left, 0.1))
        answered = self._waiting == 0 and not self._failed
        if not answered:
            self.last_error = self._failed[0] if self._failed else "not answered in time"
        self._round += 1
        self._waiting, self._failed = 0, []
        return answered

    def poll(self) -> None:
        """Serve the producer's reports and log events without waiting (call it once per consume loop turn)."""
        self.producer.poll(0)

    def close(self, timeout_s: float) -> None:
        """Give letters still queued a last chance (their sources are uncommitted: the next start sends them too)."""
        self.producer.flush(timeout_s)
