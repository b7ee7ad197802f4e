"""`tradesim bench dynamodb`: what the store spends per request of the order path — the API's conditional claim of a
new order in `Orders` (a PutItem that also writes the `by_user` index), then a read of each order — with the
store's own CPU per request from /proc, so a change to the server can be judged apart from its clients."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from benchmarks.stats import percentile
from benchmarks.usage import component_usage, cpu_spent
from tradesim.adapters.dynamodb.client import DynamoDB
from tradesim.adapters.dynamodb.orders import OrderStore
from tradesim.domain.events import OrderPlaced
from tradesim.ports import Unavailable
from tradesim.settings import Settings
from tradesim.stack.errors import StackError, UserError

#: requests before the measured phases, so the server's JIT has compiled its hot paths
WARMUP = 3000


def _order(user_id: str) -> OrderPlaced:
    return OrderPlaced(order_id="o_" + uuid.uuid4().hex, user_id=user_id, symbol="BENCH", side="buy", qty=1,
                       order_type="market", placed_at_ms=int(time.time() * 1000))


def _phase(settings: Settings, name: str, calls: list[Callable[[], Any]], threads: int,
           out: list[str]) -> dict[str, float]:
    """Runs the calls from `threads` threads; the rate, each call's latency and the server's CPU per call. A call
    that raises ends the phase with that error (after every thread stopped), so no figure counts calls not made."""
    latencies: list[float] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    parts = [calls[i::threads] for i in range(threads)]

    def work(part: list[Callable[[], Any]]) -> None:
        mine = []
        try:
            for call in part:
                start = time.perf_counter()
                call()
                mine.append(time.perf_counter() - start)
        except Exception as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            with lock:
                failures.append(exc)
        with lock:
            latencies.extend(mine)

    before, started = component_usage(settings), time.monotonic()
    workers = [threading.Thread(target=work, args=(part,)) for part in parts]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - started
    if failures:
        raise failures[0]
    spent = cpu_spent(before, component_usage(settings)).get("dynamodb")
    if spent is None:
        raise UserError("the dynamodb component restarted or stopped during the run; run again")
    figures = {"per_s": len(calls) / elapsed, "p50_ms": percentile(latencies, 50) * 1000,
               "p99_ms": percentile(latencies, 99) * 1000, "server_cpu_ms": spent * 1000 / len(calls)}
    out.append(f"{name}: {len(calls)} at {figures['per_s']:,.0f}/s from {threads} threads; p50 "
               f"{figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms; server CPU {figures['server_cpu_ms']:.3f} "
               "ms per request")
    return figures


def run(settings: Settings, requests: int, threads: int, out: list[str]) -> dict[str, dict[str, float]]:
    """Server CPU per request includes whatever else the server did meanwhile (health probes, other clients): run
    it on a stack at rest for the figure of the requests alone."""
    if "dynamodb" not in component_usage(settings):
        raise UserError("the dynamodb component is not running here: `tradesim up --only dynamodb`")
    db = DynamoDB(settings.dynamodb)
    try:
        return _run(settings, db, requests, threads, out)
    except Unavailable as exc:
        raise StackError(f"DynamoDB did not answer: {exc}") from None
    finally:
        db.close()


def _run(settings: Settings, db: DynamoDB, requests: int, threads: int, out: list[str]) -> dict[str, dict[str, float]]:
    store = OrderStore(db)
    user_id = "u_bench_" + uuid.uuid4().hex[:8]
    warmup = [_order(user_id) for _ in range(WARMUP)]
    orders = [_order(user_id) for _ in range(requests)]
    try:
        for order in warmup:
            store.claim(order)
        return _measured(settings, store, orders, threads, out)
    finally:  # the claims are open orders of nobody in the stack's `Orders` (listed, and read by every backup)
        with contextlib.suppress(Unavailable):  # a server that stopped answering: the run's own error says so
            for order in (*warmup, *orders):
                store.release(order)


def _measured(settings: Settings, store: OrderStore, orders: list[OrderPlaced], threads: int,
              out: list[str]) -> dict[str, dict[str, float]]:
    def claim(order: OrderPlaced) -> Callable[[], None]:
        def call() -> None:
            if store.claim(order) is not None:
                raise AssertionError(f"order {order.order_id} was claimed before")
        return call

    def read(order: OrderPlaced) -> Callable[[], None]:
        def call() -> None:
            if store.get(order.order_id) is None:
                raise AssertionError(f"order {order.order_id} not found after its claim")
        return call

    return {"claim": _phase(settings, "conditional claim (PutItem)", [claim(o) for o in orders], threads, out),
            "get": _phase(settings, "read of the order (GetItem)", [read(o) for o in orders], threads, out)}
