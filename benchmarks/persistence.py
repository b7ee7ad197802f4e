"""`tradesim bench persistence`: how fast outcomes reach the read models.

1. Throughput: N outcomes on a scratch topic; a bare Kafka consume of them, then the service's two sink loops
   (same code as `tradesim.services.persistence`, into scratch sinks) from the start — in the same run, so the
   ratio holds on any box.
2. Latency at a steady rate: outcomes published to the live `trade_executed` (unique bench users) at `rate`/s,
   with their decision time = publish time; a poller records when each becomes searchable (OpenSearch) and
   queryable (ClickHouse). Needs `tradesim up` (the live persistence service does the work).
"""

from __future__ import annotations

import threading
import time
import uuid
from decimal import Decimal

from benchmarks.stats import percentile, rate
from tradesim.adapters.clickhouse.trades import TradeStore
from tradesim.adapters.kafka.client import TopicSpec, admin, consumer, ensure_topics
from tradesim.adapters.kafka.client import producer as make_producer
from tradesim.adapters.search.trades import TradeIndex
from tradesim.domain.events import encode
from tradesim.domain.trades import TradeQuery
from tradesim.services.persistence.pipeline import SinkWorker
from tradesim.settings import Settings
from tradesim.testing.factories import outcomes


def _publish(settings: Settings, topic: str, events: list) -> float:  # type: ignore[type-arg]
    producer = make_producer(settings.kafka, **{"linger.ms": 20, "batch.num.messages": 10000})
    start = time.monotonic()
    for e in events:
        while True:
            try:
                producer.produce(topic, key=e.key, value=encode(e))
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)
    return time.monotonic() - start


def _bare(settings: Settings, topic: str, n: int) -> float:
    """Events/s of a bare consume of the `n` events on `topic`: those after the first fetch over the time from it to
    the last one (the first fetch's came before its clock reading; the consumer's close, leaving its group, is no
    consuming); NaN (`benchmarks.stats.rate`) when the fetches span too little to time."""
    c = consumer(settings.kafka, "bench-bare-" + uuid.uuid4().hex[:6])
    c.subscribe([topic])
    got = after_first = 0
    first = last = 0.0
    while got < n:
        batch = c.consume(1000, 1.0)
        now = time.monotonic()
        count = sum(1 for m in batch if m.error() is None)
        if count:
            if first:
                after_first += count
            else:
                first = now
            last = now
        got += count
    c.close()
    return rate(after_first, first, last)


def throughput(settings: Settings, n: int, out: list[str], only: str | None = None) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    topic = f"bench_executed_{tag}"
    scratch = settings.model_copy(update={
        "topics": settings.topics.model_copy(update={"trade_executed": topic}),
        "opensearch": settings.opensearch.model_copy(update={"trades_index": f"bench-{tag}"}),
        "clickhouse": settings.clickhouse.model_copy(update={"database": f"bench_{tag}"}),
        "persistence": settings.persistence.model_copy(update={"group_prefix": f"bench-{tag}"}),
    })
    ensure_topics(settings.kafka, [TopicSpec(topic, settings.kafka.partitions, {})])
    index, store = TradeIndex.from_settings(scratch.opensearch), TradeStore.from_settings(scratch.clickhouse)
    index.ensure()
    store.create_schema()
    figures: dict[str, float] = {}
    try:
        events = outcomes([f"bench-{tag}-{i}" for i in range(100)], [f"B{i}" for i in range(20)], n, seed=19)
        produced = _publish(settings, topic, events)
        bare = _bare(settings, topic, n)  # events/s
        stop = threading.Event()
        sinks = {name: sink for name, sink in (("search", index), ("analytics", store)) if only in (None, name)}
        workers = [SinkWorker.wired(scratch, sink, stop) for sink in sinks.values()]
        done: dict[str, float] = {}
        start = time.monotonic()
        threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
        for t in threads:
            t.start()
        deadline = start + 600
        while len(done) < len(sinks) and time.monotonic() < deadline:
            for w in workers:
                if w.sink.name not in done and w.persisted >= n:
                    done[w.sink.name] = time.monotonic() - start
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join(30)
        out.append(f"outcomes: {n} on {settings.kafka.partitions} partitions (produced at {n / produced:,.0f}/s)")
        out.append(f"bare Kafka consume: {bare:,.0f} events/s")
        figures["bare_consume_per_s"] = bare
        for name, secs in sorted(done.items()):
            out.append(f"{name:<9} sink: {n / secs:,.0f} events/s  ratio to bare {n / secs / bare:.3f}")
            figures[f"{name}_sink_per_s"] = n / secs
        if len(done) == 2 == len(sinks):
            both = max(done.values())
            out.append(f"both sinks, concurrently: {n / both:,.0f} events/s  ratio to bare {n / both / bare:.3f}")
            figures["both_sinks_per_s"] = n / both
        else:
            out.append(f"not finished within 600 s: {sorted(set(sinks) - set(done))}")
    finally:
        index.drop()
        store.drop()
        store.client.get().command(f"DROP DATABASE IF EXISTS {store.client.database}")
        admin(settings.kafka).delete_topics([topic])
    return figures


