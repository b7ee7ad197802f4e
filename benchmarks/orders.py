"""`tradesim bench orders`: open-loop load on POST /orders at fixed offered rates, then the same server's
saturation throughput on /orders and on /healthz (its own ceiling), reported as a ratio.

Open loop: request i is sent at t0 + i/rate whatever happened to earlier ones (a new connection is opened when
none is idle), and latency is measured from that scheduled time, so a stalled server cannot hide its backlog
(no coordinated omission). The client is a minimal keep-alive HTTP/1.1 client on asyncio, so the load generator
costs far less CPU than the server it measures (both share this machine).

Needs the stack running (`tradesim up`): Kafka, Redis, DynamoDB, the market-data service and the API.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import urlsplit

import httpx

from benchmarks.stats import percentile
from tradesim.adapters.redis.client import connect
from tradesim.adapters.redis.prices import PriceCache
from tradesim.domain.events import Tick
from tradesim.services.admin_key import load_admin_key
from tradesim.services.ingest.publisher import publish_all
from tradesim.settings import Settings
from tradesim.stack.errors import StackError
from tradesim.testing.factories import unique_symbol


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, (await self.reader.readexactly(length) if length else b"")


class _Pool:
    """Idle keep-alive connections; a request with none idle opens a new one (up to `limit`)."""

    def __init__(self, host: str, port: int, limit: int = 512) -> None:
        self.host, self.port, self.limit = host, port, limit
        self.idle: list[_Conn] = []
        self.opened = 0
        self._freed = asyncio.Condition()

    async def send(self, raw: bytes) -> int:
        return (await self.exchange(raw))[0]

    async def exchange(self, raw: bytes) -> tuple[int, bytes]:
        """(status, body); status 0 when the connection failed. Requests must be idempotent (they carry an
        Idempotency-Key): one that fails on a kept-alive connection the server has closed is sent once more."""
        reused = bool(self.idle)
        answer = await self._once(raw)
        # the server closes connections idle for its keep-alive timeout: retry on a new one, not another idle one
        return await self._once(raw, fresh=True) if answer[0] == 0 and reused else answer

    async def _once(self, raw: bytes, fresh: bool = False) -> tuple[int, bytes]:
        if not (fresh or self.idle or self.opened < self.limit):
            async with self._freed:  # at the limit: a connection comes back, or a failed one frees its place
                await self._freed.wait_for(lambda: bool(self.idle) or self.opened < self.limit)
        if self.idle and not fresh:
            conn = self.idle.pop()
        else:
            self.opened += 1
            try:
                conn = _Conn(*await asyncio.open_connection(self.host, self.port))
            except OSError:
                self.opened -= 1
                await self._free()
                return 0, b""
        try:
            answer = await conn.request(raw)
        except (OSError, asyncio.IncompleteReadError):
            self.opened -= 1
            conn.writer.close()
            await self._free()
            return 0, b""
        self.idle.append(conn)
        await self._free()
        return answer

    async def _free(self) -> None:
        async with self._freed:
            self._freed.notify()

    def close(self) -> None:
        for conn in self.idle:
            conn.writer.close()


@dataclass
class Run:
    label: str
    sent: int = 0
    accepted: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    def pct(self, p: float) -> float:
        return percentile(self.latencies_ms, p)

    @property
    def accepted_rate(self) -> float:
        return self.accepted / self.seconds if self.seconds else 0.0


def _order_request(host: str, keys: list[str], symbol: str, i: int) -> bytes:
    body = json.dumps({"symbol": symbol, "side": "buy", "qty": 1}).encode()
    return (f"POST /orders HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {keys[i % len(keys)]}\r\n"
            f"Idempotency-Key: {uuid.uuid4().hex}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def _health_request(host: str) -> bytes:
    return f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


async def open_loop(pool: _Pool, make: object, rate: float, seconds: float, label: str, ok: int) -> Run:
    """Send at `rate`/s for `seconds` on a fixed schedule; latency from each request's scheduled time."""
    run = Run(label)
    total = int(rate * seconds)
    tasks: list[asyncio.Task[None]] = []

    async def one(i: int, due: float) -> None:
        status = await pool.send(make(i))  # type: ignore[operator]
        run.latencies_ms.append((time.perf_counter() - due) * 1000)
        run.statuses[status] += 1
        if status == ok:
            run.accepted += 1

    start = time.perf_counter()
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i, due)))
        run.sent += 1
    await asyncio.gather(*tasks)
    run.seconds = max(seconds, time.perf_counter() - start)
    return run


async def closed_loop(pool: _Pool, make: object, concurrency: int, seconds: float, label: str, ok: int) -> Run:
    """`concurrency` workers each send back to back: the server's saturation throughput."""
    run = Run(label)
    stop = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        while time.perf_counter() < stop:
            sent = time.perf_counter()
            status = await pool.send(make(next(counter)))  # type: ignore[operator]
            run.latencies_ms.append((time.perf_counter() - sent) * 1000)
            run.statuses[status] += 1
            run.sent += 1
            if status == ok:
                run.accepted += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.seconds = time.perf_counter() - start
    return run


