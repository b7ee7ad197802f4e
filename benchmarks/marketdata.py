"""`tradesim bench marketdata`: (a) ingest → Redis ticks/s; (b) WebSocket fan-out to many clients vs a bare
`websockets` broadcast of the same frames to the same number of clients (the library's own limit).

Needs the stack running (`tradesim up`): Kafka, Redis and the market-data service.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from tradesim.adapters.redis.client import connect
from tradesim.adapters.redis.prices import PriceCache
from tradesim.services.ingest.publisher import publish_all
from tradesim.settings import Settings
from tradesim.testing.factories import tick, unique_symbol


def _wait(cond: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
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
        raise RuntimeError("the cache never caught up; is the market-data service running?")
    return {"ticks": float(len(stream)), "produce_rate": stats.delivered / (produced - start),
            "ingest_to_redis_rate": len(stream) / (done - start), "seconds": done - start}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clients(url: str, symbol: str, n: int, last_seq: int, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.ws_clients", url, symbol, str(n), str(last_seq), mode],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if json.loads(line or "{}").get("event") != "ready":
        raise RuntimeError(f"clients did not connect: {line!r}")
    return proc


def _result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    out = proc.stdout.readline()
    proc.wait(timeout=60)
    return dict(json.loads(out))


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


def fanout_tradesim(settings: Settings, clients: int, burst: int, rate: float, seconds: float) -> dict[str, Any]:
    cache = PriceCache(connect(settings.redis))
    url = settings.marketdata.client_ws_url
    results: dict[str, Any] = {}
    for label, count, paced in (("max", burst, False), ("paced", int(rate * seconds), True)):
        s = unique_symbol("F")
        publish_all(settings, [tick(s, 1)])
        _wait(lambda s=s: _seq(cache, s) == 1, 30)
        proc = _clients(url, s, clients, count + 1, "tradesim")
        # the pacer starts its schedule now, when the clients are ready (not when the loop was set up)
        publish_all(settings, _stamped(s, 2, count + 1, _paced(rate) if paced else None))
        results[label] = _result(proc)
    return results


def fanout_bare(settings: Settings, clients: int, burst: int, rate: float, seconds: float) -> dict[str, Any]:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.bare_broadcast", "127.0.0.1", str(port)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert server.stdin is not None
    assert server.stdout is not None
    server.stdout.readline()
    results: dict[str, Any] = {}
    try:
        for label, count, r in (("max", burst, 0.0), ("paced", int(rate * seconds), rate)):
            s = unique_symbol("F")
            proc = _clients(f"ws://127.0.0.1:{port}/", s, clients, count, "bare")
            server.stdin.write(f"{s} {count} {r}\n")
            server.stdin.flush()
            results[label] = _result(proc)
            server.stdout.readline()
    finally:
        server.terminate()
        server.wait(timeout=10)
    return results


def run(settings: Settings, n: int, symbols: int, clients: int, burst: int, rate: float, seconds: float,
        out: list[str]) -> dict[str, Any]:
    a = ingest(settings, n, symbols)
    out.append(f"(a) ingest → Redis: {a['ticks']:,.0f} ticks over {symbols} symbols in {a['seconds']:.1f} s: "
               f"{a['ingest_to_redis_rate']:,.0f} ticks/s end to end (produce alone {a['produce_rate']:,.0f}/s)")
    ts = fanout_tradesim(settings, clients, burst, rate, seconds)
    bare = fanout_bare(settings, clients, burst, rate, seconds)
    t_rate = ts["max"]["frames"] / ts["max"]["seconds"]
    b_rate = bare["max"]["frames"] / bare["max"]["seconds"]
    out.append(f"(b) fan-out, {clients} clients, burst of {burst} updates as fast as possible: tradesim "
               f"{t_rate:,.0f} updates/s delivered vs bare websockets broadcast {b_rate:,.0f}/s: "
               f"ratio {t_rate / b_rate:.2f}")
    for name, r in (("tradesim", ts["paced"]), ("bare", bare["paced"])):
        out.append(f"    {name:8} at {rate:.0f} updates/s × {clients} clients ({seconds:.0f} s): "
                   f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms tick→client "
                   f"({r['frames']:,} frames, {r['clients_done']} clients complete)")
    return {"ingest": a, "tradesim": ts, "bare": bare, "ratio": t_rate / b_rate}
