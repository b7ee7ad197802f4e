"""Flink job `bars`: 1-second and 1-minute OHLCV bars from `market_data` to `market_bars` (keyed by symbol).

Topology: KafkaSource (committed offsets, else earliest; offsets in checkpoints) → parse (malformed records →
`dead_letter` with the reason) → event-time watermarks (bounded out-of-orderness + idleness) → keyBy(symbol)
→ 1 s tumbling windows → keyBy(symbol) → 1 min tumbling windows over the 1 s bars → Kafka.

Delivery: at-least-once. After a restart the source rewinds to the last checkpoint and windows that were
emitted after it are emitted again — with identical bytes, because a bar is a pure function of its window's
ticks (see bars_logic). Exactly-once would hide bars until the next checkpoint commits (latency ≥ the
checkpoint interval) and gains nothing for idempotent (symbol, interval, window_start) records.

Run by `tradesim jobs submit bars` (`flink run -pym tradesim.jobs.bars -- --bootstrap ...`).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

from pyflink.common import Duration, Row, Types, WatermarkStrategy
from pyflink.common.serialization import SimpleStringSchema
from pyflink.common.time import Time
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream import CheckpointingMode, StreamExecutionEnvironment
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetResetStrategy,
    KafkaOffsetsInitializer,
    KafkaRecordSerializationSchema,
    KafkaSink,
    KafkaSource,
)
from pyflink.datastream.functions import AggregateFunction, ProcessWindowFunction
from pyflink.datastream.window import TumblingEventTimeWindows
from pyflink.table import StreamTableEnvironment

from tradesim.jobs import bars_logic as logic
from tradesim.jobs.sinks import keyed_kafka_sink


class TickTime(TimestampAssigner):
    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        return value.event_time_ms


class TickAggregate(AggregateFunction):
    """Ticks → BarAcc."""

    def create_accumulator(self) -> logic.BarAcc | None:
        return None

    def add(self, value: Any, accumulator: logic.BarAcc | None) -> logic.BarAcc:
        return logic.add_tick(accumulator, value)

    def get_result(self, accumulator: logic.BarAcc | None) -> logic.BarAcc | None:
        return accumulator

    def merge(self, a: logic.BarAcc | None, b: logic.BarAcc | None) -> logic.BarAcc | None:
        if a is None or b is None:
            return a or b
        return logic.merge(a, b)


class BarAggregate(TickAggregate):
    """(BarAcc, start, end) of finer bars → BarAcc of a coarser window."""

    def add(self, value: Any, accumulator: logic.BarAcc | None) -> logic.BarAcc:
        return value[0] if accumulator is None else logic.merge(accumulator, value[0])


class EmitWindow(ProcessWindowFunction):
    """Attach the window bounds: (BarAcc, start_ms, end_ms)."""

    def process(self, key: str, context: ProcessWindowFunction.Context, elements: Iterable[Any]) -> Iterable[Any]:
        window = context.window()
        for acc in elements:
            if acc is not None:
                yield acc, window.start, window.end


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tradesim.jobs.bars")
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    p.add_argument("--source-topic", default="market_data")
    p.add_argument("--bars-topic", default="market_bars")
    p.add_argument("--dead-letter-topic", default="dead_letter")
    p.add_argument("--group-id", default="tradesim-bars")
    p.add_argument("--job-name", default="tradesim-bars")
    p.add_argument("--checkpoint-interval-ms", type=int, default=5000)
    p.add_argument("--out-of-orderness-ms", type=int, default=2000)
    p.add_argument("--idleness-ms", type=int, default=5000)
    return p.parse_args(argv)


def build(env: StreamExecutionEnvironment, args: argparse.Namespace) -> StreamTableEnvironment:
    env.enable_checkpointing(args.checkpoint_interval_ms, CheckpointingMode.EXACTLY_ONCE)
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(args.bootstrap)
        .set_topics(args.source_topic)
        .set_group_id(args.group_id)
        # a restart from a checkpoint uses the checkpointed offsets; a fresh submit resumes the group's
        # committed offsets (committed on each checkpoint), or reads from the beginning
        .set_starting_offsets(KafkaOffsetsInitializer.committed_offsets(KafkaOffsetResetStrategy.EARLIEST))
        .set_value_only_deserializer(SimpleStringSchema())
        .set_property("partition.discovery.interval.ms", "60000")
        .build()
    )
    raw = env.from_source(source, WatermarkStrategy.no_watermarks(), "market_data")
    topic = args.source_topic
    classified = raw.map(lambda r: logic.classify(r, topic)).name("parse ticks")

    dead = classified.filter(lambda c: c[1] is not None).map(lambda c: c[1], output_type=Types.STRING())
    dead.sink_to(
        KafkaSink.builder()
        .set_bootstrap_servers(args.bootstrap)
        .set_record_serializer(
            KafkaRecordSerializationSchema.builder()
            .set_topic(args.dead_letter_topic)
            .set_value_serialization_schema(SimpleStringSchema())
            .build()
        )
        .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
        .build()
    ).name("dead_letter")

    # Watermarks come after parsing (the event time is inside the record); one assigner per parallel
    # instance, so out-of-orderness must cover skew across the partitions one instance reads.
    wm = (
        WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(args.out_of_orderness_ms))
        .with_idleness(Duration.of_millis(args.idleness_ms))
        .with_timestamp_assigner(TickTime())
    )
    ticks = classified.filter(lambda c: c[0] is not None).map(lambda c: c[0]).assign_timestamps_and_watermarks(wm)

    bars_1s = (
        ticks.key_by(lambda t: t.symbol, key_type=Types.STRING())
        .window(TumblingEventTimeWindows.of(Time.milliseconds(logic.INTERVALS_MS["1s"])))
        .aggregate(TickAggregate(), EmitWindow())
        .name("bars 1s")
    )
    bars_1m = (
        bars_1s.key_by(lambda b: b[0].symbol, key_type=Types.STRING())
        .window(TumblingEventTimeWindows.of(Time.milliseconds(logic.INTERVALS_MS["1m"])))
        .aggregate(BarAggregate(), EmitWindow())
        .name("bars 1m")
    )
    row_type = Types.ROW_NAMED(["symbol", "payload"], [Types.STRING(), Types.STRING()])
    rows = bars_1s.map(lambda b: Row(b[0].symbol, logic.bar_json(b[0], "1s", b[1], b[2])), output_type=row_type).union(
        bars_1m.map(lambda b: Row(b[0].symbol, logic.bar_json(b[0], "1m", b[1], b[2])), output_type=row_type)
    )

    return keyed_kafka_sink(env, rows, table="bars_sink", key_field="symbol", topic=args.bars_topic,
                            bootstrap=args.bootstrap)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    env = StreamExecutionEnvironment.get_execution_environment()
    build(env, args)
    env.execute(args.job_name)


if __name__ == "__main__":
    main()
