"""Sinks shared by the Flink jobs."""

from __future__ import annotations

from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment


def keyed_kafka_sink(env: StreamExecutionEnvironment, rows: DataStream, *, table: str, key_field: str,
                     topic: str, bootstrap: str) -> StreamTableEnvironment:
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
