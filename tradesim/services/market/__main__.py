"""`python -m tradesim.services.market [--scenario S] [--speed N] [--loop|--no-loop] [--run-file F]`: the live
market feed; omitted options come from settings.market. Stops cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import math
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType

from prometheus_client import start_http_server

from tradesim import logs
from tradesim.scenarios.errors import ScenarioError
from tradesim.scenarios.generators import check_live
from tradesim.scenarios.loader import find_scenario, load_scenario
from tradesim.services.market.feed import (
    LiveFeed,
    RunFile,
    RunRecord,
    cached_ticks,
    continued_prices,
    known_clocks,
    next_run_id,
    read_run,
    start_time,
)
from tradesim.settings import MAX_LIVE_SPEED, load_settings


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tradesim.services.market", description=__doc__)
    parser.add_argument("--scenario", help="scenario name (in scenarios_dir) or YAML path")
    parser.add_argument("--speed", type=float, help="simulated seconds per real second")
    parser.add_argument("--loop", action=argparse.BooleanOptionalAction, default=None,
                        help="start over at the end, continuing from the last prices")
    parser.add_argument("--run-file", type=Path, help="where to record the run (run id, event-time start)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    log = logs.setup("market")
    settings = load_settings()
    m = settings.market
    name = args.scenario or m.scenario
    speed = m.speed if args.speed is None else args.speed
    loop = m.loop if args.loop is None else args.loop
    if not (math.isfinite(speed) and 0 < speed <= MAX_LIVE_SPEED):
        log.error(f"speed must be a positive number, at most {MAX_LIVE_SPEED:g}", extra={"speed": speed})
        raise SystemExit(2)
    try:
        scenario = load_scenario(find_scenario(name, settings.scenarios_dir))
        check_live(scenario)
    except ScenarioError as exc:
        log.error("cannot run the scenario", extra={"scenario": name, "problem": str(exc)})
        raise SystemExit(2) from None

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    now_ms = int(time.time() * 1000)
    previous = read_run(args.run_file) if args.run_file else None
    run_id = next_run_id(previous.run_id if previous else None, now_ms)
    symbols = [s.symbol for s in scenario.symbols]
    cached = cached_ticks(settings, symbols)
    if cached is None:
        log.warning("Redis does not answer: no cached prices or market time to go on from; starting at the "
                    "scenario's prices and at the later of the wall clock and the run file's market time")
    clocks = known_clocks(cached or {}, previous)
    start_ms, continued_ms = start_time(now_ms, scenario.tick_interval_ms, symbols, clocks)
    initial = continued_prices(scenario, cached or {})
    record = RunRecord(run_id=run_id, scenario=name, scenario_id=scenario.id, speed=speed, loop=loop,
                       start_ms=start_ms, started_at_ms=now_ms, pid=os.getpid(), clocks=clocks,
                       continued_ms=continued_ms, cache_answered=cached is not None)
    run_file = RunFile(args.run_file, record) if args.run_file else None
    start_http_server(m.metrics_port, addr=m.host)  # healthy from here on, with the run file in place
    log.info("market started", extra={
        "scenario": name, "scenario_id": scenario.id, "speed": speed, "loop": loop, "run_id": run_id,
        "start_ms": start_ms, "continued_from_market_time_ms": record.continued_ms, "symbols": symbols,
        "continued_from_cache": {k: str(v) for k, v in initial.items()}})
    feed = LiveFeed(settings, scenario, speed=speed, loop=loop, run_id=run_id, start_ms=start_ms,
                    initial_prices=initial, run_file=run_file)
    stats = feed.run(stop)
    log.info("stopped", extra={"ticks_sent": stats.sent, "ticks_delivered": stats.delivered,
                               "ticks_failed": stats.failed})


if __name__ == "__main__":
    main()
