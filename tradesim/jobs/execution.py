"""Flink job `execution`: orders matched against the live price stream, settled on the user's portfolio item.

Topology
  trade_orders ─ parse (malformed → dead_letter) ─┐
                                                   ├─ keyBy(symbol) SymbolStage: Book (quote + resting orders)
  market_data ─ parse (malformed: dropped here; ───┘     in keyed state → Decisions (fill/expire/cancel/reject)
                the market-data service dead-letters them)   │
                                                   keyBy(user) UserStage: settle() = ONE conditional write
                                                   on Portfolios (outcome under the order id + cash/position);
                                                   a user's queued decisions share one write (group commit)
                                                             │ (order, outcome, what the write left)
                                     ┌───────────────────────┴──────────────────────┐
                  trade_executed (OrderOutcome JSON, key = user_id)   MirrorStage: batches of outcomes to the
                                                                      Orders items and the API's holdings view;
                                                                      `in_book` for an order that rests

A record a stage raises on goes to dead_letter with the error and the job goes on (tradesim.jobs.guard); such an
order still ends, rejected with `internal_error`, when that can be recorded.

Guarantees. State (books, queued decisions, unwritten mirror batches) is checkpointed; sources rewind to the
last checkpoint on failure. A replayed order may match differently (orders and ticks interleave anew), but
settle() finds the first recorded outcome and re-emits it, so each order_id has exactly one terminal outcome
and no portfolio applies an order twice. The
Kafka sink is at-least-once: a replay can repeat an outcome record (same order_id, same decision); consumers
key by order_id (read models use it as the document id). Exactly-once transactions would delay every outcome by
a checkpoint interval, which the latency target cannot afford.

DynamoDB unavailable: settle() raises Unavailable; the user and mirror stages retry with capped backoff,
holding the record (backpressure), so nothing is skipped and the job catches up when the store returns.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from pyflink.common import Configuration, Row, Types, WatermarkStrategy
from pyflink.datastream import CheckpointingMode, RuntimeContext, StreamExecutionEnvironment
from pyflink.datastream.connectors.kafka import (
    KafkaOffsetResetStrategy,
    KafkaSource,
)
from pyflink.datastream.functions import KeyedCoProcessFunction, KeyedProcessFunction
from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor
from pyflink.table import StreamTableEnvironment

from tradesim.adapters.tracing import ORDER_ATTRIBUTE
from tradesim.domain.book import EARLY_CANCEL_WINDOW_MS, Book, Decision
from tradesim.jobs import execution_logic as logic
from tradesim.jobs import guard, managed
from tradesim.jobs.sinks import DEAD_LETTERS, add_kafka_args, dead_letter_sink, keyed_kafka_sink, start_at, text_values

log = logging.getLogger("tradesim.jobs.execution")
T = TypeVar("T")


def _settings(carried: dict[str, str]) -> Any:
    """The stack's settings: the Flink component starts the TaskManager with them as TRADESIM_* variables; on
    Managed Flink they come with the operator (tradesim.jobs.managed)."""
    from tradesim.settings import load_settings

    managed.adopt(carried)
    return load_settings()


_TRACING: Any = None


def _tracing() -> Any:
    """The worker's one tracer (every operator of the job shares the interpreter in thread mode)."""
    global _TRACING
    if _TRACING is None:
        from tradesim.adapters.tracing import Tracing

        try:
            _TRACING = Tracing(_settings({}).tracing, logic.JOB_NAME)
        except Exception as exc:  # noqa: BLE001 - a trace is an aid: the job runs without one
            log.warning("tracing off in this worker: %s", exc)
            _TRACING = Tracing.off()
    return _TRACING


def _trace_decisions(decisions: list[Decision], start_ns: int, trigger: str) -> None:
    """A span per decision of a traced order: the book's work on the record (an order, or a tick that moved it)."""
    tracing = _tracing()
    for d in decisions:
        tracing.record(f"match {d.kind}", d.order.traceparent, start_ns,
                       attributes={ORDER_ATTRIBUTE: d.order.order_id, "trigger": trigger})


