"""`tradesim bench ...`: benchmarks that print figures (they live in benchmarks/, imported lazily)."""

from __future__ import annotations

import math
from typing import Annotated

import typer

from tradesim.cli.errors import check_output, cli_errors, err
from tradesim.cli.readout import console
from tradesim.cli.stack import only_names
from tradesim.settings import load_settings
from tradesim.stack.errors import UserError

app = typer.Typer(help="Benchmarks; each prints its figures and the command that produced them.",
                  no_args_is_help=True)
out = console()
#: the highest offered rate a bench takes (orders/s): far past what one box saturates at
MAX_RATE = 100_000


def offered_rates(rates: str, seconds: float) -> list[float]:
    """`--rates`: positive finite numbers separated by commas, each sending at least one order in a phase of
    `seconds` (a phase of none has no figures); raises UserError."""
    try:
        offered = [float(r) for r in rates.split(",") if r.strip()]
    except ValueError:
        raise UserError(f"--rates must be numbers separated by commas, got {rates!r}") from None
    if not offered or not all(math.isfinite(r) and 0 < r <= MAX_RATE for r in offered):
        raise UserError(f"--rates must be numbers from 0 to {MAX_RATE:,} (0 excluded), got {rates!r}")
    if (low := min(offered)) * seconds < 1:
        raise UserError(f"--rates {low:g} sends no order in a phase of --seconds {seconds:g}: give at least "
                        f"{1 / seconds:g} orders/s, or more seconds")
    return offered


@app.command("up")
def up(only: Annotated[str | None, typer.Option("--only", help="Time only these components (comma-separated, "
                                                          "as `up --only`).")] = None,
       cold: Annotated[bool, typer.Option("--cold/--warm", help="Cold also empties the caches.")] = True) -> None:
    """Time `up` cold (empty caches) and warm, and report each server's peak RSS. Needs the stack's ports free."""
    _up(only, cold)


@cli_errors
def _up(only: str | None, cold: bool) -> None:
    from benchmarks import stack_up
    from tradesim.stack import registry

    settings = load_settings()
    names = only_names(only)
    registry.build(settings, names)  # validates names before anything starts
    lines: list[str] = []
    stack_up.run(settings, names, cold, lines)
    out.print(f"command: tradesim bench up{' --only ' + only if only else ''}{'' if cold else ' --warm'}")
    for line in lines:
        out.print("  " + line)


@app.command("marketdata")
def marketdata(ticks: Annotated[int, typer.Option(min=1000)] = 200_000,
               symbols: Annotated[int, typer.Option(min=1)] = 50,
               clients: Annotated[int, typer.Option(min=1)] = 1000,
               burst: Annotated[int, typer.Option(min=10)] = 2000,
               rate: Annotated[float, typer.Option(min=1, max=10_000)] = 20.0,
               seconds: Annotated[float, typer.Option(min=1, max=3600, help="Length of the paced phase: longer puts "
                                                      "more updates behind its p99.")] = 60.0,
               rounds: Annotated[int, typer.Option(min=1, help="The paced phase alternates tradesim and bare this "
                                                   "many times, so both share the box's moments.")] = 4,
               client_procs: Annotated[int, typer.Option(min=1, help="Processes the clients are split over.")] = 2,
               ) -> None:
    """Ingest → Redis ticks/s, and WebSocket fan-out vs a bare websockets broadcast (needs `tradesim up`)."""
    _marketdata(ticks, symbols, clients, burst, rate, seconds, rounds, client_procs)


@cli_errors
def _marketdata(ticks: int, symbols: int, clients: int, burst: int, rate: float, seconds: float,
                rounds: int, procs: int) -> None:
    from benchmarks import marketdata as bench_md

    if symbols > ticks:  # each symbol gets ticks // symbols: none, and the ingest measured nothing at 0 ticks/s
        raise UserError(f"--symbols {symbols} is more than --ticks {ticks}: each symbol needs a tick at least")
    settings = load_settings()
    lines: list[str] = []
    bench_md.run(settings, ticks, symbols, clients, burst, rate, seconds, lines, rounds, procs)
    out.print(f"command: tradesim bench marketdata --ticks {ticks} --symbols {symbols} --clients {clients} "
              f"--burst {burst} --rate {rate:g} --seconds {seconds:g} --rounds {rounds} --client-procs {procs}")
    for line in lines:
        out.print("  " + line)


