"""`tradesim bench soak`: a long mixed load on a running stack, to see what grows and what slows over time.

Orders, cancels and queries through the API at a fixed offered rate (open loop), ticks to one symbol that
1,000 WebSocket clients subscribe to (benchmarks/ws_soak.py, a process of its own), and every interval: p99 per
kind of request, tick → client p99, errors, and the RSS of every component's process tree (as the stack exporter
reads it, and its anonymous part: heaps, without mapped files). Growth is measured from the end of the warm-up to
the end (goal: at most 10 %).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from benchmarks.orders import _fresh_price, _setup, price_tick, users_for
from benchmarks.stats import percentile
from benchmarks.usage import component_usage, state_on_disk
from tradesim.domain.events import Tick
from tradesim.services.ingest.publisher import publish_all
from tradesim.settings import Settings
from tradesim.stack.errors import StackError

#: one in ten requests of each kind: market buys, resting limit buys, cancels of those, and three reads
MIX = ("buy", "buy", "buy", "limit", "limit", "cancel", "cancel", "portfolio", "orders", "search")
EXPECTED = {"buy": 202, "limit": 202, "cancel": 202, "portfolio": 200, "orders": 200, "search": 200}
GOAL_GROWTH = 0.10
#: rows whose peak stands for a moment's memory: heaps move in sawtooths (a JVM's collections, Prometheus cutting
#: its head into blocks), so one reading at each end measures where the tooth was, not growth
PEAK_ROWS = 3


def peaks(rows: list[dict[str, Any]], base: int, kind: str) -> dict[str, tuple[int, int]]:
    """Each component's `kind` memory (bytes): the peak of the PEAK_ROWS rows from `base` on, and the peak of the
    last PEAK_ROWS rows (fewer each when the run is short, so the two never share a row); only components whose
    process was the same in every row compared."""
    n = max(1, min(PEAK_ROWS, (len(rows) - base) // 2))
    first, last = rows[base:base + n], rows[max(base + n, len(rows) - n):]
    if not last:
        return {}  # nothing after the baseline: no growth to speak of
    out = {}
    for name in sorted(rows[base]["memory"]):
        pid = rows[base]["memory"][name]["pid"]
        window = [r["memory"].get(name) for r in (*first, *last)]
        if any(m is None or m["pid"] != pid for m in window):
            continue  # stopped or restarted meanwhile: a new process is no growth figure
        start, end = max(m[kind] for m in window[:len(first)]), max(m[kind] for m in window[len(first):])
        if start:
            out[name] = (start, end)
    return out


@dataclass
class Window:
    """What one interval saw."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, kind: str, status: int, seconds: float, failure: str = "") -> None:
        self.statuses[(kind, status)] += 1
        if failure:
            self.failures[(kind, failure)] += 1
        if status == EXPECTED[kind]:
            self.latencies.setdefault(kind, []).append(seconds * 1000)

    def errors(self) -> dict[str, int]:
        """Answers other than the expected one, by kind and status; no answer at all: by kind and exception."""
        return ({f"{k} {s}": n for (k, s), n in sorted(self.statuses.items()) if s not in (0, EXPECTED[k])}
                | {f"{k} {why}": n for (k, why), n in sorted(self.failures.items())})