class SymbolStage(KeyedCoProcessFunction):
    """Keyed by symbol: orders/cancels (input 1) and ticks (input 2) against one Book in state."""

    def __init__(self, deadline_ms: int, orders_topic: str, market_topic: str) -> None:
        super().__init__()
        self.deadline_ms = deadline_ms  # an order older than this when it arrives expires unmatched
        self.orders_topic, self.market_topic = orders_topic, market_topic
        self.carried = managed.carried()

    def open(self, runtime_context: RuntimeContext) -> None:
        from tradesim.adapters.redis.client import connect
        from tradesim.adapters.redis.prices import PriceCache
        from tradesim.domain.events import Tick
        from tradesim.domain.matching import SlippageModel

        s = _settings(self.carried)
        self.faults = s.faults
        self.book_state = runtime_context.get_state(ValueStateDescriptor("book", Types.PICKLED_BYTE_ARRAY()))
        # a cancel may overtake its order while the order's publish is on its way: up to the API's Kafka timeout
        self.early_window_ms = max(EARLY_CANCEL_WINDOW_MS, int(3_000 * s.api.kafka_timeout_s))
        self.slippage = SlippageModel(max_bps=s.trading.slippage_bps, seed=s.trading.slippage_seed)
        cache = PriceCache(connect(s.redis))

        def fallback(symbol: str) -> Tick | None:
            try:
                got = cache.latest(symbol)
            except Exception:  # noqa: BLE001 - Redis down: behave as if no price was ever seen
                return None
            return got[0] if got else None

        self.fallback = fallback

    def _book(self) -> Book:
        return self.book_state.value() or Book()

    def process_element1(self, value: Any, ctx: KeyedCoProcessFunction.Context) -> Iterable[Any]:
        start_ns = time.time_ns()
        try:
            self.faults.check("match", value.symbol)
            book = self._book()
            if value.type == "order_placed":
                decisions = list(book.on_order(value, self.slippage, self.fallback, deadline_ms=self.deadline_ms,
                                               early_window_ms=self.early_window_ms))
            else:
                decisions = list(book.on_cancel(value, early_window_ms=self.early_window_ms))
        except Exception as exc:  # noqa: BLE001 - set the record aside; the book stays as it was (guard)
            yield DEAD_LETTERS, guard.failed(value, exc, stage="match", source_topic=self.orders_topic,
                                             consumer=logic.JOB_NAME)
            if value.type == "order_placed":  # the order still ends, with no cash or shares moved
                yield Decision(value, "reject", reason="internal_error")
            return
        self.book_state.update(book)
        _trace_decisions(decisions, start_ns, "order")
        yield from decisions

    def process_element2(self, value: Any, ctx: KeyedCoProcessFunction.Context) -> Iterable[Any]:
        start_ns = time.time_ns()
        try:
            self.faults.check("match", value.symbol)
            book = self._book()
            decisions = list(book.on_tick(value, self.slippage))
        except Exception as exc:  # noqa: BLE001 - as above: the tick is set aside, the book keeps its quote
            yield DEAD_LETTERS, guard.failed(value, exc, stage="match", source_topic=self.market_topic,
                                             consumer=logic.JOB_NAME)
            return
        self.book_state.update(book)
        if decisions:
            _trace_decisions(decisions, start_ns, "tick")
        yield from decisions


