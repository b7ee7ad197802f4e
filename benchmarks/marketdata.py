"""`tradesim bench marketdata`: (a) ingest → Redis ticks/s; (b) WebSocket fan-out to many clients vs a bare
`websockets` broadcast of the same frames to the same number of clients (the library's own limit).

Needs the stack running (`tradesim up`): Kafka, Redis and the market-data service.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer

from benchmarks.stats import percentile
from tradesim.adapters.kafka.client import consumer, group_lag
from tradesim.adapters.redis.client import connect
from tradesim.adapters.redis.prices import PriceCache, channel
from tradesim.services.ingest.publisher import publish_all
from tradesim.settings import Settings
from tradesim.stack.errors import StackError
from tradesim.stack.jobs import running_names, source_groups
from tradesim.testing.factories import tick, unique_symbol
from tradesim.testing.net import free_port


def _wait(cond: Callable[[], bool], timeout_s: float, every_s: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(every_s)
    return False


def _seq(cache: PriceCache, symbol: str) -> int:
    got = cache.latest(symbol)
    return got[0].seq if got else 0


def ingest(settings: Settings, n: int, symbols: int) -> dict[str, float]:
    cache = PriceCache(connect(settings.redis))
    names = [unique_symbol("B") for _ in range(symbols)]
    per = n // symbols
    stream = [tick(s, seq) for seq in range(1, per + 1) for s in names]
    start = time.monotonic()
    stats = publish_all(settings, stream)
    produced = time.monotonic()
    ok = _wait(lambda: all(_seq(cache, s) == per for s in names), timeout_s=300)
    done = time.monotonic()
    if not ok:
        raise StackError("the cache never caught up; is the market-data service running?")
    return {"ticks": float(len(stream)), "produce_rate": stats.delivered / (produced - start),
            "ingest_to_redis_rate": len(stream) / (done - start), "seconds": done - start}


#: ticks a job reading `market_data` may be behind and still count as caught up (a live market keeps it a few
#: ticks short of the end between checkpoints)
CAUGHT_UP = 200


def feed_caught_up(settings: Settings, timeout_s: float = 180) -> bool:
    """Wait until every running job reading `market_data` (the bars job, the execution job's prices) has committed
    to within CAUGHT_UP of its end. Its offsets move on each checkpoint, so this waits up to one interval more than
    the work itself. A job that is not running does not hold it up (its group's offsets stay where it stopped), nor
    does a group that never committed or a broker that did not answer in 2 s; when Flink does not answer, every
    job's group is waited for."""
    topic = settings.topics.market_data
    probes = [consumer(settings.kafka, group_id=group)
              for group, t in source_groups(settings, jobs=running_names(settings)) if t == topic]

    def behind(probe: Consumer) -> bool:
        lag = group_lag(probe, topic, committed_only=True)
        return lag is not None and lag > CAUGHT_UP

    try:
        return _wait(lambda: not any(behind(p) for p in probes), timeout_s, every_s=1.0)
    finally:
        for p in probes:
            p.close()


class Fleet:
    """The clients, split over `procs` processes of one event loop each: a process near a whole core (one reading
    20,000 frames/s is) queues frames behind each other and measures its own backlog as much as the server's."""

    def __init__(self, url: str, symbol: str, n: int, last_seq: int, mode: str, procs: int) -> None:
        sizes = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
        self.procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.ws_clients", url, symbol, str(size),
                                        str(last_seq), mode], stdout=subprocess.PIPE, text=True)
                      for size in sizes if size]
        try:
            for proc in self.procs:
                assert proc.stdout is not None
                line = proc.stdout.readline()
                said = json.loads(line or "{}")
                if said.get("event") != "ready":
                    raise StackError(f"clients did not get ready: {said.get('message', line)!r}")
        except BaseException:
            self.kill()
            raise

    def result(self) -> dict[str, Any]:
        """The processes' results as one: counts summed, percentiles over all their samples."""
        parts = []
        for proc in self.procs:
            assert proc.stdout is not None
            parts.append(json.loads(proc.stdout.readline()))
            proc.wait(timeout=60)
        samples = [x for r in parts for x in r["latencies"]]
        return {"frames": sum(r["frames"] for r in parts), "clients_done": sum(r["clients_done"] for r in parts),
                "seconds": max(r["seconds"] for r in parts), "samples": len(samples),
                "p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99), "latencies": samples}

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()


def _paced(rate: float) -> Callable[[int], None]:
    interval = 1 / rate
    state = {"next": time.monotonic()}

    def pace(_: int) -> None:
        state["next"] += interval
        time.sleep(max(0.0, state["next"] - time.monotonic()))

    return pace


def _stamped(symbol: str, first: int, last: int, pace: Callable[[int], None] | None) -> Any:
    """Ticks stamped with the wall time at which they are handed to the producer (after pacing)."""
    for seq in range(first, last + 1):
        if pace is not None:
            pace(seq)
        yield tick(symbol, seq, event_time_ms=int(time.time() * 1000))


class HopProbe:
    """The first hop alone: tick handed to the producer → its update on Redis pub/sub (Kafka, the consume loop,
    the Lua write), received by a subscriber of our own, so the WebSocket fan-out's share is the rest."""

    def __init__(self, settings: Settings, symbol: str) -> None:
        self._redis = connect(settings.redis)
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(channel(symbol))
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                msg = self._pubsub.get_message(timeout=0.1)
                if msg is not None and msg["type"] == "message":
                    now = time.time() * 1000
                    self.latencies.append(now - json.loads(msg["data"])["event_time_ms"])
        finally:
            self._pubsub.close()  # here, not in close(): a PubSub is not safe to share between threads
            self._redis.close()

    def close(self) -> list[float]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.latencies


def _tradesim_phase(settings: Settings, cache: PriceCache, clients: int, procs: int, count: int,
                    rate: float | None) -> dict[str, Any]:
    """`count` updates of a fresh symbol through the whole path to `clients` subscribers; paced at `rate` per
    second (with the first hop probed, under "hop") or, without one, as fast as the producer goes."""
    s = unique_symbol("F")
    publish_all(settings, [tick(s, 1)])
    if not _wait(lambda: _seq(cache, s) == 1, 30):
        raise StackError("the first tick never reached the price cache; is the market-data service running?")
    probe = HopProbe(settings, s) if rate else None
    hops: list[float] | None = None
    try:
        fleet = Fleet(settings.marketdata.client_ws_url, s, clients, count + 1, "tradesim", procs)
        try:
            # the pacer starts its schedule now, when the clients are ready (not when the loop was set up)
            publish_all(settings, _stamped(s, 2, count + 1, _paced(rate) if rate else None), paced=bool(rate))
            result = fleet.result()
        finally:
            fleet.kill()
    finally:
        if probe is not None:
            hops = probe.close()
    if hops is not None:
        result["hop"] = hops
    return result


class BareServer:
    """The bare broadcast in its own process; each phase broadcasts to a fresh fleet of clients."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bare_broadcast", "127.0.0.1",
                                      str(self.port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()

    def phase(self, clients: int, procs: int, count: int, rate: float | None) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        s = unique_symbol("F")
        fleet = Fleet(f"ws://127.0.0.1:{self.port}/", s, clients, count, "bare", procs)
        try:
            self.proc.stdin.write(f"{s} {count} {rate or 0.0}\n")
            self.proc.stdin.flush()
            result = fleet.result()
        finally:
            fleet.kill()
        self.proc.stdout.readline()
        return result

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def _pooled(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The paced rounds of one side as one phase: percentiles over all their samples."""
    samples = [x for r in rounds for x in r.pop("latencies")]
    return {"frames": sum(r["frames"] for r in rounds), "clients_done": min(r["clients_done"] for r in rounds),
            "seconds": sum(r["seconds"] for r in rounds), "samples": len(samples),
            "p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99),
            "rounds_p99_ms": [r["p99_ms"] for r in rounds]}


def fanout(settings: Settings, clients: int, burst: int, rate: float, seconds: float, rounds: int,
           procs: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The burst once each, then the paced phase in `rounds` rounds of seconds/rounds on each side, taking turns
    at going first: whatever else the box does meanwhile (a JVM collecting, a checkpoint) falls on both alike."""
    bare_server = BareServer()
    redis = connect(settings.redis)
    cache = PriceCache(redis)
    try:
        ts: dict[str, Any] = {"max": _tradesim_phase(settings, cache, clients, procs, burst, None)}
        bare: dict[str, Any] = {"max": bare_server.phase(clients, procs, burst, None)}
        for side in (ts, bare):
            side["max"].pop("latencies")
        count = max(1, int(rate * seconds / rounds))
        paced_ts, paced_bare = [], []
        for i in range(rounds):  # tradesim first in even rounds, bare first in odd ones
            for side in ("tradesim", "bare") if i % 2 == 0 else ("bare", "tradesim"):
                if side == "tradesim":
                    paced_ts.append(_tradesim_phase(settings, cache, clients, procs, count, rate))
                else:
                    paced_bare.append(bare_server.phase(clients, procs, count, rate))
    finally:
        bare_server.close()
        redis.close()
    hops = [x for r in paced_ts for x in r.pop("hop", [])]
    ts["hop"] = {"samples": len(hops), "p50_ms": percentile(hops, 50) if hops else None,
                 "p99_ms": percentile(hops, 99) if hops else None}
    ts["paced"], bare["paced"] = _pooled(paced_ts), _pooled(paced_bare)
    return ts, bare


def run(settings: Settings, n: int, symbols: int, clients: int, burst: int, rate: float, seconds: float,
        out: list[str], rounds: int, procs: int) -> dict[str, Any]:
    # The fan-out first, on a feed the bars job has caught up with: an ingest's flood of ticks keeps that job busy
    # for a minute after it ends, and the fan-out would then measure the job's CPU rather than the broadcast.
    if not feed_caught_up(settings):
        out.append("warning: the bars job was still behind on market_data after 180 s; the fan-out shares its CPU")
    ts, bare = fanout(settings, clients, burst, rate, seconds, rounds, procs)
    a = ingest(settings, n, symbols)
    feed_caught_up(settings)  # and leave the bars job idle for whatever runs next (`bench all`)
    out.append(f"(a) ingest → Redis: {a['ticks']:,.0f} ticks over {symbols} symbols in {a['seconds']:.1f} s: "
               f"{a['ingest_to_redis_rate']:,.0f} ticks/s end to end (produce alone {a['produce_rate']:,.0f}/s)")
    t_rate = ts["max"]["frames"] / ts["max"]["seconds"]
    b_rate = bare["max"]["frames"] / bare["max"]["seconds"]
    out.append(f"(b) fan-out, {clients} clients, burst of {burst} updates as fast as possible: tradesim "
               f"{t_rate:,.0f} updates/s delivered vs bare websockets broadcast {b_rate:,.0f}/s: "
               f"ratio {t_rate / b_rate:.2f}")
    for name, r in (("tradesim", ts["paced"]), ("bare", bare["paced"])):
        out.append(f"    {name:8} at {rate:.0f} updates/s × {clients} clients ({seconds:.0f} s in {rounds} rounds): "
                   f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms tick→client "
                   f"({r['frames']:,} frames, at least {r['clients_done']} clients complete per round; p99 by round "
                   f"{', '.join('-' if x is None else f'{x:.0f}' for x in r['rounds_p99_ms'])} ms)")
    hop = ts["hop"]
    if hop["samples"]:
        # The probe wakes as the service starts the same update's fan-out, so its tail includes waiting for a core.
        out.append(f"    of which producer → Redis pub/sub alone: p50 {hop['p50_ms']:.1f} ms, "
                   f"p99 {hop['p99_ms']:.1f} ms ({hop['samples']} updates; the p99 includes the probe's own "
                   "wait for a core beside the fan-out)")
    p99_ratio = ts["paced"]["p99_ms"] / bare["paced"]["p99_ms"]
    out.append(f"    p99 tradesim ÷ bare: {p99_ratio:.2f} (target ≤ 1.2)")
    return {"ingest": a, "tradesim": ts, "bare": bare, "ratio": t_rate / b_rate, "p99_ratio": p99_ratio}
