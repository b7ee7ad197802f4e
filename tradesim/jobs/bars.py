"""Flink job `bars`: 1-second and 1-minute OHLCV bars from `market_data` to `market_bars` (keyed by symbol).

Topology: KafkaSource (committed offsets, else earliest; offsets in checkpoints) → parse (malformed records →
`dead_letter` with the reason) → keyBy(symbol) → 1 s and 1 min tumbling windows closed on each symbol's own
event time with bounded out-of-orderness (bars_logic.on_tick; a tick it raises on → `dead_letter`, see
tradesim.jobs.guard) → Kafka. Not Flink's watermarks: they are shared by every symbol a source reads, so one
producer on a newer clock (the live market) would make every tick of a replay on an older clock late.

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

from pyflink.common import Row, Types, WatermarkStrategy
from pyflink.datastream import CheckpointingMode, RuntimeContext, StreamExecutionEnvironment
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetResetStrategy,
    KafkaSource,
)
from pyflink.datastream.functions import KeyedProcessFunction
from pyflink.datastream.state import ValueStateDescriptor
from pyflink.table import StreamTableEnvironment

from tradesim.domain.events import encode
from tradesim.jobs import bars_logic as logic
from tradesim.jobs import guard, managed
from tradesim.jobs.sinks import DEAD_LETTERS, add_kafka_args, dead_letter_sink, keyed_kafka_sink, start_at, text_values


class SymbolBarsFunction(KeyedProcessFunction):
    """Keyed by symbol: feeds each tick to its symbol's SymbolBars (one pickled value in keyed state) and emits
    the (symbol, bar JSON) rows it closes."""

    def __init__(self, lag_ms: int, source_topic: str) -> None:
        self.lag_ms = lag_ms
        self.source_topic = source_topic
        self.carried = managed.carried()

    def open(self, runtime_context: RuntimeContext) -> None:
        from tradesim.settings import load_settings

        managed.adopt(self.carried)
        self.faults = load_settings().faults
        self.state = runtime_context.get_state(ValueStateDescriptor("bars", Types.PICKLED_BYTE_ARRAY()))

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        try:
            self.faults.check("bars", value.symbol)
            bars = self.state.value() or logic.SymbolBars()
            closed = logic.on_tick(bars, value, self.lag_ms)
            rows = [Row(bar.symbol, encode(bar).decode()) for bar in closed]
        except Exception as exc:  # noqa: BLE001 - the tick is set aside, the symbol's state stays as it was
            yield DEAD_LETTERS, guard.failed(value, exc, stage="bars", source_topic=self.source_topic,
                                             consumer=logic.JOB_NAME)
            return
        self.state.update(bars)
        yield from rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tradesim.jobs.bars")
    add_kafka_args(p)
    p.add_argument("--source-topic", default="market_data")
    p.add_argument("--bars-topic", default="market_bars")
    p.add_argument("--dead-letter-topic", default="dead_letter")
    p.add_argument("--group-id", default="tradesim-bars")
    p.add_argument("--source-start", default="", help="partition:offset,... (default: the group's committed)")
    p.add_argument("--job-name", default="tradesim-bars")
    p.add_argument("--checkpoint-interval-ms", type=int, default=5000)
    p.add_argument("--out-of-orderness-ms", type=int, default=2000)
    p.add_argument("--idleness-ms", type=int, default=5000, help="ignored (event time is per symbol)")
    return p.parse_args(argv)


def build(env: StreamExecutionEnvironment, args: argparse.Namespace) -> StreamTableEnvironment:
    env.enable_checkpointing(args.checkpoint_interval_ms, CheckpointingMode.EXACTLY_ONCE)
    source = (
        KafkaSource.builder()
        .set_bootstrap_servers(args.bootstrap)
        .set_property("security.protocol", args.kafka_security_protocol)
        .set_topics(args.source_topic)
        .set_group_id(args.group_id)
        # a restart from a checkpoint uses the checkpointed offsets; a fresh submit resumes the group's
        # committed offsets (committed on each checkpoint, resolved by `tradesim jobs submit`), or the beginning
        .set_starting_offsets(start_at(args.source_topic, args.source_start, KafkaOffsetResetStrategy.EARLIEST))
        .set_value_only_deserializer(text_values())
        .set_property("partition.discovery.interval.ms", "60000")
        .build()
    )
    raw = env.from_source(source, WatermarkStrategy.no_watermarks(), "market_data")
    topic = args.source_topic
    classified = raw.map(lambda r: logic.classify(r, topic)).name("parse ticks")

    unparsed = classified.filter(lambda c: c[1] is not None).map(lambda c: c[1], output_type=Types.STRING())
    ticks = classified.filter(lambda c: c[0] is not None).map(lambda c: c[0])
    row_type = Types.ROW_NAMED(["symbol", "payload"], [Types.STRING(), Types.STRING()])
    rows = (ticks.key_by(lambda t: t.symbol, key_type=Types.STRING())
            .process(SymbolBarsFunction(args.out_of_orderness_ms, topic), output_type=row_type)
            .name("bars 1s+1m per symbol"))
    dead_letter_sink(unparsed.union(rows.get_side_output(DEAD_LETTERS)), topic=args.dead_letter_topic,
                     bootstrap=args.bootstrap, security_protocol=args.kafka_security_protocol)

    return keyed_kafka_sink(env, rows, table="bars_sink", key_field="symbol", topic=args.bars_topic,
                            bootstrap=args.bootstrap, security_protocol=args.kafka_security_protocol)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    env = StreamExecutionEnvironment.get_execution_environment()
    build(env, args)
    env.execute(args.job_name)


if __name__ == "__main__":
    main()