class UserStage(KeyedProcessFunction):
    """Keyed by user: settle the decisions (conditional writes), retrying while DynamoDB is unavailable.

    Emits (order, outcome, what the write left — the holdings-view patch) for the Kafka sink and for the mirror
    stage downstream. This is the job's serial bottleneck, so it does nothing else: the Orders write and the Redis
    view patch happen in the mirror stage, overlapping the next settle.

    Group commit: a user's decisions queue in keyed list state and a processing-time timer settles them every
    `trading.settle_batch_ms`, usually with one write of the user's item for the whole queue. While the job keeps
    up, a queue holds one decision (the price: up to that many ms of latency); when orders arrive faster than
    single writes can go, queues grow and each write carries more orders, so throughput rises with load. State
    and timers are checkpointed: decisions queued at a checkpoint are settled after a restore. 0: settle each
    decision on arrival."""

    def __init__(self, orders_topic: str) -> None:
        super().__init__()
        self.orders_topic = orders_topic
        self.carried = managed.carried()

    def open(self, runtime_context: RuntimeContext) -> None:
        from tradesim.adapters.dynamodb.client import DynamoDB
        from tradesim.adapters.dynamodb.orders import OrderStore
        from tradesim.adapters.dynamodb.portfolios import PortfolioStore
        from tradesim.domain.settlement import DecisionClock

        s = _settings(self.carried)
        self.faults = s.faults
        # Every operator of the job runs in one embedded interpreter (thread mode). This stage waits on DynamoDB;
        # after each answer it must win the GIL back from the other stages, which by default may hold it 5 ms.
        sys.setswitchinterval(0.0005)
        db = DynamoDB(s.dynamodb)
        # outcomes leave the portfolio item for `Orders` (mirrored downstream) soon after their decision, so
        # each write rewrites a small item (see tradesim.adapters.dynamodb.portfolios)
        self.portfolios = PortfolioStore(db, horizon_ms=int(s.trading.outcome_live_s * 1000),
                                         prune_above=s.trading.prune_above, archive=OrderStore(db))
        self.fees = s.trading.fee_model()
        self.clock = DecisionClock()  # a user's decision times increase in the order this stage settles them
        self.batch_ms = s.trading.settle_batch_ms
        self.queued = runtime_context.get_list_state(ListStateDescriptor("queued", Types.PICKLED_BYTE_ARRAY()))
        #: orders placed before this attempt began may be replays of orders decided before a restore
        self.opened_ms = int(time.time() * 1000)

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        if value.kind == "rest":
            if value.order.placed_at_ms < self.opened_ms:  # perhaps decided before, its outcome lost with the crash
                from tradesim.domain.errors import InvalidRecord
                from tradesim.domain.settlement import decided_before

                try:
                    settled = _retrying(lambda: decided_before(value, self.portfolios))
                except InvalidRecord as exc:  # a recorded outcome it cannot read: the order rests, as before
                    log.warning("recorded outcome unreadable: %s", exc)
                    settled = None
                if settled is not None:  # re-emitted, as settling re-emits a replay's recorded outcome
                    yield settled.order, settled.outcome, settled.written
                    return
            yield value.order, None, None  # nothing to settle: only the Orders mirror records it (as accepted)
            return
        if self.batch_ms == 0:
            yield from self._settle([value])
        else:
            _queue_for_next_tick(self.queued, ctx, self.batch_ms, value)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Any]:
        decisions = list(self.queued.get())
        if decisions:
            settled = self._settle(decisions)
            self.queued.clear()
            yield from settled

    def _settle(self, decisions: list[Any]) -> list[Any]:
        """The settled (order, outcome, written) triples; a decision whose settling raises goes to dead_letter,
        alone (its group is settled again without it), and its order is rejected with `internal_error` if that
        can be recorded. Safe for at-most-once: settling finds an outcome already recorded and returns it."""
        from tradesim.domain.settlement import settle_group

        user_id = decisions[0].order.user_id
        start_ns = time.time_ns()

        def write(group: Sequence[Decision]) -> list[Any]:
            for d in group:
                self.faults.check("settle", d.order.symbol)
            return _retrying(lambda: settle_group(user_id, list(group), self.portfolios, self.fees, self.clock))

        settled, failed = guard.isolate(decisions, write)
        out: list[Any] = []
        for decision, exc in failed:
            out.append((DEAD_LETTERS, guard.failed(decision.order, exc, stage="settle",
                                                   source_topic=self.orders_topic, consumer=logic.JOB_NAME)))
            rejected, _ = guard.isolate([Decision(decision.order, "reject", reason="internal_error")], write)
            settled += rejected
        return out + [(s.order, _traced(s.order, s.outcome, start_ns), s.written) for s in settled]


def _traced(order: Any, outcome: Any, start_ns: int) -> Any:
    """The outcome under its settle span (the write that decided it), so the read side continues the trace."""
    parent = _tracing().record("settle", order.traceparent, start_ns, attributes={
        ORDER_ATTRIBUTE: order.order_id, "status": outcome.status})
    return outcome if parent is None else outcome.model_copy(update={"traceparent": parent})