@app.command("bars")
def bars(mode: Annotated[str, typer.Option(
             "--mode", help="jvm (the job the stack runs), thread or process (its Python twin), python (both "
             "Python modes) or all.")] = "all",
         ticks: Annotated[int, typer.Option("--ticks", min=1000, help="Backlog size for throughput.")] = 60_000,
         rate: Annotated[int, typer.Option("--rate", min=1, help="Live ticks/s for the latency phase.")] = 1_000,
         ) -> None:
    """Flink `bars` job: ticks/s and p99 tick→bar latency per implementation, vs a pass-through job."""
    _bars(mode, ticks, rate)


@cli_errors
def _bars(mode: str, ticks: int, rate: int) -> None:
    from benchmarks import flink_bars

    # "both" is the name "python" had when the job had no JVM twin (RESULTS cites it)
    modes = {"all": list(flink_bars.MODES), "python": ["thread", "process"], "both": ["thread", "process"]
             }.get(mode, [mode])
    if not set(modes) <= set(flink_bars.MODES):
        raise UserError(f"unknown mode {mode!r}; use jvm, thread, process, python or all")
    lines: list[str] = []
    flink_bars.run(load_settings(), modes, ticks, rate, lines)
    out.print(f"command: tradesim bench bars --mode {mode} --ticks {ticks} --rate {rate}")
    for line in lines:
        out.print("  " + line)


@app.command("orders")
def orders(rates: Annotated[str, typer.Option("--rates", help="Comma-separated offered rates (orders/s).")]
           = "100,250,500,1000",
           seconds: Annotated[float, typer.Option("--seconds", min=1, max=3600, help="Length of each phase.")] = 5.0,
           concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=512, help="Connections at "
                                                    "saturation (the load generator opens 512 at most).")] = 32,
           users: Annotated[int, typer.Option("--users", min=1, help="Bench accounts the orders rotate over.")] = 8,
           ) -> None:
    """Open-loop POST /orders at fixed rates (p50/p99), then saturation vs the same server's /healthz."""
    _orders(rates, seconds, concurrency, users)


@cli_errors
def _orders(rates: str, seconds: float, concurrency: int, users: int) -> None:
    from benchmarks import orders as bench_orders

    offered = offered_rates(rates, seconds)
    settings = load_settings()
    lines: list[str] = []
    bench_orders.run(settings, offered, seconds, concurrency, users, lines)
    out.print(f"command: tradesim bench orders --rates {rates} --seconds {seconds:g} --concurrency {concurrency} "
              f"--users {users}")
    for line in lines:
        out.print("  " + line)


@app.command("e2e")
def e2e(rates: Annotated[str, typer.Option(help="Comma-separated offered orders/s.")] = "50,150,300",
        seconds: Annotated[float, typer.Option(min=1, max=3600)] = 20.0,
        passthrough: Annotated[int, typer.Option(min=1000)] = 50_000,
        parallelism: Annotated[int | None, typer.Option(min=1, help="Of the execution job, if the bench submits "
                                                        "it (default: flink.parallelism).")] = None,
        users: Annotated[int | None, typer.Option(min=1, max=10_000, help="Bench accounts to spread orders over "
                                                  "(default and minimum: the fewest the API's recent-orders limit "
                                                  "allows, at least 8).")] = None) -> None:
    """POST /orders → execution job → trade_executed at fixed offered rates, vs Flink pass-through."""
    _e2e(rates, seconds, passthrough, parallelism, users)


@cli_errors
def _e2e(rates: str, seconds: float, passthrough: int, parallelism: int | None, users: int | None) -> None:
    from benchmarks import e2e as bench_e2e

    offered = offered_rates(rates, seconds)
    settings = load_settings()
    lines: list[str] = []
    bench_e2e.run(settings, offered, seconds, passthrough, lines, parallelism, users)
    out.print(f"command: tradesim bench e2e --rates {rates} --seconds {seconds:g} --passthrough {passthrough}"
              + (f" --parallelism {parallelism}" if parallelism else "") + (f" --users {users}" if users else ""))
    for line in lines:
        out.print("  " + line)


