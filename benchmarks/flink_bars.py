"""`tradesim bench bars`: what the `bars` job sustains on this box, its tick→bar latency, and the platform's limit.

Per implementation ("mode"): jvm (the job the stack runs), thread and process (its Python twin in PyFlink's two
execution modes):
  throughput: N ticks are written first (a backlog), then the job is submitted on them with a fresh group; the
              rate is the ticks accounted in 1 s bars divided by the time between the first and the last bar.
  latency:    ticks are then produced live at a fixed rate with event time = wall clock; for each 1 s bar,
              latency = time the bar is read − window end. It includes the job's out-of-orderness (set to
              OOO_MS here) and the 200 ms periodic watermark, i.e. the earliest a correct bar can exist.
Baseline, once per run: the `passthrough` job (Flink SQL, Kafka → Kafka, no Python at runtime) over the same
backlog; ratio = bars ticks/s ÷ passthrough records/s.
"""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any, Literal

from confluent_kafka import Consumer, TopicPartition

from benchmarks.stats import percentile
from benchmarks.stats import rate as rate_of
from tradesim.adapters.kafka.client import TopicSpec, consumer, ensure_topics, producer, start_positions
from tradesim.domain.events import Bar, Tick, decode, encode
from tradesim.settings import Settings
from tradesim.stack.errors import StackError

OOO_MS = 200
#: the implementations a run can measure, in the order `--mode all` runs them
MODES = ("jvm", "thread", "process")
SYMBOLS = [f"S{i:02d}" for i in range(20)]


def _ticks(n: int, base_ms: int, step_ms: int) -> list[bytes]:
    out = []
    for i in range(n):
        price = Decimal(100 + (i * 7919) % 500) / 10
        t = Tick(symbol=SYMBOLS[i % len(SYMBOLS)], bid=price, ask=price + Decimal("0.1"), last=price,
                 size=1 + i % 9, event_time_ms=base_ms + i * step_ms, seq=i + 1, scenario_id="bench")
        out.append(encode(t))
    return out


def _produce(settings: Settings, topic: str, values: list[bytes]) -> None:
    p = producer(settings.kafka, **{"linger.ms": 20, "batch.num.messages": 10000})
    for v in values:
        while True:
            try:
                p.produce(topic, key=v[v.index(b'"symbol":"') + 10:].split(b'"', 1)[0], value=v)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    assert p.flush(60) == 0


def _assigned(settings: Settings, group: str, topic: str, at: Literal["earliest", "latest"],
              **overrides: Any) -> Consumer:
    """A consumer of `group` on every partition of `topic`, from its first (`earliest`) or next (`latest`) offset.
    KafkaUnavailable when Kafka does not answer (start_positions says so in one line), StackError when the topic
    is not there."""
    positions = start_positions(settings.kafka, group, topic, at)
    if not positions:
        raise StackError(f"topic {topic} is not on the Kafka cluster at {settings.kafka.bootstrap}")
    c = consumer(settings.kafka, group_id=group, **overrides)
    c.assign([TopicPartition(topic, p, offset) for p, offset in sorted(positions.items())])
    return c


def _reader(settings: Settings, topic: str) -> Consumer:
    return _assigned(settings, f"bench-{uuid.uuid4().hex[:6]}", topic, "earliest",
                     **{"isolation.level": "read_uncommitted"})


def _count_until(settings: Settings, topic: str, total: int, weigh, timeout_s: float) -> tuple[float, int]:  # noqa: ANN001
    """Read `topic` until the weighed sum reaches total; (arrival rate, sum). A fetch returns up to 1000 records
    at once, timed when it returns: the rate is what came after the first fetch that had any, over the time from it
    to the last one (the first fetch's records arrived before it was timed; NaN: see `benchmarks.stats.rate`)."""
    c = _reader(settings, topic)
    first = last = 0.0
    seen = before_first = 0
    deadline = time.monotonic() + timeout_s
    while seen < total and time.monotonic() < deadline:
        batch = c.consume(num_messages=1000, timeout=0.5)
        now = time.monotonic()
        weight = sum(weigh(msg.value()) for msg in batch if msg.error() is None)
        if weight:
            if not first:
                first, before_first = now, weight
            last = now
            seen += weight
    c.close()
    return rate_of(seen - before_first, first, last), seen


def _one_second_count(value: bytes) -> int:
    bar = decode(Bar, value)
    return bar.trade_count if bar.interval == "1s" and bar.symbol in SYMBOLS else 0