class MirrorStage(KeyedProcessFunction):
    """The API's holdings view (Redis) and the `Orders` items take the recorded outcomes, in batches.

    Why batches: one round trip per order to each store cost as much CPU as the settle itself on this 2-core
    box. Decided orders wait in keyed list state and a processing-time timer flushes them every
    `trading.mirror_flush_ms`: one Redis pipeline of view patches (in arrival order, so a user's patches stay
    ordered) and BatchWriteItem calls. State and timers are checkpointed, so a batch caught by a checkpoint is
    flushed after a restore; the writes are idempotent, so replays may repeat them. Keyed by one constant: the
    batch is the subtask's whole stream (at any parallelism this operator is one subtask's work, which batching
    makes light). A resting order's `in_book` mark stays immediate and conditional (it must never replace an
    outcome)."""

    def __init__(self, orders_topic: str, executed_topic: str) -> None:
        super().__init__()
        self.orders_topic, self.executed_topic = orders_topic, executed_topic
        self.carried = managed.carried()

    def open(self, runtime_context: RuntimeContext) -> None:
        from tradesim.adapters.dynamodb.client import DynamoDB
        from tradesim.adapters.dynamodb.orders import OrderStore
        from tradesim.adapters.redis.client import connect
        from tradesim.adapters.redis.portfolio_view import ViewWriter

        s = _settings(self.carried)
        self.orders = OrderStore(DynamoDB(s.dynamodb))
        # the API's pre-check reads holdings from this Redis view
        client = connect(s.redis, timeout_s=0.5)
        self.view = logic.BestEffort(ViewWriter(client).patch_all,
                                      on_error=lambda exc: log.warning("holdings view not patched: %s", exc))
        self.pending = runtime_context.get_list_state(ListStateDescriptor("pending", Types.PICKLED_BYTE_ARRAY()))
        self.flush_ms = s.trading.mirror_flush_ms

    def process_element(self, value: Any, ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        order, outcome, _written = value
        if outcome is not None:
            _queue_for_next_tick(self.pending, ctx, self.flush_ms, value)
            return
        try:  # the order rests: open until its outcome, whatever the processing deadline
            _retrying(lambda: self.orders.mark_in_book(order))
        except Exception as exc:  # noqa: BLE001 - the mark is advisory (the book holds the order); set it aside
            yield DEAD_LETTERS, guard.failed(order, exc, stage="mirror", source_topic=self.orders_topic,
                                             consumer=logic.JOB_NAME)

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Any]:
        batch = list(self.pending.get())
        if not batch:
            return
        self.view.apply([written for _, _, written in batch if written is not None])

        def record(decided: Sequence[tuple[Any, Any]]) -> list[None]:
            _retrying(lambda: self.orders.record_outcomes(list(decided)))
            return []

        _, failed = guard.isolate([(order, outcome) for order, outcome, _ in batch], record)
        self.pending.clear()
        for (_, outcome), exc in failed:  # the outcome is settled and on trade_executed; only its copy is missing
            yield DEAD_LETTERS, guard.failed(outcome, exc, stage="mirror", source_topic=self.executed_topic,
                                             consumer=logic.JOB_NAME)


def _queue_for_next_tick(queue: Any, ctx: KeyedProcessFunction.Context, period_ms: int, value: Any) -> None:
    """Add to the key's list state; its timer fires at the next multiple of the period (Flink keeps one timer per
    key and timestamp, so a busy key still gets one timer per period)."""
    queue.add(value)
    now = ctx.timer_service().current_processing_time()
    ctx.timer_service().register_processing_time_timer(now - now % period_ms + period_ms)


def _retrying(call: Callable[[], T]) -> T:
    """Hold the record (backpressure) while DynamoDB is unavailable or the item keeps changing under the write,
    with capped backoff; nothing is skipped (settling and the mirror writes are idempotent per order id)."""
    from tradesim.domain.errors import VersionConflict
    from tradesim.ports import Unavailable

    backoff = 0.1
    while True:
        try:
            return call()
        except (Unavailable, VersionConflict) as exc:
            log.warning("dynamodb unavailable or item contended, retrying: %s", exc)
            time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


def _outcome_row(value: Any) -> Row:
    from tradesim.domain.events import encode

    outcome = value[1]
    return Row(outcome.user_id, encode(outcome).decode())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="tradesim.jobs.execution")
    add_kafka_args(p)
    p.add_argument("--orders-topic", default="trade_orders")
    p.add_argument("--market-topic", default="market_data")
    p.add_argument("--executed-topic", default="trade_executed")
    p.add_argument("--dead-letter-topic", default="dead_letter")
    p.add_argument("--group-id", default="tradesim-execution")
    p.add_argument("--orders-start", default="", help="partition:offset,... (default: the group's committed)")
    p.add_argument("--market-start", default="", help="partition:offset,... (default: the group's committed)")
    p.add_argument("--job-name", default=logic.JOB_NAME)
    p.add_argument("--processing-deadline-s", type=int, default=86_400,
                   help="an order that reaches the job later than this after its placing expires unmatched")
    p.add_argument("--checkpoint-interval-ms", type=int, default=5000)
    # An order crosses three exchanges (by symbol, by user, by order); at Flink's default 100 ms buffer timeout a
    # quiet stream waits up to that at each. 0 sends each record on at once, so no output needs a flusher thread
    # waking on a timer whether or not an order came (docs/design/flink-jobs.md).
    p.add_argument("--buffer-timeout-ms", type=int, default=0)
    # the job sets it itself: Managed Flink takes no cluster configuration and would run the stages in process mode
    p.add_argument("--python-execution-mode", choices=("thread", "process"), default=None)
    return p.parse_args(argv)


