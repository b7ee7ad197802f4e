"""Market-data commands: `tradesim replay` (scenario → Kafka), `tradesim prices` (live table over WebSocket) and
`tradesim market start|stop|status` (the live market, a supervised stack component)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from tradesim.cli.errors import cli_errors
from tradesim.cli.readout import console, symbol_param, symbols_param
from tradesim.settings import MAX_LIVE_SPEED, MIN_SPEED, Settings, load_settings, redacted
from tradesim.stack.errors import StackError, UserError
from tradesim.text import visible

if TYPE_CHECKING:
    from tradesim.domain.events import Tick
    from tradesim.stack.market import MarketRequest

out = console()


def replay(
    scenario: Annotated[str, typer.Argument(help="Scenario name (see `tradesim scenarios list`) or YAML path.")],
    speed: Annotated[float | None, typer.Option("--speed", min=MIN_SPEED, max=1e6, help="Simulated seconds per real "
                                                "second; omit to publish as fast as possible.")] = None,
    symbols: Annotated[str | None, typer.Option("--symbols", help="Comma-separated subset of symbols.")] = None,
) -> None:
    """Publish a scenario's ticks to Kafka `market_data` (keyed by symbol) on its simulated clock."""
    _replay(scenario, speed, symbols)


@cli_errors
def _replay(scenario: str, speed: float | None, symbols: str | None) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from tradesim.adapters.kafka.client import broker_count
    from tradesim.adapters.kafka.errors import KafkaDeliveryError, KafkaUnavailable
    from tradesim.scenarios.generators import generate
    from tradesim.scenarios.loader import find_scenario, load_scenario
    from tradesim.scenarios.runner import SimClock
    from tradesim.services.ingest.publisher import PublishStats, publish_all
    from tradesim.services.market.feed import cached_ticks

    wanted = symbols_param(symbols, "--symbols")
    settings = load_settings()
    sc = load_scenario(find_scenario(scenario, settings.scenarios_dir))  # ScenarioError → exit 2 (cli_errors)
    ticks = generate(sc, wanted)  # raises ScenarioError for a symbol the scenario does not have
    try:
        broker_count(settings.kafka, timeout_s=5)  # not a minute of unacknowledged ticks to learn it is down
    except KafkaUnavailable as exc:
        raise StackError(f"{exc}; start the stack with `tradesim up`") from None
    clock = SimClock(speed=speed)
    start_ms = int(sc.start.timestamp() * 1000)
    played = wanted or sc.symbol_names()
    cached = cached_ticks(settings, played) or {}  # {} when Redis does not answer
    live = [s for s in played if s in cached]
    if live:
        out.print(f"note: {', '.join(live)} already have prices: from now on their prices, and the books that "
                  "match open orders on them, follow this replay (the newest run owns a symbol) until `tradesim "
                  "market start` takes them back")
    behind = _behind_market_time(settings, played, cached, start_ms)
    if behind:
        until = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(max(behind.values()) / 1000))
        out.print(f"note: {', '.join(behind)} already ticked at later market times (up to {until} UTC; the live "
                  "market's?): the bars job closes each symbol's windows on its own clock, so it drops this "
                  "replay's ticks of them before those times as late, and they make no bars")
    total_ms = sc.duration_ms
    with Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
                  TextColumn("{task.fields[info]}", markup=False),
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


def _behind_market_time(settings: Settings, symbols: list[str], cached: dict[str, Tick], first_ms: int
                        ) -> dict[str, int]:
    """The symbols whose known market time (`known_clocks`: their cached ticks and the live market's run file)
    makes a tick at first_ms late for the bars job, with that time."""
    from tradesim.jobs.bars_logic import is_late
    from tradesim.services.market.feed import known_clocks, read_run
    from tradesim.stack.market import RUN_FILE, market_dir

    clocks = known_clocks(cached, read_run(market_dir(settings) / RUN_FILE))
    lag = settings.flink.out_of_orderness_ms
    return {s: clocks[s] for s in symbols if s in clocks and is_late(clocks[s], first_ms, lag)}