@app.command("dynamodb")
def dynamodb(requests: Annotated[int, typer.Option(min=100, max=1_000_000, help="Orders claimed, then read.")]
             = 6000,
             threads: Annotated[int, typer.Option(min=1, max=64, help="Client threads.")] = 2) -> None:
    """The store alone: conditional claims of new orders, then reads of them (rate, p50/p99, server CPU per
    request)."""
    _dynamodb(requests, threads)


@cli_errors
def _dynamodb(requests: int, threads: int) -> None:
    from benchmarks import dynamodb as bench_dynamodb

    lines: list[str] = []
    bench_dynamodb.run(load_settings(), requests, threads, lines)
    out.print(f"command: tradesim bench dynamodb --requests {requests} --threads {threads}")
    for line in lines:
        out.print("  " + line)


@app.command("persistence")
def persistence(events: Annotated[int, typer.Option(min=1000, help="Outcomes for the throughput part.")] = 100_000,
                rate: Annotated[float, typer.Option(min=1, max=100_000, help="Outcomes/s for the latency part.")] = 300,
                seconds: Annotated[float, typer.Option(min=1, max=3600, help="Length of the latency part.")] = 30
                ) -> None:
    """trade_executed → OpenSearch + ClickHouse: events/s vs a bare consume; event → visible p50/p99 at a rate."""
    _persistence(events, rate, seconds)


@cli_errors
def _persistence(events: int, rate: float, seconds: float) -> None:
    from benchmarks import persistence as bench_persistence

    settings = load_settings()
    lines: list[str] = []
    bench_persistence.throughput(settings, events, lines)
    bench_persistence.latency(settings, rate, seconds, lines)
    out.print(f"command: tradesim bench persistence --events {events} --rate {rate:g} --seconds {seconds:g}")
    for line in lines:
        out.print("  " + line)


@app.command("queries")
def queries(trades: Annotated[int, typer.Option(min=0, help="Outcomes to load first (0: load none).")] = 1_000_000,
            users: Annotated[int, typer.Option(min=1, help="Accounts the outcomes belong to.")] = 1000,
            clients: Annotated[int, typer.Option(min=1)] = 20,
            seconds: Annotated[float, typer.Option(min=1, max=3600, help="Per query class.")] = 20) -> None:
    """Load outcomes through trade_executed, then /trades/search, /analytics/volume, /portfolio p50/p99."""
    _queries(trades, users, clients, seconds)


@cli_errors
def _queries(trades: int, users: int, clients: int, seconds: float) -> None:
    from benchmarks import queries as bench_queries

    settings = load_settings()
    lines: list[str] = []
    keys = bench_queries.load(settings, trades, users, lines) if trades else bench_queries._accounts(settings, users)
    bench_queries.run(settings, keys, clients, seconds, lines)
    out.print(f"command: tradesim bench queries --trades {trades} --users {users} --clients {clients} "
              f"--seconds {seconds:g}")
    for line in lines:
        out.print("  " + line)


@app.command("tui")
def tui(rate: Annotated[float, typer.Option(min=1, max=2000, help="Price updates/s over the watchlist.")] = 200,
        symbols: Annotated[int, typer.Option(min=1, max=100, help="Watchlist symbols the prices go to.")] = 20,
        orders: Annotated[float, typer.Option(min=0, max=100, help="The TUI account's market orders/s.")] = 20,
        seconds: Annotated[float, typer.Option(min=5, max=300, help="Length of the measured phase.")] = 30,
        warmup: Annotated[float, typer.Option(min=0, max=60, help="Load before measuring.")] = 5,
        headless: Annotated[bool, typer.Option("--headless/--terminal", help="Headless app instead of a real "
                                               "terminal (tmux).")] = False,
        profile: Annotated[bool, typer.Option(help="cProfile the TUI over the measured phase.")] = False) -> None:
    """The TUI under load: refresh latency p50/p99, its CPU, start → first price (needs the stack and tmux)."""
    _tui(rate, symbols, orders, seconds, warmup, headless, profile)