class Load:
    """The API side: an open loop of requests in MIX order at `rate` a second."""

    def __init__(self, settings: Settings, keys: list[str], symbol: str) -> None:
        self.settings, self.keys, self.symbol = settings, keys, symbol
        self.window = Window()
        self.resting: deque[tuple[str, str]] = deque()  # (key, order id) of limit orders to cancel later
        self.lock = threading.Lock()

    async def one(self, client: httpx.AsyncClient, i: int, due: float) -> None:
        """One request; its latency counts from when it was due, so a late start is not hidden."""
        kind, key = MIX[i % len(MIX)], self.keys[i % len(self.keys)]
        auth = {"Authorization": f"Bearer {key}"}
        started = due
        try:
            if kind in ("buy", "limit"):
                body: dict[str, Any] = {"symbol": self.symbol, "side": "buy", "qty": 1}
                if kind == "limit":  # far below the price: it rests until cancelled
                    body |= {"type": "limit", "limit_price": "50.00", "time_in_force": "gtc"}
                answer = await client.post("/orders", json=body, headers=auth)
                if kind == "limit" and answer.status_code == 202:
                    self.resting.append((key, answer.json()["order_id"]))
            elif kind == "cancel":
                if not self.resting:
                    return
                owner, order_id = self.resting.popleft()
                answer = await client.delete(f"/orders/{order_id}", headers={"Authorization": f"Bearer {owner}"})
            elif kind == "portfolio":
                answer = await client.get("/portfolio", headers=auth)
            elif kind == "orders":
                answer = await client.get("/orders", params={"limit": 20}, headers=auth)
            else:
                answer = await client.get("/trades/search", params={"size": 20}, headers=auth)
            status = answer.status_code
        except Exception as exc:  # noqa: BLE001 - any failure is an error of this request, counted by its kind
            status, failure = 0, type(exc).__name__
        else:
            failure = ""
        with self.lock:
            self.window.add(kind, status, time.monotonic() - started, failure)

    def take(self) -> Window:
        with self.lock:
            window, self.window = self.window, Window()
        return window

    async def run(self, rate: float, seconds: float) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=self.settings.api.client_url, timeout=30, limits=limits) as client:
            start, tasks = time.monotonic(), set()
            for i in range(int(rate * seconds)):
                due = start + i / rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))  # the offered rate's schedule
                task = asyncio.create_task(self.one(client, i, due))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks)


def _ticks(symbol: str, rate: float, seconds: float) -> Iterator[Tick]:
    """Ticks at `rate` a second, each stamped with the wall time it is due (the clients' latency reference)."""
    start_ms, first = int(time.time() * 1000), int(time.time())
    for k in range(int(rate * seconds)):
        yield price_tick(symbol, first + k + 1).model_copy(update={"event_time_ms": start_ms + int(k * 1000 / rate)})


def _wall_pace(event_time_ms: int) -> None:
    time.sleep(max(0.0, event_time_ms / 1000 - time.time()))  # a feed's pace: each tick at its time


