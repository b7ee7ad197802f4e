"""`tradesim bench queries`: the read API over a million outcomes, 20 concurrent clients.

Loads `trades` outcomes (over `users` accounts and 50 symbols, spread over the last 24 h) through the real path —
`trade_executed`, then the persistence service into both read models — and reports the ingest rate; then runs
each query class closed-loop from `clients` concurrent clients for `seconds` and reports p50/p99. Accounts are
created through the API (their portfolios make `/portfolio` answer). The loaded outcomes stay in the log and in
the read models (they are what a rebuild would reload). Needs `tradesim up`.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx

from benchmarks.orders import _Pool
from benchmarks.persistence import _publish
from benchmarks.stats import percentile
from tradesim.adapters.clickhouse.trades import TradeStore
from tradesim.adapters.search.trades import TradeIndex
from tradesim.services.admin_key import load_admin_key
from tradesim.settings import Settings
from tradesim.stack import registry
from tradesim.stack.errors import StackError
from tradesim.stack.supervisor import Supervisor
from tradesim.testing.factories import outcomes

DAY_MS = 86_400_000
SYMBOLS = [f"Q{i:02d}" for i in range(50)]


def _accounts(settings: Settings, n: int) -> dict[str, str]:
    admin = load_admin_key(settings, create=False)
    if not admin:
        raise StackError("no admin key: is the API running (`tradesim up`)?")
    tag = secrets.token_hex(3)
    keys = {}
    with httpx.Client(base_url=settings.api.client_url, timeout=30) as client:
        for i in range(n):
            answer = client.post("/accounts", headers={"Authorization": f"Bearer {admin}"},
                                 json={"name": f"bq-{tag}-{i}", "cash": "1000000", "rate_limit_per_s": 1_000_000})
            answer.raise_for_status()
            keys[f"bq-{tag}-{i}"] = answer.json()["api_key"]
    keys["<admin>"] = admin
    return keys


def _rss_mb(pid: int | None) -> tuple[float, float]:
    """(current, peak) resident set of a process, MB."""
    if pid is None:
        return float("nan"), float("nan")
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _topic_bytes(settings: Settings) -> int:
    data = settings.home / "stack" / "kafka" / "data"
    return sum(f.stat().st_size for d in data.glob(f"{settings.topics.trade_executed}-*") for f in d.iterdir())


def load(settings: Settings, n: int, users: int, out: list[str]) -> dict[str, str]:
    keys = _accounts(settings, users)
    names = [k for k in keys if k != "<admin>"]
    index, store = TradeIndex.from_settings(settings.opensearch), TradeStore.from_settings(settings.clickhouse)
    base = (index.count(), store.count_final())
    disk_before = _topic_bytes(settings)
    start_ms = int(time.time() * 1000) - DAY_MS
    step, chunk, seed = DAY_MS / n, 50_000, int(time.time())
    began = time.monotonic()
    for first in range(0, n, chunk):  # in chunks: a million event objects at once would take gigabytes
        events = outcomes(names, SYMBOLS, min(chunk, n - first), seed=seed + first)
        events = [e.model_copy(update={"decided_at_ms": start_ms + int((first + i) * step),
                                       "placed_at_ms": start_ms + int((first + i) * step) - 1})
                  for i, e in enumerate(events)]
        _publish(settings, settings.topics.trade_executed, events)
    produced = time.monotonic() - began
    out.append(f"loaded {n:,} outcomes ({users} users, {len(SYMBOLS)} symbols, last 24 h) into trade_executed "
               f"at {n / produced:,.0f}/s")
    done: dict[str, float] = {}
    while len(done) < 2 and time.monotonic() - began < 1800:
        if "search" not in done and index.count() >= base[0] + n:
            done["search"] = time.monotonic() - began
        if "analytics" not in done and store.count_final() >= base[1] + n:
            done["analytics"] = time.monotonic() - began
        time.sleep(1)
    for name, secs in sorted(done.items()):
        out.append(f"  persisted into {name}: {n / secs:,.0f} outcomes/s sustained (publish start → all in)")
    disk = _topic_bytes(settings) - disk_before
    out.append(f"  trade_executed on disk: {disk / 1e6:,.0f} MB for {n:,} = {disk / n * 1e6 / 1e9:.2f} GB per million")
    sup = Supervisor(settings, registry.build(settings, ["opensearch", "clickhouse"]))
    for status in sup.status():
        now, peak = _rss_mb(status.pid)
        out.append(f"  {status.name} RSS after the load: {now:,.0f} MB (peak {peak:,.0f} MB)")
    return keys


async def _closed_loop(settings: Settings, clients: int, seconds: float,
                       request: Callable[[random.Random], tuple[str, str]]) -> tuple[list[float], int, float]:
    """(latencies in ms, non-200 answers, seconds from the first request to the last answer: requests sent
    before the deadline are answered after it, a whole slow query's time later)."""
    url = urlsplit(settings.api.client_url)
    pool = _Pool(url.hostname or "127.0.0.1", url.port or 80, limit=clients)
    latencies: list[float] = []
    failures = [0]
    start = time.monotonic()
    deadline = start + seconds

    async def client(seed: int) -> None:
        rng = random.Random(seed)  # noqa: S311 - load pattern, not crypto
        while time.monotonic() < deadline:
            key, path = request(rng)
            raw = (f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {key}\r\n\r\n").encode()
            began = time.monotonic()
            status, _ = await pool.exchange(raw)
            latencies.append((time.monotonic() - began) * 1000)
            if status != 200:
                failures[0] += 1

    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies, failures[0], time.monotonic() - start


def run(settings: Settings, keys: dict[str, str], clients: int, seconds: float,
        out: list[str]) -> dict[str, dict[str, float]]:
    users = [k for k in keys if k != "<admin>"]
    admin = keys["<admin>"]
    now = int(time.time() * 1000)
    day = {"from": now - DAY_MS, "to": now}

    def user(rng: random.Random) -> tuple[str, str]:
        name = rng.choice(users)
        return keys[name], name

    def search(rng: random.Random) -> tuple[str, str]:
        key, _ = user(rng)
        return key, "/trades/search?" + urlencode({"size": 50, **({"symbol": rng.choice(SYMBOLS)}
                                                                   if rng.random() < 0.5 else {})})

    def volume_user(rng: random.Random) -> tuple[str, str]:
        key, _ = user(rng)
        return key, "/analytics/volume?" + urlencode({"interval": "1m", **day})

    def volume_symbol(rng: random.Random) -> tuple[str, str]:
        return admin, "/analytics/volume?" + urlencode({"interval": "1m", "symbol": rng.choice(SYMBOLS), **day})

    def volume_market(rng: random.Random) -> tuple[str, str]:
        return admin, "/analytics/volume?" + urlencode({"interval": "1m", **day})

    def portfolio(rng: random.Random) -> tuple[str, str]:
        key, _ = user(rng)
        return key, "/portfolio"

    cases = [("/trades/search (own, 50, half by symbol)", search, clients),
             ("/analytics/volume own, 1 day of 1m", volume_user, clients),
             ("/analytics/volume one symbol (admin), 1 day of 1m", volume_symbol, clients),
             ("/analytics/volume market-wide (admin), 1 day of 1m", volume_market, clients),
             ("/portfolio", portfolio, clients)]
    figures: dict[str, dict[str, float]] = {}
    for label, request, n in cases:
        latencies, failed, elapsed = asyncio.run(_closed_loop(settings, n, seconds, request))
        out.append(f"{label}: {len(latencies) / elapsed:,.0f} req/s, p50 {percentile(latencies, 50):.1f} ms, "
                   f"p99 {percentile(latencies, 99):.1f} ms, {failed} non-200 ({n} clients, {seconds:g} s)")
        figures[label] = {"per_s": len(latencies) / elapsed, "p50_ms": percentile(latencies, 50),
                          "p99_ms": percentile(latencies, 99), "non_200": float(failed)}
    return figures