def prices(
    symbols: Annotated[list[str] | None, typer.Argument(help="Symbols; default: every symbol with a price.")] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Keep the table live until Ctrl-C.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, max=3600,
                                           help="Seconds to wait for snapshots.")] = 5.0,
) -> None:
    """Latest prices from the market-data service's WebSocket (snapshot, then live updates with --watch)."""
    _prices(symbols or [], watch, timeout)


@cli_errors
def _prices(symbols: list[str], watch: bool, timeout: float) -> None:
    from websockets.exceptions import ConnectionClosed, WebSocketException
    from websockets.sync.client import connect

    from tradesim.adapters.redis.client import connect as redis_connect
    from tradesim.adapters.redis.prices import PriceCache

    settings = load_settings()
    wanted = sorted({symbol_param(s) for s in symbols})
    if not wanted:
        import redis

        try:
            wanted = PriceCache(redis_connect(settings.redis)).symbols()
        except redis.RedisError as exc:
            raise StackError(f"cannot list symbols from Redis at {redacted(settings.redis.client_url)}: {exc}"
                             ) from None
        if not wanted:
            raise UserError("no prices yet: start the live market with `tradesim market start` (or publish a "
                            "scenario once with `tradesim replay calm`)")
    url = settings.marketdata.client_ws_url
    feed = _Feed(wanted, redacted(url))
    try:
        with connect(url, open_timeout=timeout) as ws:
            feed.start(ws.send)
            if not watch:
                deadline = time.monotonic() + timeout
                while feed.missing and time.monotonic() < deadline:
                    feed.take(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
                out.print(_table(feed))
                _refuse_unknown(feed.unknown)
                return
            with Live(_table(feed), console=out, refresh_per_second=8) as live:
                try:
                    while True:  # not `for raw in ws`: it ends quietly on a normal close, a table frozen with exit 0
                        feed.take(ws.recv())
                        live.update(_table(feed))
                except KeyboardInterrupt:
                    return
                except ConnectionClosed as exc:  # the service stopped (1001) or restarted, or the link dropped
                    raise StackError(f"the market-data service at {redacted(url)} closed the connection ({exc}); the "
                                     "table shows the prices until then (`tradesim status` shows whether it is back)"
                                     ) from None
    except TimeoutError:
        out.print(_table(feed))
        _refuse_unknown(feed.unknown)
        if not feed.answered:  # not even the subscription's answer: a service hung, or its Redis away (before: exit 0)
            raise StackError(f"the market-data service at {redacted(url)} did not answer the subscription within "
                             f"{timeout:g} s (`tradesim status` shows whether it and Redis are healthy)") from None
    except (OSError, WebSocketException) as exc:
        raise StackError(f"market-data service not reachable at {redacted(url)}: {exc} (is `tradesim up` running?)"
                         ) from None


class _Feed:
    """The prices table's symbols as the market-data service's frames tell them. The symbols are asked for in
    requests of at most MAX_SYMBOLS_PER_REQUEST (the service refuses a longer one), each once the one before it is
    answered: the service then holds at most about two requests' snapshots unread (it closes a client that leaves
    5,000)."""

    def __init__(self, wanted: list[str], url: str) -> None:
        from tradesim.domain.events import MAX_SYMBOLS_PER_REQUEST

        self.wanted = wanted
        self._wanted = set(wanted)
        self.url = url  # redacted
        self._send: Callable[[str], None] = lambda _frame: None
        self.rows: dict[str, Tick] = {}
        self.unknown: set[str] = set()
        #: symbols with neither a price nor the service's word that it has none
        self.missing = set(wanted)
        #: the service answered a subscription (a heartbeat is no answer: a service stuck on Redis still sends it)
        self.answered = False
        n = MAX_SYMBOLS_PER_REQUEST
        self._requests = [wanted[i:i + n] for i in range(0, len(wanted), n)]
        self._asked: set[str] = set()  # the symbols of the request that awaits its answer

    def start(self, send: Callable[[str], None]) -> None:
        """Send the first request with `send` (the next ones go as the service answers)."""
        self._send = send
        self._ask()

    def _ask(self) -> None:
        """Send the next request, unless one awaits its answer (or none is left)."""
        if not self._asked and self._requests:
            request = self._requests.pop(0)
            self._asked = set(request)
            self._send(json.dumps({"op": "subscribe", "symbols": request}))

    def take(self, raw: str | bytes) -> None:
        """One frame of the service's; raises StackError for an error it answered, and for a frame it never sends
        (before: a traceback for each kind of broken frame, or a time past year 9999 "not reachable")."""
        from tradesim.domain.events import Tick

        try:
            frame = json.loads(raw) if isinstance(raw, str) else None
            if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
                raise ValueError("not a frame")
            kind = frame["type"]
            tick = Tick.model_validate(frame.get("data")) if kind in ("snapshot", "tick") else None
            code, message, named = frame.get("code"), frame.get("message"), frame.get("symbols", [])
            if kind == "error" and not (isinstance(code, str) and isinstance(message, str | None)
                                        and isinstance(named, list) and all(isinstance(s, str) for s in named)):
                raise ValueError("not an error frame")
        except (ValueError, RecursionError):  # JSON's and the Tick's (pydantic's ValidationError is a ValueError)
            raise StackError(f"unexpected frame from {self.url}: is it the tradesim market-data service?") from None
        self.answered = self.answered or kind in ("subscribed", "snapshot", "error")
        if tick is not None and tick.symbol in self._wanted:
            self.rows[tick.symbol] = tick
            self.missing.discard(tick.symbol)
        elif kind == "subscribed":
            self._asked = set()
        elif kind == "error" and code == "unknown_symbol":
            unknown = set(named) & self._wanted
            self.unknown |= unknown
            self.missing -= unknown
            self._asked -= unknown  # a request of unknown symbols only has no other answer
        elif kind == "error" and code == "unavailable":
            raise StackError(f"the market-data service cannot read prices now: {visible(str(message))} "
                             "(`tradesim status` shows whether Redis is healthy)")
        elif kind == "error":  # before: counted as an answer and ignored, and every row said `no data`
            raise StackError(f"the market-data service at {self.url} answered {visible(str(code))}: "
                             f"{visible(str(message))}")
        self._ask()


def _refuse_unknown(unknown: set[str]) -> None:
    """A symbol the service never had a price for is most likely a typo: exit 2 (after the table), so a script
    that checks prices sees it."""
    if unknown:
        many = len(unknown) > 1
        raise UserError(f"unknown symbol{'s' if many else ''} {', '.join(sorted(unknown))}: no price was ever "
                        f"published for {'them' if many else 'it'} (see `tradesim scenarios`)")


def _table(feed: _Feed) -> Table:
    table = Table(title="prices")
    for col in ("symbol", "bid", "ask", "last", "size", "seq", "event time (UTC)"):
        table.add_column(col, justify="right" if col not in ("symbol", "event time (UTC)") else "left")
    for s in feed.wanted:
        tick = feed.rows.get(s)
        if tick is None:
            table.add_row(s, "-", "-", "-", "-", "-", "unknown symbol" if s in feed.unknown else "no data")
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(tick.event_time_ms / 1000))
        table.add_row(s, str(tick.bid), str(tick.ask), str(tick.last), str(tick.size), str(tick.seq), when)
    return table


