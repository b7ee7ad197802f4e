"""Reading `dead_letter` in tests: the letters written from the moment the reader was opened."""

from __future__ import annotations

import uuid

from confluent_kafka import TopicPartition

from tradesim.adapters.kafka.client import consumer
from tradesim.domain.events import DeadLetter, decode
from tradesim.settings import Settings
from tradesim.testing.waiting import wait_for


class DeadLetters:
    """The dead letters written since it was opened; a `with` block closes it."""

    def __init__(self, settings: Settings) -> None:
        topic = settings.topics.dead_letter
        self.c = consumer(settings.kafka, group_id="letters-" + uuid.uuid4().hex[:8])
        parts = self.c.list_topics(topic, timeout=10).topics[topic].partitions
        self.c.assign([TopicPartition(topic, p, self.c.get_watermark_offsets(TopicPartition(topic, p),
                                                                            timeout=10)[1]) for p in parts])
        self.seen: list[DeadLetter] = []

    def about(self, about: str, consumer: str | None = None) -> list[DeadLetter]:
        """The letters so far (of `consumer`, if given) whose record contains `about` (make it unique: a job may
        repeat the letters of earlier records after a restart); reads what has arrived, waiting 0.2 s at most."""
        for m in self.c.consume(500, timeout=0.2):
            if m.error() is None and m.value():
                self.seen.append(decode(DeadLetter, m.value()))
        return [x for x in self.seen if about in x.record and consumer in (None, x.consumer)]

    def wait(self, about: str, n: int, consumer: str | None = None, timeout_s: float = 60) -> list[DeadLetter]:
        """The first n letters of `about` (see `about`), waiting up to timeout_s for them."""
        wait_for(lambda: len(self.about(about, consumer)) >= n, timeout_s, f"{n} dead letters about {about}")
        return self.about(about, consumer)[:n]

    def close(self) -> None:
        self.c.close()

    def __enter__(self) -> DeadLetters:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
