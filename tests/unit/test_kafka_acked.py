"""The API's acknowledged send answers every request, even one whose record a replaced producer still holds.

Real librdkafka producers, pointed at a loopback port where no broker listens: a record then waits in the
client's queue until `message.timeout.ms` and is reported as not acknowledged."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from confluent_kafka import KafkaError

from tradesim.adapters.kafka.acked import AckedProducer
from tradesim.adapters.kafka.errors import KafkaOutcomeUnknown
from tradesim.settings import KafkaSettings
from tradesim.testing.net import free_port

TIMEOUT_S = 0.5


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """Open until the test closed its producer: a late delivery report is handed to it, not to a closed loop."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_a_record_of_a_producer_replaced_after_a_fatal_error_is_still_answered(
        loop: asyncio.AbstractEventLoop) -> None:
    acked = AckedProducer(KafkaSettings(port=free_port()), timeout_s=TIMEOUT_S)
    acked.start()

    async def scenario() -> list[BaseException | None]:
        first = asyncio.create_task(acked.send("t", b"k", b"first"))
        await asyncio.sleep(0)  # the first record is queued in the producer about to be replaced
        acked._on_error(KafkaError(KafkaError._FATAL, "idempotence broken", fatal=True))
        second = asyncio.create_task(acked.send("t", b"k", b"second"))  # replaces the producer
        # each record is reported when its message.timeout.ms passes; well before the send's own guard
        done, pending = await asyncio.wait({first, second}, timeout=TIMEOUT_S + 3)
        for task in pending:
            task.cancel()
        return [None if t in pending else t.exception() for t in (first, second)]

    try:
        first, second = loop.run_until_complete(scenario())
    finally:
        acked.close(timeout_s=1)
    assert isinstance(first, KafkaOutcomeUnknown), first  # before: never answered (its producer was not polled)
    assert isinstance(second, KafkaOutcomeUnknown), second