def latency(settings: Settings, rate: float, seconds: float, out: list[str]) -> dict[str, float]:
    tag = uuid.uuid4().hex[:8]
    user = f"bench-lat-{tag}"
    index, store = TradeIndex.from_settings(settings.opensearch), TradeStore.from_settings(settings.clickhouse)
    events = outcomes([user], ["BLAT"], int(rate * seconds), seed=20)
    published: dict[str, float] = {}
    seen: dict[str, dict[str, float]] = {"search": {}, "analytics": {}}
    stop = threading.Event()

    decided: dict[str, int] = {}

    def poll_search() -> None:
        # from the oldest outcome not seen yet, every page: a partition's batch can land after 500 newer outcomes
        while not stop.is_set():
            unseen = [decided[o] for o in list(published) if o not in seen["search"]]
            cursor, first = None, min(unseen, default=None)
            while first is not None:
                page = index.search(TradeQuery(user_id=user, from_ms=first, sort="decided_asc", size=500,
                                               cursor=cursor))
                now = time.monotonic()
                for r in page.records:
                    seen["search"].setdefault(r.order_id, now)
                if (cursor := page.next_cursor) is None:
                    break
            stop.wait(0.05)

    def poll_analytics() -> None:
        while not stop.is_set():
            rows = store.client.get().query(
                f"SELECT DISTINCT order_id FROM {store.qualified} WHERE user_id = %(u)s", parameters={"u": user})  # noqa: S608 - names only
            ids = [r[0] for r in rows.result_rows]
            now = time.monotonic()
            for order_id in ids:
                seen["analytics"].setdefault(order_id, now)
            stop.wait(0.05)

    pollers = [threading.Thread(target=f, daemon=True) for f in (poll_search, poll_analytics)]
    for t in pollers:
        t.start()
    producer = make_producer(settings.kafka)
    start = time.monotonic()
    for i, event in enumerate(events):
        at = start + i / rate
        while (wait := at - time.monotonic()) > 0:
            time.sleep(min(wait, 0.01))
        now_ms = int(time.time() * 1000)
        event = event.model_copy(update={"decided_at_ms": now_ms, "placed_at_ms": now_ms - 1,
                                         "fill_price": event.fill_price and Decimal(event.fill_price)})
        producer.produce(settings.topics.trade_executed, key=event.key, value=encode(event))
        decided[event.order_id] = now_ms
        published[event.order_id] = time.monotonic()
        producer.poll(0)
    producer.flush(30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(len(s) < len(published) for s in seen.values()):
        time.sleep(0.1)
    stop.set()
    out.append(f"steady {rate:.0f} outcomes/s for {seconds:.0f} s ({len(published)} outcomes), poll every 50 ms")
    figures: dict[str, float] = {}
    for name, when in seen.items():
        lat = [(when[o] - t) * 1000 for o, t in published.items() if o in when]
        out.append(f"event → {'searchable' if name == 'search' else 'queryable in ClickHouse'}: "
                   f"p50 {percentile(lat, 50):.0f} ms  p99 {percentile(lat, 99):.0f} ms  "
                   f"({len(lat)}/{len(published)} seen)")
        figures |= {f"{name}_visible_p50_ms": percentile(lat, 50), f"{name}_visible_p99_ms": percentile(lat, 99),
                    f"{name}_unseen": float(len(published) - len(lat))}
    return figures
