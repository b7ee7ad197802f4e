"""A Kafka consumer over in-memory partitions, for unit tests of code that reads partitions in batches. As
confluent-kafka's, a consume returns early only once its batch is full; the ones that would have waited out their
timeout are counted."""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import TopicPartition


@dataclass
class FakeMessage:
    _partition: int
    _offset: int
    _value: bytes

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return 1, 1000 + self._offset

    def key(self) -> bytes:
        return f"k{self._offset}".encode()

    def value(self) -> bytes:
        return self._value

    def headers(self) -> None:
        return None


@dataclass
class FakeConsumer:
    """Partitions of records from offset 0 (`logs[p]` their values), all of them fetched already."""

    logs: dict[int, list[bytes]]
    at: dict[int, int] = field(default_factory=dict)
    waits: int = 0  # consumes that would have waited out their timeout

    def assign(self, starts: list[TopicPartition]) -> None:
        self.at = {tp.partition: tp.offset for tp in starts}

    def unassign(self) -> None:
        self.at = {}

    def incremental_unassign(self, parts: list[TopicPartition]) -> None:
        for tp in parts:
            del self.at[tp.partition]

    def position(self, parts: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.at[tp.partition]) for tp in parts]

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        out: list[FakeMessage] = []
        for p in list(self.at):
            take = min(len(self.logs[p]) - self.at[p], num_messages - len(out))
            out += [FakeMessage(p, o, self.logs[p][o]) for o in range(self.at[p], self.at[p] + take)]
            self.at[p] += take
        if len(out) < num_messages:  # the real one waits for more until the timeout
            self.waits += 1
        return out

    def close(self) -> None:
        pass
