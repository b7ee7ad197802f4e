"""Flink job `passthrough`: copy a topic to another, byte for byte, in Flink SQL (no Python at runtime).

The platform's own limit for `tradesim bench bars`: same source/sink connectors and cluster, but every record
stays in the JVM, so the ratio bars/passthrough is what the Python logic costs.
"""

from __future__ import annotations

import argparse

from pyflink.table import EnvironmentSettings, TableEnvironment

from tradesim.jobs.sinks import add_kafka_args


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="tradesim.jobs.passthrough")
    add_kafka_args(p)
    p.add_argument("--source-topic", default="market_data")
    p.add_argument("--sink-topic", default="market_data_copy")
    p.add_argument("--group-id", default="tradesim-passthrough")
    p.add_argument("--job-name", default="tradesim-passthrough")
    p.add_argument("--checkpoint-interval-ms", type=int, default=5000)
    args = p.parse_args(argv)

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    conf.set("pipeline.name", args.job_name)
    conf.set("execution.checkpointing.interval", f"{args.checkpoint_interval_ms} ms")
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE src (k BYTES, v BYTES) WITH (
          'connector' = 'kafka', 'topic' = '{args.source_topic}',
          'properties.bootstrap.servers' = '{args.bootstrap}', 'properties.group.id' = '{args.group_id}',
          'properties.security.protocol' = '{args.kafka_security_protocol}',
          'scan.startup.mode' = 'group-offsets', 'properties.auto.offset.reset' = 'earliest',
          'key.format' = 'raw', 'key.fields' = 'k', 'value.format' = 'raw', 'value.fields-include' = 'EXCEPT_KEY'
        )""")
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE dst (k BYTES, v BYTES) WITH (
          'connector' = 'kafka', 'topic' = '{args.sink_topic}',
          'properties.bootstrap.servers' = '{args.bootstrap}',
          'properties.security.protocol' = '{args.kafka_security_protocol}',
          'key.format' = 'raw', 'key.fields' = 'k', 'value.format' = 'raw', 'value.fields-include' = 'EXCEPT_KEY',
          'sink.delivery-guarantee' = 'at-least-once'
        )""")
    # execute_sql submits and returns (detached under `flink run -d`)
    t_env.execute_sql("INSERT INTO dst SELECT k, v FROM src")


if __name__ == "__main__":
    main()