def users_for(settings: Settings, orders: float, minimum: int) -> int:
    """Enough bench accounts that none reaches the API's recent-orders limit (429 too_many_recent_orders)."""
    return max(minimum, math.ceil(orders / (0.8 * settings.trading.max_recent_orders)))


def _setup(settings: Settings, users: int) -> tuple[list[str], str]:
    admin = load_admin_key(settings, create=False)
    if not admin:
        raise StackError("no admin key: is the API running (`tradesim up`)?")
    keys = []
    with httpx.Client(base_url=settings.api.client_url, timeout=30) as client:
        for _ in range(users):
            answer = client.post("/accounts", headers={"Authorization": f"Bearer {admin}"},
                                 json={"name": "bench-" + secrets.token_hex(4), "cash": "1000000000000",
                                       "rate_limit_per_s": 1_000_000})
            answer.raise_for_status()
            keys.append(answer.json()["api_key"])
    return keys, unique_symbol("B")


def price_tick(symbol: str, seq: int) -> Tick:
    """A tick at 100.00 with this sequence number (the benches number ticks by the clock, which the test
    factory's seq-dependent price would turn into a price past the market's bounds)."""
    return Tick(symbol=symbol, bid=Decimal("99.99"), ask=Decimal("100.01"), last=Decimal("100.00"), size=100,
                event_time_ms=int(time.time() * 1000), seq=seq, scenario_id="bench")


def _fresh_price(settings: Settings, symbol: str, seq: int) -> None:
    """Publish a tick and wait until the market-data service cached it (prices go stale after a while)."""
    publish_all(settings, [price_tick(symbol, seq)])
    cache = PriceCache(connect(settings.redis))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = cache.latest(symbol)
        if got is not None and got[0].seq >= seq:
            return
        time.sleep(0.01)
    raise StackError("the price never reached Redis: is the market-data service running?")


def run(settings: Settings, rates: list[float], seconds: float, concurrency: int, users: int,
        lines: list[str]) -> dict[str, object]:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    # every phase's orders, plus the warm-up and a generous bound for the saturation phase
    keys, symbol = _setup(settings, users_for(settings, sum(rates) * seconds + 100 + 2000 * seconds, users))
    url = urlsplit(settings.api.client_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    results: dict[str, object] = {}

    def order(i: int) -> bytes:
        return _order_request(host, keys, symbol, i)

    health = _health_request(host)

    async def phase(coro_factory: object) -> Run:
        pool = _Pool(host, port)
        try:
            return await coro_factory(pool)  # type: ignore[operator, no-any-return]
        finally:
            pool.close()

    seq = 1
    _fresh_price(settings, symbol, seq)
    asyncio.run(phase(lambda p: open_loop(p, order, 100, 1.0, "warm-up", 202)))
    for rate in rates:
        seq += 1
        _fresh_price(settings, symbol, seq)
        r = asyncio.run(phase(lambda p, rate=rate: open_loop(p, order, rate, seconds, f"{rate:g}/s", 202)))
        others = {k: v for k, v in r.statuses.items() if k != 202}
        lines.append(f"offered {rate:>6,.0f} orders/s: accepted {r.accepted_rate:8,.1f}/s  p50 {r.pct(50):7.1f} ms  "
                     f"p99 {r.pct(99):7.1f} ms  max {max(r.latencies_ms):7.1f} ms"
                     + (f"  non-202 {dict(others)}" if others else ""))
        results[f"rate_{rate:g}"] = {"accepted_per_s": r.accepted_rate, "p50_ms": r.pct(50), "p99_ms": r.pct(99)}
    seq += 1
    _fresh_price(settings, symbol, seq)
    sat = asyncio.run(phase(lambda p: closed_loop(p, order, concurrency, seconds, "orders", 202)))
    hz = asyncio.run(phase(lambda p: closed_loop(p, lambda _i: health, concurrency, seconds, "healthz", 200)))
    ratio = sat.accepted_rate / hz.accepted_rate if hz.accepted_rate else float("nan")
    lines.append(f"saturation ({concurrency} connections, {seconds:g} s): POST /orders {sat.accepted_rate:,.0f} "
                 f"accepted/s (p50 {sat.pct(50):.1f} ms, p99 {sat.pct(99):.1f} ms); GET /healthz "
                 f"{hz.accepted_rate:,.0f}/s; orders/healthz = {ratio:.2f}")
    results.update({"saturation_orders_per_s": sat.accepted_rate, "healthz_per_s": hz.accepted_rate,
                    "ratio": ratio})
    return results
