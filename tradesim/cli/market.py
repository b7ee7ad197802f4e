"""Market-data commands: `tradesim replay` (scenario → Kafka) and `tradesim prices` (live table over WebSocket)."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from tradesim.cli.errors import cli_errors
from tradesim.settings import load_settings
from tradesim.stack.errors import StackError, UserError

out = Console(highlight=False, soft_wrap=True)


def replay(
    scenario: Annotated[str, typer.Argument(help="Scenario name (see `tradesim scenarios list`) or YAML path.")],
    speed: Annotated[float | None, typer.Option("--speed", help="Simulated seconds per real second; "
                                                "omit to publish as fast as possible.")] = None,
    symbols: Annotated[str | None, typer.Option("--symbols", help="Comma-separated subset of symbols.")] = None,
) -> None:
    """Publish a scenario's ticks to Kafka `market_data` (keyed by symbol) on its simulated clock."""
    _replay(scenario, speed, symbols)


@cli_errors
def _replay(scenario: str, speed: float | None, symbols: str | None) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from tradesim.adapters.kafka.errors import KafkaDeliveryError
    from tradesim.scenarios.generators import generate
    from tradesim.scenarios.loader import find_scenario, load_scenario
    from tradesim.scenarios.runner import SimClock
    from tradesim.services.ingest.publisher import PublishStats, publish_all

    if speed is not None and speed <= 0:
        raise UserError(f"--speed must be positive, got {speed}")
    settings = load_settings()
    sc = load_scenario(find_scenario(scenario, settings.scenarios_dir))  # ScenarioError → exit 2 (cli_errors)
    wanted = [s.strip().upper() for s in symbols.split(",") if s.strip()] if symbols else None
    ticks = generate(sc, wanted)  # raises ScenarioError for a symbol the scenario does not have
    clock = SimClock(speed=speed)
    start_ms = int(sc.start.timestamp() * 1000)
    total_ms = int(sc.duration_s * 1000)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), console=out, transient=False) as progress:
        task = progress.add_task(f"replay {sc.id}", total=max(total_ms, 1), info="")

        def show(stats: PublishStats) -> None:
            sim_s = (stats.last_event_time_ms - start_ms) / 1000 if stats.last_event_time_ms else 0
            progress.update(task, completed=max(0, stats.last_event_time_ms - start_ms),
                            info=f"sim t+{sim_s:,.1f}s · {stats.sent:,} ticks · {stats.rate:,.0f}/s")

        try:
            stats = publish_all(settings, ticks, pace=clock.wait_until if speed else None,
                                progress=show)
        except KafkaDeliveryError as exc:
            raise StackError(f"replay {sc.id}: {exc}") from None
        progress.update(task, completed=max(total_ms, 1))
    out.print(f"published {stats.delivered:,} ticks of {sc.id} in {stats.elapsed_s:.1f} s "
              f"({stats.rate:,.0f} ticks/s) to {settings.topics.market_data}")


def prices(
    symbols: Annotated[list[str] | None, typer.Argument(help="Symbols; default: every symbol with a price.")] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Keep the table live until Ctrl-C.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="Seconds to wait for snapshots.")] = 5.0,
) -> None:
    """Latest prices from the market-data service's WebSocket (snapshot, then live updates with --watch)."""
    _prices(symbols or [], watch, timeout)


@cli_errors
def _prices(symbols: list[str], watch: bool, timeout: float) -> None:
    from websockets.exceptions import WebSocketException
    from websockets.sync.client import connect

    from tradesim.adapters.redis.client import connect as redis_connect
    from tradesim.adapters.redis.prices import PriceCache

    settings = load_settings()
    wanted = sorted({s.upper() for s in symbols})
    if not wanted:
        import redis

        try:
            wanted = PriceCache(redis_connect(settings.redis)).symbols()
        except redis.RedisError as exc:
            raise StackError(f"cannot list symbols from Redis at {settings.redis.client_url}: {exc}") from None
        if not wanted:
            raise UserError("no prices yet: run `tradesim replay calm` first")
    rows: dict[str, dict] = {}  # type: ignore[type-arg]
    url = settings.marketdata.client_ws_url
    try:
        with connect(url, open_timeout=timeout) as ws:
            ws.send(json.dumps({"op": "subscribe", "symbols": wanted}))
            if not watch:
                deadline = time.monotonic() + timeout
                pending = set(wanted)
                while pending and time.monotonic() < deadline:
                    frame = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
                    _on_frame(frame, rows, pending)
                out.print(_table(rows, wanted))
                return
            with Live(_table(rows, wanted), console=out, refresh_per_second=8) as live:
                try:
                    for raw in ws:
                        _on_frame(json.loads(raw), rows, set())
                        live.update(_table(rows, wanted))
                except KeyboardInterrupt:
                    return
    except TimeoutError:
        out.print(_table(rows, wanted))
    except (OSError, WebSocketException) as exc:
        raise StackError(f"market-data service not reachable at {url}: {exc} (is `tradesim up` running?)") from None


def _on_frame(frame: dict, rows: dict, pending: set[str]) -> None:  # type: ignore[type-arg]
    kind = frame.get("type")
    if kind in ("snapshot", "tick"):
        data = frame["data"]
        rows[data["symbol"]] = data
        pending.discard(data["symbol"])
    elif kind == "error" and frame.get("code") == "unknown_symbol":
        for s in frame.get("symbols", []):
            pending.discard(s)
            rows.setdefault(s, {"symbol": s, "unknown": True})


def _table(rows: dict, order: list[str]) -> Table:  # type: ignore[type-arg]
    table = Table(title="prices")
    for col in ("symbol", "bid", "ask", "last", "size", "seq", "event time (UTC)"):
        table.add_column(col, justify="right" if col not in ("symbol", "event time (UTC)") else "left")
    for s in order:
        r = rows.get(s)
        if r is None or r.get("unknown"):
            table.add_row(s, "-", "-", "-", "-", "-", "unknown symbol" if r else "no data")
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["event_time_ms"] / 1000))
        table.add_row(s, str(Decimal(r["bid"])), str(Decimal(r["ask"])), str(Decimal(r["last"])), str(r["size"]),
                      str(r["seq"]), when)
    return table


def register(app: typer.Typer) -> None:
    app.command()(replay)
    app.command()(prices)
