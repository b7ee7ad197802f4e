"""Kafka sinks, and where Kafka sources start, shared by the Flink jobs."""

from __future__ import annotations

import argparse
from typing import get_args

from pyflink.common import Types
from pyflink.common.serialization import DeserializationSchema, SimpleStringSchema
from pyflink.datastream import DataStream, OutputTag, StreamExecutionEnvironment
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetResetStrategy,
    KafkaOffsetsInitializer,
    KafkaRecordSerializationSchema,
    KafkaSink,
    KafkaTopicPartition,
)
from pyflink.table import StreamTableEnvironment

from tradesim.jobs.guard import SIDE_OUTPUT
from tradesim.settings import KafkaSettings

#: what `kafka.security_protocol` may be (PLAINTEXT locally, SSL on MSK)
SECURITY_PROTOCOLS = get_args(KafkaSettings.model_fields["security_protocol"].annotation)


def add_kafka_args(p: argparse.ArgumentParser) -> None:
    """The brokers and how to reach them: the same two options on every job, filled from the settings."""
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    p.add_argument("--kafka-security-protocol", default="PLAINTEXT", choices=SECURITY_PROTOCOLS)


def keyed_kafka_sink(env: StreamExecutionEnvironment, rows: DataStream, *, table: str, key_field: str,
                     topic: str, bootstrap: str, security_protocol: str) -> StreamTableEnvironment:
    """Write (key, payload) rows to `topic` with the raw key — at-least-once.

    PyFlink's DataStream KafkaSink serialises the whole element as the key, so the keyed write goes through the
    SQL connector: key = the raw `key_field` value, value = the raw JSON payload.
    """
    t_env = StreamTableEnvironment.create(env)
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE {table} ({key_field} STRING, payload STRING) WITH (
          'connector' = 'kafka',
          'topic' = '{topic}',
          'properties.bootstrap.servers' = '{bootstrap}',
          'properties.security.protocol' = '{security_protocol}',
          'key.format' = 'raw',
          'key.fields' = '{key_field}',
          'value.format' = 'raw',
          'value.fields-include' = 'EXCEPT_KEY',
          'sink.delivery-guarantee' = 'at-least-once'
        )""")
    statements = t_env.create_statement_set()
    statements.add_insert(table, t_env.from_data_stream(rows))
    statements.attach_as_datastream()
    return t_env


#: side output of the stages that catch a record they raise on (see tradesim.jobs.guard)
DEAD_LETTERS = OutputTag(SIDE_OUTPUT, Types.STRING())


def dead_letter_sink(letters: DataStream, *, topic: str, bootstrap: str, security_protocol: str) -> None:
    """The jobs' dead letters (JSON strings) to `topic`, at-least-once: a letter may repeat after a restart."""
    letters.sink_to(
        KafkaSink.builder()
        .set_bootstrap_servers(bootstrap)
        .set_property("security.protocol", security_protocol)
        .set_record_serializer(KafkaRecordSerializationSchema.builder().set_topic(topic)
                               .set_value_serialization_schema(SimpleStringSchema()).build())
        .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
        .build()
    ).name("dead_letter")


def text_values() -> DeserializationSchema:
    """The sources' value reader: text, and "" for a record without a value, which each job's parse sets aside as
    a bad record (SimpleStringSchema throws on it: the job restarts on that record forever). The reader lives in
    the jobs jar (`dev.tradesim.jobs.NullableText`), which every submission ships (`tradesim jobs submit`, and
    Managed Flink's `jarfile`): without it the job must not start on a reader that restart-loops."""
    from py4j.java_gateway import JavaClass
    from pyflink.java_gateway import get_gateway

    reader = get_gateway().jvm.dev.tradesim.jobs.NullableText
    if not isinstance(reader, JavaClass):
        raise RuntimeError("dev.tradesim.jobs.NullableText is not on the classpath: submit the job with the jobs jar")
    return DeserializationSchema(reader())


def start_at(topic: str, offsets: str, reset: KafkaOffsetResetStrategy) -> KafkaOffsetsInitializer:
    """A source's start: `offsets` ("partition:offset,...", resolved by `tradesim jobs submit`, see
    tradesim.adapters.kafka.client.start_positions) as concrete offsets; empty: the group's committed offsets,
    else `reset`. A partition not listed (added later) starts the second way."""
    if not offsets:
        return KafkaOffsetsInitializer.committed_offsets(reset)
    pairs = (item.split(":") for item in offsets.split(","))
    return KafkaOffsetsInitializer.offsets({KafkaTopicPartition(topic, int(p)): int(o) for p, o in pairs}, reset)
