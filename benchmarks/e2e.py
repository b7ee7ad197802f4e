"""`tradesim bench e2e`: POST /orders → execution job → trade_executed, open loop at fixed offered rates.

Latency is measured from each order's *scheduled* send time to the arrival of its outcome on `trade_executed`
(no coordinated omission: sends never wait for earlier answers). In the same run, the Flink pass-through job
(Kafka → Kafka in Flink SQL, no Python) gives the platform's own limit; the ratio is sustained e2e orders/s over
pass-through records/s. Needs `tradesim up` with the API, the market-data service and Flink.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
import uuid
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

from benchmarks.flink_bars import _assigned, _count_until, _produce, _ticks
from benchmarks.orders import _fresh_price, _order_request, _Pool, _setup, price_tick
from benchmarks.stats import percentile
from benchmarks.usage import component_usage, cpu_spent, switches_spent
from tradesim.adapters.kafka.archive import spans
from tradesim.adapters.kafka.client import TopicSpec, ensure_topics, start_positions
from tradesim.services.ingest.publisher import publish_all
from tradesim.settings import Settings


class _Outcomes(threading.Thread):
    """Records the arrival time of each order's first outcome."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(daemon=True)
        topic = settings.topics.trade_executed
        self.c = _assigned(settings, "bench-e2e-" + uuid.uuid4().hex[:6], topic, "latest")
        self.arrived: dict[str, tuple[float, str]] = {}
        self.decided_ms: dict[str, int] = {}  # the settle's decision time (wall clock), for the breakdown
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            # poll() answers as soon as one record is there; consume(n, timeout) waits for n records or the whole
            # timeout, which added up to 100 ms (50 ms at the median) to every measured latency
            first = self.c.poll(0.1)
            for m in [] if first is None else [first, *self.c.consume(999, 0)]:
                if m.error() is None:
                    o = json.loads(m.value())  # only two fields: a full model decode per record costs the SUT CPU
                    if o["order_id"] not in self.arrived:
                        self.arrived[o["order_id"]] = (time.monotonic(), o["status"])
                        self.decided_ms[o["order_id"]] = o["decided_at_ms"]
        self.c.close()


async def _open_loop(settings: Settings, keys: list[str], symbol: str, rate: float, seconds: float,
                     ) -> tuple[int, Counter[str], dict[str, float], dict[str, float]]:
    """(sent, refusals by status and code, order_id → scheduled send time, order_id → time of the API's 202) for
    one offered rate.

    Uses the lean keep-alive client of `bench orders`: with httpx (and a model decode per outcome) the load
    generator took half a core at 120 orders/s from the system under test on the same two cores."""
    scheduled: dict[str, float] = {}
    answered: dict[str, float] = {}
    errors: Counter[str] = Counter()
    url = urlsplit(settings.api.client_url)
    pool = _Pool(url.hostname or "127.0.0.1", url.port or 80)
    host = url.netloc

    async def send(i: int, at: float) -> None:
        status, body = await pool.exchange(_order_request(host, keys, symbol, i))
        if status == 202:
            order_id = json.loads(body)["order_id"]
            scheduled[order_id], answered[order_id] = at, time.monotonic()
        elif status == 0:
            errors["connection failed"] += 1  # an overloaded server dropping the connection counts as refused
        else:
            errors[f"{status} {json.loads(body).get('code', '')}".strip()] += 1

    async def keep_fresh() -> None:
        # prices go stale (marketdata.stale_after_s) and then the API refuses orders: tick every 5 s
        while True:
            await asyncio.sleep(5)
            await asyncio.to_thread(publish_all, settings, [price_tick(symbol, int(time.time()))])

    keeper = asyncio.create_task(keep_fresh())
    start = time.monotonic()
    tasks = []
    n = int(rate * seconds)
    for i in range(n):
        at = start + i / rate
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        tasks.append(asyncio.create_task(send(i, at)))
    await asyncio.gather(*tasks)
    keeper.cancel()
    pool.close()
    return n, errors, scheduled, answered


def _backlog(settings: Settings, group: str = "tradesim-execution") -> int:
    """Orders on trade_orders the execution job has not committed yet (as of its last checkpoint)."""
    topic = settings.topics.trade_orders
    # both raise KafkaUnavailable when Kafka does not answer; a partition the group never committed starts at its
    # end ("latest"), so it counts nothing, as before the job's first checkpoint
    committed = start_positions(settings.kafka, group, topic, "latest")
    return sum(max(0, s.high - max(committed.get(s.partition, s.high), s.low)) for s in spans(settings.kafka, [topic]))