@cli_errors
def _tui(rate: float, symbols: int, orders: float, seconds: float, warmup: float, headless: bool,
         profile: bool) -> None:
    from benchmarks import tui as bench_tui

    if rate * seconds > 90_000:
        raise UserError("--rate × --seconds must stay within 90,000 updates (what the app keeps of its latencies)")
    lines: list[str] = []
    bench_tui.run(load_settings(), rate, symbols, orders, seconds, warmup, headless, profile, lines)
    out.print(f"command: tradesim bench tui --rate {rate:g} --symbols {symbols} --orders {orders:g} "
              f"--seconds {seconds:g} --warmup {warmup:g}" + (" --headless" if headless else "")
              + (" --profile" if profile else ""))
    for line in lines:
        out.print("  " + line)


@app.command("all")
def all_(quick: Annotated[bool, typer.Option("--quick", help="Smaller runs: ~10 minutes on 2 cores.")] = False,
         ) -> None:
    """Every benchmark in sequence on a fresh stack, with a machine-speed probe; writes
    benchmarks/results/<date>-<time>-<commit>[-quick].json and regenerates the tables at the end of RESULTS.md.
    Needs the stack down (it starts its own on the configured ports)."""
    _all(quick)


@cli_errors
def _all(quick: bool) -> None:
    from benchmarks import all as bench_all
    from tradesim.stack import registry
    from tradesim.stack.errors import StackError
    from tradesim.stack.supervisor import Supervisor

    settings = load_settings()
    bench_all.check_results()  # before the run, not after its ten minutes or more
    running = [s.name for s in Supervisor(settings, registry.build(settings)).status() if s.state == "running"]
    if running:
        raise UserError(f"bench all starts a fresh stack on the same ports: `tradesim down` first (running: "
                        f"{', '.join(running)})")
    out.print(f"command: tradesim bench all{' --quick' if quick else ''}")
    doc = bench_all.run(settings, bench_all.Plan(quick), lambda line: out.print(line))
    out.print(f"wrote {bench_all.write(doc)}")
    bench_all.update_results(bench_all.load_all(warn=lambda line: err.print(f"warning: {line}")))
    out.print(f"wrote the tables at the end of {bench_all.RESULTS_MD}")
    if doc["errors"]:
        raise StackError(f"{len(doc['errors'])} benchmark(s) failed: {', '.join(sorted(doc['errors']))}")


@app.command("soak")
def soak(minutes: Annotated[float, typer.Option(min=1, max=24 * 60, help="Length of the run.")] = 30,
         rate: Annotated[float, typer.Option(min=1, max=500, help="API requests/s: orders, cancels, reads.")] = 30,
         clients: Annotated[int, typer.Option(min=1, max=5000, help="WebSocket clients on the tick stream.")] = 1000,
         tick_rate: Annotated[float, typer.Option(min=1, max=200, help="Ticks/s the clients receive.")] = 10,
         interval: Annotated[float, typer.Option(min=10, max=600, help="Seconds per reported row.")] = 60,
         warmup: Annotated[float, typer.Option(min=0, max=3600, help="Seconds before the RSS baseline: the JVMs', "
                                               "V8's and Prometheus's heaps fill for ~8-10 minutes.")] = 600,
         json_out: Annotated[str | None, typer.Option("--json", help="Also write every row to this file.")] = None
         ) -> None:
    """A long mixed load: p99s and errors per interval, RSS of every component from warm-up to end (goal ≤ 10 %)."""
    _soak(minutes, rate, clients, tick_rate, interval, warmup, json_out)


@cli_errors
def _soak(minutes: float, rate: float, clients: int, tick_rate: float, interval: float, warmup: float,
          json_out: str | None) -> None:
    import json
    from pathlib import Path

    from benchmarks import soak as bench_soak

    check_output(None if json_out is None else Path(json_out), "--json")
    if warmup >= minutes * 60 - interval:
        raise UserError("--warmup must end at least one --interval before the run does")
    out.print(f"command: tradesim bench soak --minutes {minutes:g} --rate {rate:g} --clients {clients} "
              f"--tick-rate {tick_rate:g} --interval {interval:g} --warmup {warmup:g}")
    result = bench_soak.run(load_settings(), minutes, rate, clients, tick_rate, interval, warmup,
                            lambda line: out.print("  " + line))
    if json_out:
        Path(json_out).write_text(json.dumps(result, indent=1) + "\n")
