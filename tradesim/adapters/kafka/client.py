"""Factories for confluent-kafka clients configured from settings; no network work until first use."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined] # exported, not marked so in its stubs
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from tradesim.adapters.kafka import LIBRDKAFKA_LOGGER
from tradesim.adapters.kafka.errors import NOT_WRITTEN, KafkaDeliveryError, KafkaOutcomeUnknown, KafkaUnavailable
from tradesim.settings import KafkaSettings

_log = logging.getLogger("tradesim.kafka.client")
# librdkafka's own log lines go through Python logging (JSON in services) instead of raw stderr.
_rdkafka_log = logging.getLogger(LIBRDKAFKA_LOGGER)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def admin(kafka: KafkaSettings) -> AdminClient:
    # log_level 0: a health probe against a stopped broker must not spray librdkafka errors on stderr;
    # the caller turns the failure into one clear message.
    return AdminClient({**kafka.connection, "socket.timeout.ms": 5000, "log_level": 0})


def producer(kafka: KafkaSettings, **overrides: Any) -> Producer:
    """An idempotent producer: acks=all, so a delivered message survives and is never duplicated by retries."""
    conf: dict[str, Any] = {
        **kafka.connection,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
        "logger": _rdkafka_log,
    }
    conf.update(overrides)
    return Producer(conf)


def produce_confirmed(kafka: KafkaSettings, topic: str, records: Sequence[tuple[bytes, bytes]],
                      timeout_s: float = 30.0) -> None:
    """Produce (key, value) records and wait for every one's delivery report (a flush that returns 0 only says
    the queue is empty: a refused or expired record leaves it too). Raises KafkaDeliveryError with the first
    failure, KafkaOutcomeUnknown when some were not answered within `timeout_s`."""
    refused: list[str] = []
    unknown: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None:  # anything but a certain refusal may follow a write the broker made: unknown
            (refused if err.code() in NOT_WRITTEN else unknown).append(str(err))

    p = producer(kafka, **{"message.timeout.ms": int(timeout_s * 1000)})
    try:
        for key, value in records:
            while True:
                try:
                    p.produce(topic, key=key, value=value, on_delivery=on_delivery)
                    break
                except BufferError:
                    p.poll(0.05)  # local queue full: serve delivery reports, then retry
    except KafkaException as exc:
        raise KafkaDeliveryError(f"records to {topic} refused: {exc}") from None
    left = p.flush(timeout_s + 5)
    if refused:
        raise KafkaDeliveryError(f"{len(refused)} of {len(records)} records to {topic} refused: {refused[0]}")
    if left or unknown:
        raise KafkaOutcomeUnknown(f"{left + len(unknown)} of {len(records)} records to {topic} unanswered after "
                                  f"{timeout_s:.0f} s")


#: For a group's only member that a supervisor restarts: after a kill -9 the group hands the new member the
#: partitions only once the dead one's session expired (45 s by default, while prices or read models froze); 6 s
#: is the broker's minimum. Heartbeats come from librdkafka's own thread, so a slow batch does not end a session.
SHORT_SESSION: dict[str, Any] = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 2000}


def consumer(kafka: KafkaSettings, group_id: str, **overrides: Any) -> Consumer:
    conf: dict[str, Any] = {
        **kafka.connection,
        "group.id": group_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "logger": _rdkafka_log,
    }
    conf.update(overrides)
    return Consumer(conf)


def broker_count(kafka: KafkaSettings, timeout_s: float) -> int:
    """Metadata request; raises KafkaUnavailable if no broker answers within timeout_s."""
    try:
        meta = admin(kafka).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise KafkaUnavailable(f"no Kafka broker answered at {kafka.bootstrap}: {exc}") from None
    if not meta.brokers:
        raise KafkaUnavailable(f"metadata from {kafka.bootstrap} lists no broker")
    return len(meta.brokers)


def ensure_topics(kafka: KafkaSettings, topics: list[TopicSpec], timeout_s: float = 30) -> list[str]:
    """Create missing topics; returns the names created. Existing topics keep their partitions but get the spec's
    config (retention of `trade_orders` follows the outcome horizon, so it must not stay at an older value).
    Every step (listing, configuring, creating, waiting for leaders) runs under one deadline of `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    client = admin(kafka)
    try:
        existing = set(client.list_topics(timeout=_left(deadline)).topics)
    except KafkaException as exc:
        raise KafkaUnavailable(f"cannot list topics at {kafka.bootstrap}: {exc}") from None
    _set_config(client, [t for t in topics if t.name in existing and t.config], deadline)
    missing = [t for t in topics if t.name not in existing]
    if not missing:
        return []
    # -1: the broker's default.replication.factor (1 on the local node, 3 on a cluster such as MSK)
    futures = client.create_topics(
        [NewTopic(t.name, num_partitions=t.partitions, replication_factor=-1, config=t.config) for t in missing],
        operation_timeout=_left(deadline), request_timeout=_left(deadline),
    )
    created = []
    for name, fut in futures.items():
        try:
            fut.result(timeout=_left(deadline))
            created.append(name)
        except TimeoutError:  # the future's own wait ran out before librdkafka gave up on the request
            raise KafkaUnavailable(f"topic {name} not created within {timeout_s:g} s") from None
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise KafkaUnavailable(f"cannot create topic {name}: {exc}") from None
    _await_leaders(client, [t.name for t in missing], deadline)
    return created


def _await_leaders(client: AdminClient, names: list[str], deadline: float) -> None:
    """Return once every partition of the topics has a leader in the broker's metadata. The controller confirms a
    creation before the brokers' metadata shows it (KRaft propagates it afterwards), and a client asking in that
    moment is told the topic does not exist."""
    while True:
        try:
            topics = client.list_topics(timeout=_left(deadline)).topics
        except KafkaException as exc:
            raise KafkaUnavailable(f"cannot list the topics just created: {exc}") from None
        pending = [n for n in names if n not in topics or topics[n].error is not None or not topics[n].partitions
                   or any(p.leader < 0 for p in topics[n].partitions.values())]
        if not pending:
            return
        if time.monotonic() + 0.05 > deadline:
            raise KafkaUnavailable(f"topics {', '.join(pending)} created but without a leader after the timeout")
        time.sleep(0.05)


def _set_config(client: AdminClient, topics: list[TopicSpec], deadline: float) -> None:
    if not topics:
        return
    resources = [ConfigResource(ResourceType.TOPIC, t.name, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in t.config.items()])
        for t in topics]
    for resource, fut in client.incremental_alter_configs(resources, request_timeout=_left(deadline)).items():
        try:
            fut.result(timeout=_left(deadline))
        except TimeoutError:
            raise KafkaUnavailable(f"topic {resource.name} not configured within the timeout") from None
        except KafkaException as exc:
            raise KafkaUnavailable(f"cannot configure topic {resource.name}: {exc}") from None


def consumer_lag(client: Consumer) -> int | None:
    """Records between the consumer's position and the end of its assigned partitions, as of its latest fetch
    responses (they carry each partition's end): no request to the broker, which would wait behind the consumer's
    own pending fetch and stall its loop. Stale while fetching is paused (a full local queue, a broker down); a
    partition not fetched yet counts 0; None if the client cannot tell."""
    total = 0
    try:
        for tp in client.assignment():
            _, high = client.get_watermark_offsets(tp, cached=True)
            at = TopicPartition(tp.topic, tp.partition)
            (pos,) = client.position([at])
            if pos.offset >= 0 and high >= 0:
                total += max(0, high - pos.offset)
    except KafkaException as exc:
        _log.warning("consumer lag not measured: %s", exc)
        return None
    return total


def group_lag(probe: Consumer, topic: str, timeout_s: float = 2.0, committed_only: bool = False) -> int | None:
    """`measure_group_lag`, or None when the broker did not answer in time."""
    try:
        return measure_group_lag(probe, topic, timeout_s, committed_only)
    except KafkaException as exc:
        _log.warning("consumer group lag not measured: %s", exc)
        return None


def measure_group_lag(probe: Consumer, topic: str, timeout_s: float = 2.0, committed_only: bool = False,
                      ) -> int | None:
    """Records of `topic` beyond the committed offsets of `probe`'s consumer group, over all partitions; KafkaException
    when the broker did not answer in time; `committed_only`: None for a group that never committed. `probe` is a
    consumer of that group that consumes nothing: its connection is idle, so the two lookups are not queued behind a
    long-poll fetch (which cost the consuming client up to fetch.wait.max.ms per partition)."""
    parts = [TopicPartition(topic, p) for p in probe.list_topics(topic, timeout=timeout_s).topics[topic].partitions]
    total = 0
    committed = [tp for tp in probe.committed(parts, timeout=timeout_s) if tp.offset >= 0 or not committed_only]
    if committed_only and not committed:
        return None  # a group that never committed (a job never submitted) is not behind: it is not there
    for tp in committed:
        low, high = probe.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=timeout_s)
        total += max(0, high - (tp.offset if tp.offset >= 0 else low))
    return total


def start_positions(kafka: KafkaSettings, group: str, topic: str, reset: Literal["earliest", "latest"],
                    timeout_s: float = 10.0) -> dict[int, int]:
    """Where a consumer of `group` starts on each partition of `topic` now: the group's committed offset, else the
    partition's first (`earliest`) or next (`latest`) offset. Empty when the topic does not exist yet.

    For the Flink jobs, which start from these concrete offsets rather than "the committed offset": the Kafka
    source keeps that marker in its state until a partition yields a record, and resolves it again on a restore,
    so a savepoint taken while a partition was idle would skip that partition's records since the savepoint."""
    deadline = time.monotonic() + timeout_s
    c = consumer(kafka, group_id=group)
    try:
        meta = c.list_topics(topic, timeout=_left(deadline)).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            return {}
        out: dict[int, int] = {}
        for tp in _committed(c, [TopicPartition(topic, p) for p in meta.partitions], deadline):
            if tp.offset >= 0:
                out[tp.partition] = tp.offset
            else:
                low, high = c.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=_left(deadline))
                out[tp.partition] = low if reset == "earliest" else high
        return out
    except KafkaException as exc:
        raise KafkaUnavailable(f"cannot read the offsets of group {group} on {topic}: {exc}") from None
    finally:
        c.close()


def _left(deadline: float) -> float:
    return max(0.1, deadline - time.monotonic())


_COORDINATOR_NOT_READY = frozenset({KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                                    KafkaError.COORDINATOR_NOT_AVAILABLE})


def _committed(c: Consumer, partitions: list[TopicPartition], deadline: float) -> list[TopicPartition]:
    """The group's committed offsets, asked again while the broker says its coordinator is not ready (moving, or
    still loading as on a broker that just started) and the deadline allows. Any other error, for the request or
    for one partition, raises: a partition whose offset is unknown must not be taken for one never committed."""
    while True:
        try:
            got = c.committed(partitions, timeout=_left(deadline))
            errors = [tp.error for tp in got if tp.error is not None]
        except KafkaException as exc:
            errors = [exc.args[0] if exc.args else KafkaError(KafkaError._FAIL, "committed offsets not returned")]
        if not errors:
            return got
        if not all(isinstance(e, KafkaError) and e.code() in _COORDINATOR_NOT_READY for e in errors) \
                or time.monotonic() + 0.2 > deadline:
            raise KafkaException(errors[0])
        time.sleep(0.2)