market_app = typer.Typer(help="The live market: a scenario fed to market_data continuously, supervised like the "
                         "servers (shown in `tradesim status`).", no_args_is_help=True)


@market_app.command("start")
def market_start(
    scenario: Annotated[str | None, typer.Argument(
        help="Scenario name or YAML path; default settings.market.scenario (calm).", show_default=False)] = None,
    speed: Annotated[str | None, typer.Option(
        "--speed", help="Simulated seconds per real second; default settings.market.speed (1: real time).",
        show_default=False)] = None,
    loop: Annotated[bool | None, typer.Option(
        "--loop/--no-loop", help="Start over at the end, continuing from the last prices; default "
        "settings.market.loop (on).", show_default=False)] = None,
) -> None:
    """Run a scenario continuously as the stack component `market` (kept by `up` until `market stop`)."""
    _market_start(scenario, speed, loop)


@cli_errors
def _market_start(scenario: str | None, speed: str | None, loop: bool | None) -> None:
    out.print(start_market(load_settings(), scenario, speed, loop))


def start_market(settings: Settings, scenario: str | None, speed: str | float | None, loop: bool | None, *,
                 keep_any: bool = False) -> str:
    """Start (or keep, or restart with a new choice) the live market; returns one line saying what runs.
    `keep_any`: a market that runs is kept whatever it plays (the demo needs a market, not this one).
    Raises UserError / ScenarioError for bad input, StackError when it cannot run."""
    from tradesim.stack import registry
    from tradesim.stack.market import MarketService, clear_request, read_request, write_request
    from tradesim.stack.supervisor import Supervisor

    if settings.stack.runtime == "docker":
        raise UserError("`tradesim market` drives the native stack; with docker run "
                        "`docker compose -f docker/compose.yaml --profile market up -d market`")
    request = _market_request(settings, scenario, speed, loop)
    kafka = Supervisor(settings, registry.build(settings, ["kafka"])).status()[0]
    if not kafka.healthy:
        raise StackError(f"Kafka is not running ({kafka.detail or kafka.state}); start the stack with `tradesim up`")
    sup = Supervisor(settings, [MarketService(settings)], progress=lambda _c, _m: None)
    row = sup.status()[0]
    current = read_request(settings)
    taken: list[str] = []
    if row.state == "running" and current is not None and (current == request or keep_any):
        taken = [] if keep_any else _taken_over(settings, request, _run_record(settings, row.pid))
        if not taken:
            return f"market already running: {_describe(current)} (pid {row.pid})"
    if row.state in ("running", "unhealthy"):
        sup.down()  # running something else: replace it
    write_request(settings, request)
    try:
        (row,) = sup.up()
    except StackError:
        clear_request(settings)  # a market that cannot start must not make every later `tradesim up` fail
        raise
    run = _run_record(settings, row.pid)
    took = f"; restarted to take back {', '.join(taken)} from a later replay" if taken else ""
    return (f"market running: {_describe(request)}" + (f", run {run.run_id}" if run else "") + f" (pid {row.pid})"
            + took + (_ahead(run) if run else ""))