def _fleet(settings: Settings, symbol: str, clients: int, seconds: float, interval: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.ws_soak", settings.marketdata.client_ws_url, symbol,
                             str(clients), str(seconds), str(interval)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if json.loads(line or "{}").get("event") != "ready":
        raise StackError(f"the WebSocket clients did not connect: {line!r}")
    return proc


def _memory(settings: Settings) -> dict[str, dict[str, Any]]:
    """Per running component: pid, CPU seconds, RSS and anonymous RSS (bytes), as the JSON rows keep them."""
    return {name: asdict(u) for name, u in component_usage(settings).items()}


def _mb(n: int) -> str:
    return f"{n / 2**20:,.0f}"


def run(settings: Settings, minutes: float, rate: float, clients: int, tick_rate: float, interval_s: float,
        warmup_s: float, emit: Callable[[str], None]) -> dict[str, Any]:
    """Run the soak; `emit` gets each line as it is ready (a soak is long)."""
    seconds = minutes * 60
    orders = rate * seconds * 0.5  # buys and limits are half the mix
    keys, symbol = _setup(settings, users_for(settings, orders, 8))
    _fresh_price(settings, symbol, int(time.time()))
    fleet = _fleet(settings, symbol, clients, seconds, interval_s)
    load = Load(settings, keys, symbol)
    feed = threading.Thread(target=publish_all, args=(settings, _ticks(symbol, tick_rate, seconds + interval_s)),
                            kwargs={"pace": _wall_pace}, daemon=True)
    driver = threading.Thread(target=lambda: asyncio.run(load.run(rate, seconds)), daemon=True)
    feed.start()
    driver.start()
    rows: list[dict[str, Any]] = []
    baseline: dict[str, Any] | None = None  # the row at the end of the warm-up
    start = time.monotonic()
    assert fleet.stdout is not None
    emit(f"{len(keys)} accounts, {rate:g} requests/s ({'/'.join(MIX)}), {clients} WebSocket clients on "
         f"{symbol} at {tick_rate:g} ticks/s, {minutes:g} min, warm-up {warmup_s:g} s")
    try:
        for _ in range(int(seconds // interval_s)):
            line = fleet.stdout.readline()  # the fleet reports on the same interval
            if not line:
                raise StackError(f"the WebSocket client process ended (exit {fleet.poll()}): the run is void")
            ws = json.loads(line)
            at, window, memory = time.monotonic() - start, load.take(), _memory(settings)
            row = {"t_s": round(at), "requests": sum(window.statuses.values()),
                   "p99_ms": {kind: round(percentile(v, 99), 1) for kind, v in sorted(window.latencies.items())},
                   "errors": window.errors(), "ws": ws, "memory": memory, "disk": state_on_disk(settings)}
            rows.append(row)
            if baseline is None and at >= warmup_s:
                baseline = row
            p99 = row["p99_ms"]
            emit(f"t={at / 60:5.1f} min  {row['requests'] / interval_s:5.1f} req/s  p99 buy "
                 f"{p99.get('buy', float('nan')):.0f} ms, cancel {p99.get('cancel', float('nan')):.0f} ms, "
                 f"portfolio {p99.get('portfolio', float('nan')):.0f} ms, search "
                 f"{p99.get('search', float('nan')):.0f} ms; ws p99 {ws.get('p99_ms') or float('nan'):.0f} ms "
                 f"({ws.get('connected')} connected, {ws.get('lost')} lost, {ws.get('frames')} frames); errors "
                 f"{row['errors'] or 'none'}")
        driver.join(interval_s * 2)
    finally:
        fleet.kill()
        fleet.wait(timeout=30)
    base_at = baseline if baseline is not None else rows[0]
    end, base = rows[-1]["memory"], base_at["memory"]
    peak = {kind: peaks(rows, rows.index(base_at), kind) for kind in ("rss", "anon")}
    growth = {kind: {n: (e - s) / s for n, (s, e) in p.items()} for kind, p in peak.items()}
    for kind, label in (("rss", "RSS"), ("anon", "anonymous RSS (heaps, no mapped files)")):
        emit(f"{label}, peak of up to {PEAK_ROWS} rows after warm-up → of the last ones (MB): " + ", ".join(
            f"{n} {_mb(s)}→{_mb(e)} ({growth[kind][n]:+.1%})" for n, (s, e) in peak[kind].items()))
    disk = {n: (base_at["disk"][n], rows[-1]["disk"][n]) for n in base_at["disk"] if n in rows[-1]["disk"]}
    emit("on disk after warm-up → end (MB): " + ", ".join(f"{n} {_mb(a)}→{_mb(b)}" for n, (a, b) in disk.items()))
    restarted = sorted(n for n in base if n in end and end[n]["pid"] != base[n]["pid"])
    ws_lost = int(rows[-1]["ws"].get("lost") or 0)
    total_errors = sum(sum(r["errors"].values()) for r in rows) + ws_lost
    over = {n: g for n, g in growth["anon"].items() if g > GOAL_GROWTH}
    emit(f"errors {total_errors} ({ws_lost} WebSocket connections lost)"
         + (f"; restarted during the run: {', '.join(restarted)}" if restarted else "")
         + f"; anonymous RSS growth over {GOAL_GROWTH:.0%}: "
         + (", ".join(f"{n} {g:+.1%}" for n, g in over.items()) if over else "none"))
    return {"minutes": minutes, "rate": rate, "clients": clients, "tick_rate": tick_rate, "intervals": rows,
            "growth": growth, "disk": disk, "errors": total_errors, "restarted": restarted}
