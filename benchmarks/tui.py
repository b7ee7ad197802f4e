"""`tradesim bench tui`: the TUI under a live load — prices for its whole watchlist at a fixed rate plus a stream
of its own account's market orders (so the blotter and the portfolio change too).

The TUI runs in a process of its own (benchmarks/tui_probe.py), in a tmux pane of 120×36 with Textual's real
driver (or headless), so its CPU is that process's utime + stime from /proc over the measured phase. Refresh
latency is the app's own record (`paint_latencies_ms`: frame received → the repaint showing it done); start →
first price is from process start (before Python's imports) to the first price painted. Needs the stack with the
market-data service, the API and Flink (the execution job is submitted if it is not running).
"""

from __future__ import annotations

import asyncio
import json
import os
import pstats
import random
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from benchmarks.orders import _order_request, _Pool
from benchmarks.stats import percentile
from tradesim.adapters.redis.client import connect
from tradesim.adapters.redis.prices import PriceCache
from tradesim.client.api import save_credentials
from tradesim.domain.events import Tick
from tradesim.services.admin_key import load_admin_key
from tradesim.services.ingest.publisher import TickPublisher
from tradesim.settings import Settings
from tradesim.stack.errors import StackError
from tradesim.testing.factories import unique_symbol

SIZE = (120, 36)
READY_TIMEOUT_S = 60
CENT = Decimal("0.01")


@dataclass
class Load:
    """What the load generator did in the measured phase."""

    ticks: int = 0
    orders: int = 0
    statuses: Counter[str] = field(default_factory=Counter)