def _taken_over(settings: Settings, request: MarketRequest, run: Any) -> list[str]:
    """The market's symbols whose cached price a later run (a `tradesim replay`) owns now: the running feed's
    ticks of them no longer count, so starting the same market again takes them back with a newer run id."""
    from tradesim.scenarios.loader import load_scenario
    from tradesim.services.market.feed import cached_ticks
    from tradesim.stack.market import playable

    if run is None:
        return []
    symbols = [s.symbol for s in load_scenario(playable(settings, request.scenario)).symbols]
    cached = cached_ticks(settings, symbols) or {}
    return [s for s in symbols if s in cached and cached[s].run_id > run.run_id]


def _market_request(settings: Settings, scenario: str | None, speed: str | float | None,
                    loop: bool | None) -> MarketRequest:
    import math

    from tradesim.scenarios.loader import SUFFIXES
    from tradesim.stack.market import MarketRequest, playable

    m = settings.market
    if speed is None:
        pace = m.speed
    else:
        try:
            pace = float(speed)
        except ValueError:
            raise UserError(f"--speed must be a number of at least {MIN_SPEED:g}, got {speed!r}") from None
        if not (math.isfinite(pace) and pace >= MIN_SPEED):
            raise UserError(f"--speed must be a number of at least {MIN_SPEED:g}, got {speed!r}")
        if pace > MAX_LIVE_SPEED:
            raise UserError(f"--speed is at most {MAX_LIVE_SPEED:g} for the live market, which loops for ever; "
                            "`tradesim replay SCENARIO --speed N` goes through a scenario once at any speed")
    name = m.scenario if scenario is None else scenario  # "" is a mistake (find_scenario says so), not the default
    path = playable(settings, name)  # ScenarioError (exit 2) names the available ones
    # a name stays a name (readable in status); a path is made absolute: the feed runs in another folder
    given = Path(name)
    stored = name if given.suffix not in SUFFIXES and len(given.parts) == 1 else str(path.resolve())
    return MarketRequest(stored, pace, m.loop if loop is None else loop)


def _describe(request: MarketRequest) -> str:
    return f"{request.scenario} at speed {request.speed:g}, " + ("looping" if request.loop else "once")


AHEAD_NOTED_MS = 60_000