def _drain(settings: Settings, out: list[str], limit_s: float = 900) -> None:
    """Wait until the job has caught up with orders accepted before this run (e.g. by `tradesim bench orders`
    while no job ran): the job executes every accepted order, and measuring on top of a backlog measures it."""
    start = time.monotonic()
    first = lag = _backlog(settings)
    while lag > 200 and time.monotonic() - start < limit_s:
        time.sleep(5)
        lag = _backlog(settings)
    if first > 200:
        out.append(f"drained a backlog of {first:,} earlier orders in {time.monotonic() - start:,.0f} s "
                   f"({lag:,} left) before measuring")


def accounts_for(settings: Settings, rate: float) -> int:
    """The fewest accounts (at least 8) none of which reaches the API's recent-orders limit at `rate` orders/s.

    A user's item holds the outcomes of about the last `trading.outcome_live_s`, plus up to a prune interval (1 s)
    and the mirror's lag before they leave for `Orders`; 5 s more is a wide margin. (Until outcomes left the item,
    they stayed for the whole run, and this was sized for every order of the run.)"""
    hold_s = settings.trading.outcome_live_s + 5
    return max(8, math.ceil(rate * hold_s / (0.8 * settings.trading.max_recent_orders)))


def _legs(scheduled: dict[str, float], answered: dict[str, float], arrived: dict[str, tuple[float, str]],
          decided_ms: dict[str, int], wall_minus_monotonic: float) -> dict[str, dict[str, float]]:
    """Each order's latency in three legs: its scheduled send → the API's 202 (the load generator's own lateness
    and connects, then the claim, Kafka's ack, Redis); → the settle's decision (`decided_at_ms`: fetched by the
    job, matched, queued for the group commit; may be negative if the job decides before the 202 is read); → its
    outcome read here (the settle's write, the sink, Kafka). The decision time is the job's wall clock, on this
    box, moved onto the monotonic clock with the offset between the two taken as the phase began."""
    legs: dict[str, list[float]] = {"API": [], "to the decision": [], "to the outcome": []}
    for order_id, at in scheduled.items():
        if order_id not in arrived or order_id not in decided_ms:
            continue
        decided = decided_ms[order_id] / 1000 - wall_minus_monotonic
        for name, start, end in (("API", at, answered[order_id]), ("to the decision", answered[order_id], decided),
                                 ("to the outcome", decided, arrived[order_id][0])):
            legs[name].append((end - start) * 1000)
    return {name: {"p50": percentile(v, 50), "p99": percentile(v, 99)} for name, v in legs.items()}


IDLE_S = 10.0


def _idle(settings: Settings, seconds: float = IDLE_S) -> tuple[dict[str, float], dict[str, float]]:
    """CPU seconds and context switches per second each component spends with no orders (heartbeats,
    checkpoints, scrapes, merges, timers)."""
    before, start = component_usage(settings), time.monotonic()
    time.sleep(seconds)  # the measured window itself, not a wait for a condition
    after = component_usage(settings)
    elapsed = time.monotonic() - start
    return ({name: s / elapsed for name, s in cpu_spent(before, after).items()},
            # a thread that ends takes its count along, so a tree's count can drop: never a negative idle rate
            {name: max(0, n) / elapsed for name, n in switches_spent(before, after).items()})


def net_per_order(spent: dict[str, float], idle: dict[str, float], elapsed_s: float, orders: int,
                  ) -> dict[str, float]:
    """What each component spent over a measured phase (CPU seconds, context switches), net of what it spends
    idle in as long, per order."""
    return {name: max(0.0, s - idle.get(name, 0.0) * elapsed_s) / orders for name, s in spent.items()}