class Tmux:
    """The probe in a tmux server of its own (`-L`), one detached pane of a fixed size."""

    def __init__(self, work: Path) -> None:
        exe = shutil.which("tmux")
        if exe is None:
            raise StackError("tmux is not installed: install it (apt-get install tmux) or pass --headless")
        self.exe = exe
        self.socket = "tradesim-bench-" + secrets.token_hex(4)
        self.conf = work / "tmux.conf"
        self.conf.write_text("set -g status off\nset -g remain-on-exit on\n")

    def tmux(self, *args: str) -> str:
        return subprocess.run([self.exe, "-L", self.socket, "-f", str(self.conf), *args],  # noqa: S603 - fixed argv
                              capture_output=True, text=True, timeout=10, check=True).stdout

    def start(self, argv: list[str], env: dict[str, str], cwd: Path) -> int:
        # COLUMNS/LINES unset: the app asks the pty for its size (a library in this process exports 80×24)
        command = " ".join(["exec", "env", "-u", "COLUMNS", "-u", "LINES",
                            *(f"{k}={shlex.quote(v)}" for k, v in env.items()), *map(shlex.quote, argv)])
        self.tmux("new-session", "-d", "-s", "bench", "-x", str(SIZE[0]), "-y", str(SIZE[1]), "-c", str(cwd),
                  command)
        return int(self.tmux("display-message", "-p", "-t", "bench", "#{pane_pid}").strip())

    def screen(self) -> str:
        try:
            return self.tmux("capture-pane", "-p", "-t", "bench")
        except subprocess.SubprocessError:
            return ""

    def close(self, pid: int | None) -> None:
        """Stop the tmux server; the probe goes with it (SIGHUP), and is killed if it outlives that."""
        subprocess.run([self.exe, "-L", self.socket, "kill-server"], capture_output=True, timeout=10,  # noqa: S603
                       check=False)
        deadline = time.monotonic() + 5
        while pid is not None and _alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2:].split()  # after "pid (comm) ": field 3 (state) is fields[0]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runqueue_wait_s(pid: int) -> float:
    """Time the process's main thread (the app's event loop) was runnable but waiting for a core, from
    /proc/<pid>/schedstat: what other work on the machine costs it."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU time of the whole machine so far, in clock ticks over all cores, from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return float(sum(ticks) - idle), float(sum(ticks))


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _account(settings: Settings) -> tuple[str, str]:
    admin = load_admin_key(settings, create=False)
    if not admin:
        raise StackError("no admin key: is the API running (`tradesim up`)?")
    name = "bench-tui-" + secrets.token_hex(4)
    with httpx.Client(base_url=settings.api.client_url, timeout=30) as client:
        answer = client.post("/accounts", headers={"Authorization": f"Bearer {admin}"},
                             json={"name": name, "cash": "1000000000", "rate_limit_per_s": 1_000_000})
        answer.raise_for_status()
    return name, str(answer.json()["api_key"])


class Prices:
    """A random walk per symbol, one run id for the bench; seq counts per symbol."""

    def __init__(self, symbols: list[str], seed: int = 7) -> None:
        self.symbols = symbols
        self.rng = random.Random(seed)  # noqa: S311 - prices, not secrets
        self.last = {s: Decimal(self.rng.randint(2000, 30000)) / 100 for s in symbols}
        self.seq = dict.fromkeys(symbols, 0)
        self.run_id = int(time.time() * 1000)

    def next(self, i: int) -> Tick:
        s = self.symbols[i % len(self.symbols)]
        last = max(CENT, self.last[s] + self.rng.choice((-1, 0, 1)) * CENT * self.rng.randint(1, 5))
        self.last[s] = last
        self.seq[s] += 1
        return Tick(symbol=s, bid=last - CENT, ask=last + CENT, last=last, size=100,
                    event_time_ms=int(time.time() * 1000), seq=self.seq[s], scenario_id="bench-tui", run_id=self.run_id)


def _prime(settings: Settings, prices: Prices) -> None:
    """One price per symbol in the cache before the TUI starts (its first price is a snapshot of these)."""
    pub = TickPublisher(settings, paced=False)
    for i in range(len(prices.symbols)):
        pub.publish(prices.next(i))
    pub.close(30)
    cache = PriceCache(connect(settings.redis))
    deadline = time.monotonic() + 60  # a restarted service may wait out its old consumer's session first
    while any(cache.latest(s) is None for s in prices.symbols):
        if time.monotonic() > deadline:
            raise StackError("the bench prices never reached Redis: is the market-data service running?")
        time.sleep(0.05)


async def _load(settings: Settings, prices: Prices, key: str, rate: float, orders_rate: float, warmup_s: float,
                seconds: float, mark: Any, end: Any) -> Load:
    """Ticks at `rate`/s and orders at `orders_rate`/s on a fixed schedule (open loop) for warm-up + measured
    phase; `mark()` at the start of the measured phase, `end()` at its end."""
    pub = TickPublisher(settings, paced=True)  # a live market's ticks
    url = urlsplit(settings.api.client_url)
    pool = _Pool(url.hostname or "127.0.0.1", url.port or 80)
    load = Load()
    statuses = load.statuses
    total_s = warmup_s + seconds
    start = time.perf_counter()
    measured_from = start + warmup_s

    async def at(t: float) -> None:
        await asyncio.sleep(max(0.0, t - time.perf_counter()))

    async def ticks() -> None:
        for i in range(int(rate * total_s)):
            due = start + i / rate
            await at(due)
            pub.publish(prices.next(i))
            pub.poll(0)
            if due >= measured_from:
                load.ticks += 1

    async def one_order(i: int, measured: bool) -> None:
        status, body = await pool.exchange(_order_request(url.netloc, [key], prices.symbols[0], i))
        if measured:
            code = json.loads(body).get("code", "") if status not in (0, 202) and body else ""
            statuses[f"{status} {code}".strip()] += 1

    async def orders() -> None:
        sent = []
        for i in range(int(orders_rate * total_s)):
            due = start + i / orders_rate
            await at(due)
            measured = due >= measured_from
            load.orders += measured
            sent.append(asyncio.create_task(one_order(i, measured)))
        await asyncio.gather(*sent)

    async def phases() -> None:
        await at(measured_from)
        mark()
        await at(measured_from + seconds)
        end()

    try:
        await asyncio.gather(ticks(), orders(), phases())
    finally:
        pool.close()
        await asyncio.to_thread(pub.close, 30)
    return load


def run(settings: Settings, rate: float, symbols: int, orders_rate: float, seconds: float, warmup_s: float,
        headless: bool, profile: bool, out: list[str]) -> dict[str, Any]:
    from tradesim.stack.flink import Flink
    from tradesim.stack.jobs import submit_job

    job_id, submitted = submit_job(settings, "execution")
    work = Path(tempfile.mkdtemp(prefix="tradesim-bench-tui-"))
    name, key = _account(settings)
    prices = Prices([unique_symbol("B")[:7] for _ in range(symbols)])
    _prime(settings, prices)
    custom = settings.model_copy(update={
        "api": settings.api.model_copy(update={"credentials_file": work / "credentials.json"})})
    save_credentials(custom, {"active": name, "users": {name: {"user_id": name, "api_key": key}}})
    result_file = work / "probe.json"
    profile_file = work / "probe.prof" if profile else None
    argv = [sys.executable, "-m", "benchmarks.tui_probe", "--out", str(result_file)]
    argv += ["--headless"] if headless else []
    argv += ["--profile", str(profile_file)] if profile_file else []
    env = {"TRADESIM_API__CREDENTIALS_FILE": str(work / "credentials.json"),
           "TRADESIM_TUI__WATCHLIST": json.dumps(prices.symbols)}
    cwd = Path(__file__).resolve().parent.parent
    term: Tmux | None = None
    proc: subprocess.Popen[bytes] | None = None
    log = work / "probe.log"
    pid: int | None = None
    try:
        spawned = time.time()
        if headless:
            with open(log, "wb") as sink:
                proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env},  # noqa: S603 - our own argv
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=sink)
            pid = proc.pid
        else:
            term = Tmux(work)
            pid = term.start(argv, env, cwd)

        def trouble() -> str:
            return term.screen() if term is not None else log.read_text(errors="replace")[-3000:]

        ready = result_file.with_suffix(".ready")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready.exists():
            if time.monotonic() > deadline or not _alive(pid) or (proc is not None and proc.poll() is not None):
                raise StackError(f"the TUI painted no price within {READY_TIMEOUT_S} s:\n{trouble()}")
            time.sleep(0.02)
        first = json.loads(ready.read_text())

        cpu: dict[str, float] = {}

        def mark() -> None:
            os.kill(pid, signal.SIGUSR1)
            cpu["start"], cpu["start_wall"], cpu["start_wait"] = (cpu_seconds(pid), time.perf_counter(),
                                                                  runqueue_wait_s(pid))
            cpu["start_busy"], cpu["start_total"] = machine_busy()

        def end() -> None:
            cpu["end"], cpu["end_wall"], cpu["end_wait"] = cpu_seconds(pid), time.perf_counter(), runqueue_wait_s(pid)
            cpu["end_busy"], cpu["end_total"] = machine_busy()

        load = asyncio.run(_load(settings, prices, key, rate, orders_rate, warmup_s, seconds, mark, end))
        rss = peak_rss_mb(pid)
        os.kill(pid, signal.SIGUSR2)
        deadline = time.monotonic() + 30
        while not result_file.exists():
            if time.monotonic() > deadline:
                raise StackError(f"the probe wrote no measurements within 30 s:\n{trouble()}")
            time.sleep(0.05)
        probe = json.loads(result_file.read_text())
    finally:
        if term is not None:
            term.close(pid)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        if submitted:
            Flink(settings).rest().cancel(job_id)
        (work / "credentials.json").unlink(missing_ok=True)  # the bench account's key
        if profile_file is None:
            shutil.rmtree(work, ignore_errors=True)

    lat = probe["paint_latencies_ms"]
    phase_s = cpu["end_wall"] - cpu["start_wall"]
    cpu_pct = (cpu["end"] - cpu["start"]) / phase_s * 100
    start_s = first["first_price_wall"] - spawned
    p50, p99 = percentile(lat, 50), percentile(lat, 99)
    refused = ", ".join(f"{n} × {s}" for s, n in sorted(load.statuses.items()) if s != "202") or "none"
    accepted = load.statuses["202"]
    mode = "headless (App.run_test)" if headless else f"real terminal (tmux {SIZE[0]}×{SIZE[1]})"
    out.append(f"TUI: {mode}, {symbols} symbols on its watchlist, measured {seconds:g} s after {warmup_s:g} s of "
               "warm-up")
    out.append(f"load: {load.ticks:,} ticks ({load.ticks / seconds:,.0f}/s), {load.orders:,} market orders "
               f"({load.orders / seconds:,.1f}/s, {accepted:,} accepted; refused: {refused})")
    out.append(f"TUI received: {probe['quotes']:,} price frames ({probe['quotes'] / seconds:,.0f}/s), "
               f"{probe['outcomes']:,} outcomes, {probe['frames']:,} frames in all")
    if probe["quotes"] < 0.95 * load.ticks:
        out.append("  (fewer prices reached the TUI than were published: the service conflated them for a slow "
                   "client, or it was restarted during the run — then the figures below are not comparable)")
    out.append(f"refresh latency (received → painted), {len(lat):,} samples: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
               f"max {max(lat, default=float('nan')):.1f} ms (goal p99 ≤ 50 ms {_mark(p99 <= 50)})")
    out.append(f"TUI CPU over the measured phase: {cpu_pct:.1f} % of one core (goal ≤ 30 % {_mark(cpu_pct <= 30)}); "
               f"peak RSS {rss:.0f} MB")
    wait_ms_per_s = (cpu["end_wait"] - cpu["start_wait"]) / phase_s * 1000
    pauses = probe["gc_pauses_ms"]
    worst = max((p for _, p in pauses), default=0.0)
    cores = os.cpu_count() or 1
    busy_pct = (cpu["end_busy"] - cpu["start_busy"]) / max(1.0, cpu["end_total"] - cpu["start_total"]) * 100
    out.append(f"where the time went: the machine's {cores} cores were {busy_pct:.0f} % busy (the TUI, the stack "
               f"serving this load, the load generator, anything else); the app's thread waited {wait_ms_per_s:.0f} "
               f"ms/s for a core; {len(pauses)} GC pauses, {sum(p for _, p in pauses):.0f} ms in all, longest "
               f"{worst:.0f} ms ({sum(1 for g, _ in pauses if g == 2)} of generation 2)")
    out.append(f"start → first price painted: {start_s:.2f} s from process start "
               f"(goal ≤ 2 s {_mark(start_s <= 2)}); {first['app_first_price_s']:.2f} s of it after the app was "
               "built (app.first_price_at), the rest Python start and imports")
    if profile_file is not None and profile_file.exists():
        out.append(f"cProfile of the measured phase (the app's thread), top by cumulative time ({profile_file}):")
        out.extend(_top(profile_file, 15))
    return {"p50_ms": p50, "p99_ms": p99, "cpu_pct": cpu_pct, "first_price_s": start_s,
            "app_first_price_s": first["app_first_price_s"], "samples": len(lat), "quotes": probe["quotes"],
            "outcomes": probe["outcomes"], "ticks": load.ticks, "orders": load.orders}


def _mark(ok: bool) -> str:
    return "✔" if ok else "✘"


def _top(path: Path, count: int) -> list[str]:
    """The heaviest functions by cumulative time, without the event loop's own frames (they contain everything)."""
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    skip = ("asyncio", "selectors.py", "_callback.py", "threading.py", "contextvars", "epoll")
    rows = [(k, v) for k, v in stats.items() if not any(s in f"{k[0]}{k[2]}" for s in skip)]
    rows.sort(key=lambda kv: kv[1][3], reverse=True)
    lines = []
    for (file, line, func), (_, calls, own, cum, _) in rows[:count]:
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}({func})" if line else func
        lines.append(f"  {cum:6.2f} s cum, {own:6.2f} s own, {calls:>8,} calls  {where}")
    return lines
