"""An asyncio face on the idempotent producer: `await send(...)` returns once Kafka acknowledged the record.

One thread serves librdkafka's delivery reports and resolves each record's future on the event loop — also those
of a producer replaced after a fatal error, until its last record is reported. The
record's deadline is librdkafka's own `message.timeout.ms`, so a failure we report is librdkafka's final word:
no later retry can still deliver a record after we answered that it failed. But a record that timed out after it
was sent may have been written (librdkafka cannot know whether the broker took it): that is reported as
`KafkaOutcomeUnknown`, the rest as a plain `KafkaDeliveryError` (certainly not written).
"""

from __future__ import annotations

import asyncio
import threading
import time

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from tradesim.adapters.kafka.client import producer as make_producer
from tradesim.adapters.kafka.errors import NOT_WRITTEN, KafkaDeliveryError, KafkaOutcomeUnknown, KafkaUnavailable
from tradesim.settings import KafkaSettings

#: how long past `message.timeout.ms` a send waits for its delivery report before it answers "outcome unknown"
#: (librdkafka reports every record by then; this only bounds a request if a report were ever lost)
REPORT_GRACE_S = 5.0


class AckedProducer:
    def __init__(self, kafka: KafkaSettings, timeout_s: float) -> None:
        self._kafka = kafka
        self._timeout_ms = int(timeout_s * 1000)
        self._producer: Producer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._fatal = False
        #: producers replaced after a fatal error whose records are not all reported yet
        self._retired: list[Producer] = []

    def start(self) -> None:
        self._producer = self._new()
        self._thread = threading.Thread(target=self._serve, name="kafka-delivery-reports", daemon=True)
        self._thread.start()

    def _new(self) -> Producer:
        # linger 1 ms: orders wait for their ack, so batching longer only adds latency; the delivery timeout is
        # the request's deadline.
        return make_producer(self._kafka, **{"linger.ms": 1, "message.timeout.ms": self._timeout_ms,
                                             "request.timeout.ms": min(self._timeout_ms, 30_000),
                                             "socket.timeout.ms": max(self._timeout_ms, 10),
                                             "error_cb": self._on_error})

    def _serve(self) -> None:
        while not self._stop.is_set():
            producer = self._producer
            if producer is not None:
                producer.poll(0.05)
            if self._retired:
                self._serve_retired()

    def _serve_retired(self) -> None:
        """Deliver the reports of replaced producers, each dropped once it holds no record: a request waiting on
        one of their records gets its answer instead of waiting forever."""
        with self._lock:
            retired = list(self._retired)
        for old in retired:
            old.poll(0)
        with self._lock:
            self._retired = [p for p in self._retired if len(p) > 0]

    async def send(self, topic: str, key: bytes, value: bytes,
                   headers: list[tuple[str, str | bytes | None]] | None = None
                   ) -> None:
        """Produce and wait for the broker's acknowledgement. Raises KafkaOutcomeUnknown (perhaps written) or
        KafkaDeliveryError (not written)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle(err: KafkaError | None) -> None:
            if done.done():
                return
            if err is None:
                done.set_result(None)
            elif err.code() in NOT_WRITTEN:
                done.set_exception(KafkaDeliveryError(f"Kafka refused the record: {err.str()}"))
            else:
                done.set_exception(KafkaOutcomeUnknown(f"Kafka did not acknowledge the record: {err.str()}"))

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            loop.call_soon_threadsafe(settle, err)

        self._replace_if_fatal()
        producer = self._producer
        if producer is None:
            raise KafkaUnavailable("the producer is not started")
        try:
            producer.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
        except BufferError:
            raise KafkaDeliveryError("the producer's queue is full") from None
        except KafkaException as exc:
            raise KafkaDeliveryError(f"Kafka refused the record: {exc}") from None
        try:
            await asyncio.wait_for(done, self._timeout_ms / 1000 + REPORT_GRACE_S)
        except TimeoutError:
            raise KafkaOutcomeUnknown("no delivery report from Kafka's client in time") from None

    def _on_error(self, err: KafkaError) -> None:
        # librdkafka calls this from poll(); a fatal (idempotence) error leaves the producer unusable
        if err.fatal():
            self._fatal = True

    def _replace_if_fatal(self) -> None:
        with self._lock:
            if not self._fatal:
                return
            self._fatal = False
            if self._producer is not None:
                self._retired.append(self._producer)  # its records are still reported (`_serve_retired`)
            self._producer = self._new()

    def ping(self, timeout_s: float) -> None:
        """Metadata round trip (blocking; run it in a thread). Raises KafkaUnavailable."""
        producer = self._producer
        if producer is None:
            raise KafkaUnavailable("the producer is not started")
        try:
            meta = producer.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            raise KafkaUnavailable(f"no Kafka broker answered at {self._kafka.bootstrap}: {exc}") from None
        if not meta.brokers:
            raise KafkaUnavailable(f"no Kafka broker at {self._kafka.bootstrap}")

    def close(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            producers = [*self._retired, *([self._producer] if self._producer is not None else [])]
        for producer in producers:
            producer.flush(max(0.0, deadline - time.monotonic()))
        self._stop.set()
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))