def run(settings: Settings, rates: list[float], seconds: float, passthrough_records: int, out: list[str],
        parallelism: int | None = None, users: int | None = None) -> dict[str, Any]:
    """`users`: bench accounts the orders are spread over (at least what the API's recent-orders limit needs).
    Few busy accounts are the worst case for the job: each order rewrites its user's portfolio item, and the
    item holds that user's recent outcomes."""
    from tradesim.stack.flink import Flink
    from tradesim.stack.jobs import submit_job

    submit_job(settings, "execution", parallelism=parallelism)
    _drain(settings, out)
    needed = accounts_for(settings, max(rates))
    accounts = max(needed, users or 0)
    keys, symbol = _setup(settings, users=accounts)
    out.append(f"{accounts} bench accounts, orders spread evenly")
    figures: dict[str, Any] = {}
    reader = _Outcomes(settings)
    reader.start()
    try:
        # warm-up, not reported: the job may have just started (JIT, Python workers, first checkpoints); 2 s at
        # 25/s left the first measured phase of a fresh stack with a p99 of 330 ms against 50–85 ms later
        _fresh_price(settings, symbol, int(time.time()))
        _, _, warm, _ = asyncio.run(_open_loop(settings, keys, symbol, min(rates), 10))
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not set(warm) <= set(reader.arrived):
            time.sleep(0.1)
        idle, idle_switches = _idle(settings)
        out.append(f"idle context switches: {sum(idle_switches.values()):,.0f}/s")
        out.append("idle CPU (ms/s): " + ", ".join(f"{n} {v * 1000:.0f}" for n, v in sorted(idle.items()))
                   + f"; total {sum(idle.values()) * 1000:.0f}")
        for rate in rates:
            _fresh_price(settings, symbol, int(time.time()))
            before, started = component_usage(settings), time.monotonic()
            wall_minus_monotonic = time.time() - time.monotonic()
            sent, errors, scheduled, answered = asyncio.run(_open_loop(settings, keys, symbol, rate, seconds))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not set(scheduled) <= set(reader.arrived):
                time.sleep(0.1)
            after, elapsed = component_usage(settings), time.monotonic() - started
            spent, switches = cpu_spent(before, after), switches_spent(before, after)
            lat = sorted((reader.arrived[o][0] - t) * 1000 for o, t in scheduled.items() if o in reader.arrived)
            done = [reader.arrived[o][0] for o in scheduled if o in reader.arrived]
            window = (max(done) - min(scheduled.values())) if done else float("nan")
            executed = sum(1 for o in scheduled if reader.arrived.get(o, (0, ""))[1] == "executed")
            p50, p99 = percentile(lat, 50), percentile(lat, 99)
            rate_done = len(done) / window if done else 0.0
            cpu = {n: v * 1000 for n, v in net_per_order(spent, idle, elapsed, len(done)).items()} if done else {}
            hand_offs = net_per_order({n: float(v) for n, v in switches.items()}, idle_switches, elapsed,
                                      len(done)) if done else {}
            legs = _legs(scheduled, answered, reader.arrived, reader.decided_ms, wall_minus_monotonic)
            # net of idle alone rewards moving cost into idle (e.g. a consumer polling more often while quiet)
            gross = sum(spent.values()) * 1000 / len(done) if done else float("nan")
            figures[rate] = {"p50_ms": p50, "p99_ms": p99, "outcomes_per_s": rate_done, "legs_ms": legs,
                             "cpu_ms_per_order": cpu, "cpu_ms_per_order_total": sum(cpu.values()),
                             "cpu_ms_per_order_gross": gross,
                             "switches_per_order": hand_offs}
            refused = ", ".join(f"{n} × {why}" for why, n in errors.most_common()) or "none"
            out.append(f"offered {rate:g} orders/s for {seconds:g} s: {len(scheduled)}/{sent} accepted "
                       f"(refused: {refused}), {len(done)} outcomes ({executed} executed) at {rate_done:,.0f}/s; "
                       f"order→outcome p50 {p50:,.0f} ms, p99 {p99:,.0f} ms")
            out.append("  where it waited, p50 / p99: " + ", ".join(
                f"{name} {v['p50']:,.0f} / {v['p99']:,.0f} ms" for name, v in legs.items()))
            out.append("  CPU-ms per order, net of idle: " + ", ".join(
                f"{n} {v:.2f}" for n, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v >= 0.005)
                + f"; total {sum(cpu.values()):.2f} (idle included: {gross:.2f})")
            out.append("  context switches per order, net of idle: " + ", ".join(
                f"{n} {v:.1f}" for n, v in sorted(hand_offs.items(), key=lambda kv: -kv[1]) if v >= 0.05)
                + f"; total {sum(hand_offs.values()):.1f}")
    finally:
        reader.stop.set()
    # the platform's own limit, same run
    run_id = uuid.uuid4().hex[:6]
    src, dst = f"bench_e2e_src_{run_id}", f"bench_e2e_copy_{run_id}"
    ensure_topics(settings.kafka, [TopicSpec(src, 1, {}), TopicSpec(dst, 1, {})])
    _produce(settings, src, _ticks(passthrough_records, int(time.time() * 1000), 10))
    job_id, _ = submit_job(settings, "passthrough", overrides={
        "source-topic": src, "sink-topic": dst, "group-id": f"bench-e2e-pt-{run_id}",
        "job-name": f"tradesim-bench-e2e-passthrough-{run_id}"})
    try:
        pt, _ = _count_until(settings, dst, passthrough_records, lambda v: 1, 600)
    finally:
        Flink(settings).rest().cancel(job_id)
    best = max((f["outcomes_per_s"] for f in figures.values()), default=0.0)
    figures["idle_cpu_ms_per_s"] = {n: v * 1000 for n, v in idle.items()}
    figures["idle_switches_per_s"] = idle_switches
    out.append(f"Flink pass-through (Kafka → Kafka, no Python): {pt:,.0f} records/s; "
               f"best e2e {best:,.0f} orders/s = ratio {best / pt:.3f}")
    figures["passthrough_records_per_s"] = pt
    return figures