def _source(args: argparse.Namespace, topic: str, group: str, start: str, reset: Any) -> KafkaSource:
    return (
        KafkaSource.builder()
        .set_bootstrap_servers(args.bootstrap)
        .set_property("security.protocol", args.kafka_security_protocol)
        .set_topics(topic)
        .set_group_id(group)
        .set_starting_offsets(start_at(topic, start, reset))
        .set_value_only_deserializer(text_values())
        .set_property("isolation.level", "read_committed")
        .set_property("partition.discovery.interval.ms", "60000")
        .build()
    )


def build(env: StreamExecutionEnvironment, args: argparse.Namespace) -> StreamTableEnvironment:
    env.enable_checkpointing(args.checkpoint_interval_ms, CheckpointingMode.EXACTLY_ONCE)
    env.set_buffer_timeout(args.buffer_timeout_ms)
    orders_topic = args.orders_topic
    # Orders: every accepted order must be processed, so a fresh job starts from the beginning of the topic.
    raw_orders = env.from_source(_source(args, orders_topic, args.group_id, args.orders_start,
                                         KafkaOffsetResetStrategy.EARLIEST),
                                 WatermarkStrategy.no_watermarks(), "trade_orders")
    classified = raw_orders.map(lambda r: logic.classify_order(r, orders_topic)).name("parse orders")
    unparsed = classified.filter(lambda c: c[1] is not None).map(lambda c: c[1], output_type=Types.STRING())
    orders = classified.filter(lambda c: c[0] is not None).map(lambda c: c[0])

    # Ticks: only the current price matters; a fresh job starts at the end (older prices come from the cache).
    raw_ticks = env.from_source(
        _source(args, args.market_topic, args.group_id + "-prices", args.market_start,
                KafkaOffsetResetStrategy.LATEST),
        WatermarkStrategy.no_watermarks(), "market_data")
    ticks = raw_ticks.map(lambda r: logic.parse_tick_or_none(r)).filter(lambda t: t is not None)

    decisions = (
        orders.connect(ticks)
        .key_by(lambda o: o.symbol or "", lambda t: t.symbol, key_type=Types.STRING())
        .process(SymbolStage(args.processing_deadline_s * 1000, orders_topic, args.market_topic))
        .name("match by symbol")
    )
    row_type = Types.ROW_NAMED(["user_id", "payload"], [Types.STRING(), Types.STRING()])
    settled = (
        decisions.key_by(lambda d: d.order.user_id, key_type=Types.STRING())
        .process(UserStage(orders_topic))
        .name("settle by user")
    )
    mirrored = (settled.key_by(lambda s: "mirror", key_type=Types.STRING())
                .process(MirrorStage(orders_topic, args.executed_topic)).name("orders mirror"))
    letters = [stage.get_side_output(DEAD_LETTERS) for stage in (decisions, settled, mirrored)]
    dead_letter_sink(unparsed.union(*letters), topic=args.dead_letter_topic, bootstrap=args.bootstrap,
                     security_protocol=args.kafka_security_protocol)
    outcomes = (settled.filter(lambda s: s[1] is not None).name("outcomes only")
                .map(_outcome_row, output_type=row_type).name("outcome json"))
    return keyed_kafka_sink(env, outcomes, table="outcomes_sink", key_field="user_id",
                            topic=args.executed_topic, bootstrap=args.bootstrap,
                            security_protocol=args.kafka_security_protocol)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = Configuration()
    if args.python_execution_mode:
        config.set_string("python.execution-mode", args.python_execution_mode)
    env = StreamExecutionEnvironment.get_execution_environment(config)
    build(env, args)
    env.execute(args.job_name)


if __name__ == "__main__":
    main()
