"""An asyncio face on the idempotent producer: `await send(...)` returns once Kafka acknowledged the record.

One thread serves librdkafka's delivery reports and resolves each record's future on the event loop. The
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
from tradesim.adapters.kafka.errors import KafkaDeliveryError, KafkaOutcomeUnknown, KafkaUnavailable
from tradesim.settings import KafkaSettings

#: delivery errors after which the record is certainly not on the log: it never left this process, or the broker
#: refused it for good for what it is (so no earlier attempt of the idempotent producer can have written it). Any
#: other failure — a timeout, a lost connection, a retriable broker error — may follow a write the broker did make.
_NOT_WRITTEN = frozenset({
    KafkaError._INVALID_ARG, KafkaError._UNKNOWN_TOPIC, KafkaError._UNKNOWN_PARTITION, KafkaError._PURGE_QUEUE,
    KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE, KafkaError.INVALID_RECORD,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
})


class AckedProducer:
    def __init__(self, kafka: KafkaSettings, timeout_s: float) -> None:
        self._kafka = kafka
        self._timeout_ms = int(timeout_s * 1000)
        self._producer: Producer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._fatal = False

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

    async def send(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]] | None = None
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
            elif err.code() in _NOT_WRITTEN:
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
        await done

    def _on_error(self, err: KafkaError) -> None:
        # librdkafka calls this from poll(); a fatal (idempotence) error leaves the producer unusable
        if err.fatal():
            self._fatal = True

    def _replace_if_fatal(self) -> None:
        with self._lock:
            if not self._fatal:
                return
            self._fatal = False
            old, self._producer = self._producer, self._new()
        if old is not None:
            old.flush(0)

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
        if self._producer is not None:
            self._producer.flush(timeout_s)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))