def _ahead(run: Any) -> str:
    """Notes on where the run's market time starts: well ahead of the wall clock because an earlier run (faster
    than real time) took its symbols there, as market time never goes back for a symbol (its bars would stop);
    and that Redis did not answer, so neither its prices nor its clocks were read."""
    note = ""
    ahead_ms = run.start_ms - run.started_at_ms
    if run.continued_ms is not None and ahead_ms >= AHEAD_NOTED_MS:
        note += (f"; market time starts {_span(ahead_ms)} ahead of the wall clock, where an earlier run left these "
                 "symbols (it never goes back)")
    if not run.cache_answered:
        note += ("; Redis did not answer at the start: prices start at the scenario's, and market time only "
                 "after what this stack's run file knows")
    return note


def _span(ms: int) -> str:
    minutes = ms // 60_000
    days, hours = divmod(minutes // 60, 24)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes % 60} min" if hours else f"{minutes} min"


def _run_record(settings: Settings, pid: int | None) -> Any:
    from tradesim.services.market.feed import read_run
    from tradesim.stack.market import RUN_FILE, market_dir

    run = read_run(market_dir(settings) / RUN_FILE)
    return run if run is not None and run.pid == pid else None


@market_app.command("stop")
def market_stop() -> None:
    """Stop the live market; `tradesim up` leaves it stopped until the next `market start`."""
    _market_stop()


@cli_errors
def _market_stop() -> None:
    from tradesim.stack.market import MarketService, clear_request
    from tradesim.stack.supervisor import Supervisor

    settings = load_settings()
    requested = clear_request(settings)
    stopped = Supervisor(settings, [MarketService(settings)], progress=lambda _c, _m: None).down()
    out.print("market stopped" if stopped or requested else "market was not running")


@market_app.command("status")
def market_status(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """State, scenario, speed, run id, ticks published, passes; exit 1 if started but not healthy."""
    _market_status(as_json)


@cli_errors
def _market_status(as_json: bool) -> None:
    from dataclasses import asdict

    from tradesim.stack.market import START_HINT, MarketService, read_request
    from tradesim.stack.supervisor import Supervisor

    settings = load_settings()
    comp = MarketService(settings)
    row = Supervisor(settings, [comp]).status()[0]
    request = read_request(settings)
    run = _run_record(settings, row.pid) if row.state == "running" else None
    counts = _feed_metrics(comp.address()) if row.state == "running" else {}
    doc = {"state": row.state, "healthy": row.healthy, "detail": row.detail, "pid": row.pid,
           "request": asdict(request) if request else None, "run": asdict(run) if run else None, **counts}
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    elif row.state == "running":
        out.print(f"market running (pid {row.pid}): {_describe(request) if request else 'settings defaults'}")
        if run is not None:
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(run.start_ms / 1000))
            out.print(f"run {run.run_id}, scenario id {run.scenario_id}, event time from {started} UTC"
                      + _ahead(run))
        if counts:
            last = counts.get("last_event_time_ms")
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(last / 1000)) if last else "-"
            out.print(f"{counts['ticks_published']:,} ticks published, {counts['loops_completed']} passes "
                      f"completed, last event time {when} UTC")
    elif row.state == "stopped" and row.healthy:  # not requested, or its scenario cannot run (the detail says)
        out.print(f"market stopped: {row.detail or START_HINT}")
    elif row.state == "stopped":
        out.print("market stopped, but started (`tradesim down`?): `tradesim up` brings it back")
    else:
        out.print(f"market {row.state}: {row.detail or '-'}")
    if not row.healthy:
        raise typer.Exit(1)


def _feed_metrics(url: str) -> dict[str, int]:
    """The feed's counters from its /metrics page; {} when it does not answer."""
    import urllib.error
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - our own http:// endpoint
            text = answer.read().decode()
    except (OSError, urllib.error.URLError):
        return {}
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    return {"ticks_published": int(values.get("tradesim_market_ticks_published_total", 0)),
            "ticks_failed": int(values.get("tradesim_market_ticks_failed_total", 0)),
            "loops_completed": int(values.get("tradesim_market_loops_completed_total", 0)),
            "last_event_time_ms": int(values.get("tradesim_market_last_event_time_seconds", 0) * 1000)}


def register(app: typer.Typer) -> None:
    app.command()(replay)
    app.command()(prices)
    app.add_typer(market_app, name="market")