def _wait_running(rest, job_id: str, timeout_s: float = 120) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        d = rest.job(job_id)
        if d["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in d["vertices"]):
            return
        time.sleep(0.5)
    raise StackError(f"job {job_id} not running after {timeout_s:.0f} s")


def _latency(settings: Settings, ticks_topic: str, bars_topic: str, rate: int, seconds: int) -> list[float]:
    """Produce live ticks at `rate`/s for `seconds`; latencies (ms) of the 1 s bars of those ticks."""
    c = _reader(settings, bars_topic)
    c.assign([TopicPartition(bars_topic, tp.partition, -1) for tp in c.assignment()])  # only new bars
    p = producer(settings.kafka, **{"linger.ms": 1})
    start_ms = int(time.time() * 1000)
    end = time.monotonic() + seconds
    i = 0
    lat: list[float] = []
    while time.monotonic() < end:
        now_ms = int(time.time() * 1000)
        due = (now_ms - start_ms) * rate // 1000
        while i < due:
            price = Decimal(100 + i % 50)
            t = Tick(symbol=SYMBOLS[i % len(SYMBOLS)], bid=price, ask=price, last=price, size=1,
                     event_time_ms=now_ms, seq=10_000_000 + i, scenario_id="bench-live")
            p.produce(ticks_topic, key=t.key, value=encode(t))
            i += 1
        p.poll(0)
        for msg in c.consume(num_messages=1000, timeout=0.01):
            if msg.error() is None:
                bar = decode(Bar, msg.value())
                if bar.interval == "1s" and bar.window_start_ms >= start_ms:
                    lat.append(time.time() * 1000 - bar.window_end_ms)
    p.flush(10)
    c.close()
    return lat


def run(settings: Settings, modes: list[str], n_ticks: int, rate: int, out: list[str]) -> dict[str, float]:
    from tradesim.stack.flink import Flink
    from tradesim.stack.jobs import submit_job

    rest = Flink(settings).rest()
    run_id = uuid.uuid4().hex[:6]
    ticks_topic = f"bench_ticks_{run_id}"
    # one partition: arrival order per symbol is the order produced. Each mode reads its own copy of the
    # backlog, so no job meets the live ticks of an earlier one's latency phase before its own.
    mode_ticks = {mode: f"bench_ticks_{mode}_{run_id}" for mode in modes}
    topics = [TopicSpec(ticks_topic, 1, {}), TopicSpec(f"bench_copy_{run_id}", 1, {})]
    for mode in modes:
        topics += [TopicSpec(mode_ticks[mode], 1, {}), TopicSpec(f"bench_bars_{mode}_{run_id}", 3, {}),
                   TopicSpec(f"bench_dl_{mode}_{run_id}", 1, {})]
    ensure_topics(settings.kafka, topics)
    base = int(time.time() * 1000) - n_ticks * 10 - 3_600_000
    values = _ticks(n_ticks, base, 10)
    # each symbol's clock must pass its last window (the job closes windows per symbol)
    flush = [encode(Tick(symbol=symbol, bid=Decimal(1), ask=Decimal(1), last=Decimal(1), size=0,
                         event_time_ms=base + n_ticks * 10 + 5_000, seq=20_000_000, scenario_id="bench"))
             for symbol in SYMBOLS]
    for topic in [ticks_topic, *mode_ticks.values()]:
        _produce(settings, topic, [*values, *flush])
    out.append(f"backlog: {n_ticks} ticks, {len(SYMBOLS)} symbols, 1 partition, parallelism 1, 1 TaskManager")
    figures: dict[str, float] = {}
    jobs: list[str] = []
    try:
        job_id, _ = submit_job(settings, "passthrough", overrides={
            "source-topic": ticks_topic, "sink-topic": f"bench_copy_{run_id}", "group-id": f"bench-pt-{run_id}",
            "job-name": f"tradesim-bench-passthrough-{run_id}"})
        jobs.append(job_id)
        pt_rate, seen = _count_until(settings, f"bench_copy_{run_id}", n_ticks + len(flush), lambda v: 1, 600)
        figures["passthrough_records_per_s"] = pt_rate
        out.append(f"passthrough (Flink SQL, no Python): {pt_rate:,.0f} records/s ({seen} records)")
        rest.cancel(job_id)
        for mode in modes:
            bars_topic = f"bench_bars_{mode}_{run_id}"
            job_id, _ = submit_job(settings, "bars", overrides={
                "source-topic": mode_ticks[mode], "bars-topic": bars_topic,
                "dead-letter-topic": f"bench_dl_{mode}_{run_id}",
                "group-id": f"bench-bars-{mode}-{run_id}", "job-name": f"tradesim-bench-bars-{mode}-{run_id}",
                "out-of-orderness-ms": str(OOO_MS), "idleness-ms": "1000"},
                options=None if mode == "jvm" else {"python.execution-mode": mode},
                runtime="jvm" if mode == "jvm" else "python")
            jobs.append(job_id)
            _wait_running(rest, job_id)
            tps, seen = _count_until(settings, bars_topic, n_ticks, _one_second_count, 900)
            lat = sorted(_latency(settings, mode_ticks[mode], bars_topic, rate, 20))
            p50, p99 = percentile(lat, 50), percentile(lat, 99)
            figures |= {f"{mode}_ticks_per_s": tps, f"{mode}_p50_ms": p50, f"{mode}_p99_ms": p99,
                        f"{mode}_ratio": tps / pt_rate}
            out.append(f"bars [{mode}]: {tps:,.0f} ticks/s sustained ({seen} ticks in bars); "
                       f"live at {rate}/s: 1 s bar latency after window end p50 {p50:.0f} ms, p99 {p99:.0f} ms "
                       f"({len(lat)} bars; includes {OOO_MS} ms out-of-orderness, p99 beyond it "
                       f"{p99 - OOO_MS:.0f} ms); "
                       f"ratio to passthrough {tps / pt_rate:.2f}")
            rest.cancel(job_id)
    finally:
        for job_id in jobs:
            try:
                rest.cancel(job_id)
            except Exception:  # noqa: BLE001, S110 - best-effort cleanup of an already finished job
                pass
    return figures
