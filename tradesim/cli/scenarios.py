"""Scenario commands: list, show, validate."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import islice
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from tradesim.cli.errors import cli_errors
from tradesim.cli.readout import console
from tradesim.settings import load_settings
from tradesim.stack.errors import UserError
from tradesim.text import visible

if TYPE_CHECKING:  # the model is imported inside the commands (startup stays fast)
    from tradesim.scenarios.model import Scenario

out = console()
app = typer.Typer(help="Scenario files: what is available, what one does, whether files are valid.",
                  no_args_is_help=True)


@app.command("list")
def list_() -> None:
    """List the scenarios in the scenarios folder (setting scenarios_dir)."""
    _list()


@cli_errors
def _list() -> None:
    from tradesim.scenarios.errors import ScenarioError, display_path
    from tradesim.scenarios.loader import load_scenario, scenario_files

    folder = load_settings().scenarios_dir
    files = scenario_files(folder)
    if not files:
        raise UserError(f"no scenario files in {display_path(folder)}; set TRADESIM_SCENARIOS_DIR")
    table = Table(title=f"scenarios in {display_path(folder)}")
    for col in ("name", "description", "symbols", "duration", "ticks"):
        table.add_column(col)
    for path in files:
        try:
            scenario = load_scenario(path)
        except ScenarioError as exc:
            table.add_row(Text(path.stem), Text.assemble(("invalid", "red"), f": {exc.problems[0]}"), "-", "-", "-")
            continue
        table.add_row(Text(path.stem), Text(_shown(scenario.description)), _symbols(scenario.symbol_names()),
                      f"{scenario.duration_s:g}s", f"{scenario.expected_ticks():,}")
    out.print(table)


def _shown(text: str) -> str:
    """A file's free text as the terminal should show it: its lines, each control character written as an escape
    (an ESC sequence in a description restyled the terminal)."""
    return "\n".join(visible(line) for line in text.splitlines())


@app.command("show")
def show(name: Annotated[str, typer.Argument(help="Scenario name (e.g. calm) or path to a YAML file.")],
         ticks: Annotated[int, typer.Option("--ticks", "-n", min=0, max=10_000_000,
                                            help="How many first ticks to print.")] = 10,
         ) -> None:
    """Show a scenario's settings, symbols, shocks and its first ticks."""
    _show(name, ticks)


@cli_errors
def _show(name: str, ticks: int) -> None:
    from tradesim.scenarios.errors import display_path
    from tradesim.scenarios.generators import generate
    from tradesim.scenarios.loader import find_scenario, load_scenario

    path = find_scenario(name, load_settings().scenarios_dir)
    s = load_scenario(path)
    out.print(Text.assemble((s.id, "bold"), f" ({display_path(path)})"))
    if s.description:
        out.print(_shown(s.description))
    out.print(f"start {s.start.isoformat()} · duration {s.duration_s:g}s · interval {s.tick_interval_ms} ms · "
              f"seed {s.seed} · {s.expected_ticks():,} ticks")
    if s.symbols:
        table = Table(title="generated symbols")
        for col in ("symbol", "initial", "drift/yr", "vol/yr", "tick", "spread", "volume"):
            table.add_column(col)
        for spec in s.symbols:
            spread = f"{spec.spread.bps} bps" if spec.spread.bps is not None else f"{spec.spread.absolute} abs"
            vol = spec.volume
            volume = f"{vol.kind} mean {vol.mean:g}" + (f" lot {vol.lot}" if vol.lot > 1 else "")
            table.add_row(spec.symbol, str(spec.initial_price), f"{spec.drift:g}", f"{spec.volatility:g}",
                          str(spec.tick_size), spread, volume)
        out.print(table)
    if s.events:
        table = Table(title="shocks")
        for col in ("at", "symbol", "move", "over", "spread x"):
            table.add_column(col)
        for e in s.events:
            table.add_row(f"{e.at_s:g}s", e.symbol, f"{e.move_pct:+g} %", f"{e.over_s:g}s", f"{e.spread_multiplier:g}")
        out.print(table)
    _show_trading(s)
    if s.source is not None:
        symbols, rows = s.replay_summary()
        out.print(f"replays {display_path(s.source.csv)}: {rows:,} rows, symbols {_symbols(list(symbols))}")
    if ticks:
        table = Table(title=f"first {ticks} ticks")
        for col in ("time (UTC)", "symbol", "seq", "bid", "ask", "last", "size"):
            table.add_column(col)
        for t in islice(generate(s), ticks):
            when = datetime.fromtimestamp(t.event_time_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            table.add_row(when, t.symbol, str(t.seq), str(t.bid), str(t.ask), str(t.last), str(t.size))
        out.print(table)


@app.command("validate")
def validate(files: Annotated[list[str], typer.Argument(help="Scenario files (or names) to check.")]) -> None:
    """Check scenario files (and the CSVs they replay); exit 2 with one line per problem."""
    _validate(files)


@cli_errors
def _validate(files: list[str]) -> None:
    from tradesim.scenarios.errors import Problem, ScenarioError, display_path
    from tradesim.scenarios.loader import find_scenario, load_scenario

    folder = load_settings().scenarios_dir
    problems: list[Problem] = []
    for name in files:
        try:
            path = find_scenario(name, folder)
            scenario = load_scenario(path)
            if scenario.orders or scenario.strategy is not None or scenario.accounts or scenario.expect is not None:
                from tradesim.runner.files import load_run, require_expect

                load_run(path)  # what `tradesim run` needs too: symbols it can alias, a strategy it can build
                require_expect(scenario, path)
        except ScenarioError as exc:
            problems += exc.problems
            continue
        trading = "".join(f", {part}" for part in _trading_counts(scenario))
        out.print(f"ok {display_path(path)}: {scenario.id}, {len(scenario.symbol_names())} symbols, "
                  f"{scenario.expected_ticks():,} ticks{trading}")
    if problems:
        raise ScenarioError(problems)


def _trading_counts(s: Scenario) -> list[str]:
    """"2 accounts", "3 orders", "strategy", "9 expectations" — only what the file has."""
    parts = [_count(len(s.accounts), "account"), _count(len(s.orders), "order"),
             "strategy" if s.strategy is not None else "",
             _count(s.expect.count(), "expectation") if s.expect is not None else ""]
    return [p for p in parts if p]


def _count(n: int, noun: str) -> str:
    return "" if n == 0 else f"{n} {noun}" + ("s" if n != 1 else "")


def _show_trading(s: Scenario) -> None:
    """Accounts, scripted orders, the strategy and how many expectations: what a run of this file trades."""
    from tradesim.scenarios.model import seconds_text

    counts = _trading_counts(s)
    if not counts:
        return
    out.print("trading: " + ", ".join(counts))
    if s.accounts:
        out.print("accounts: " + ", ".join(f"{a.name} ({a.cash})" for a in s.accounts))
    if s.orders:
        table = Table(title="scripted orders")
        for col in ("id", "at", "account", "order", "prices", "tif", "cancel at"):
            table.add_column(col)
        for o in s.orders:
            named = (("limit", o.limit_price), ("stop", o.stop_price))
            prices = " · ".join(f"{label} {value}" for label, value in named if value is not None)
            table.add_row(o.id, seconds_text(o.at_ms), o.account, f"{o.side} {o.qty} {o.symbol} {o.type}",
                          prices or "-", o.time_in_force,
                          "-" if o.cancel_at_ms is None else seconds_text(o.cancel_at_ms))
        out.print(table)
    if s.strategy is not None:
        st = s.strategy
        # the file's free text, as a description is: a control character in it would restyle the terminal
        params = visible(", ".join(f"{k}={v}" for k, v in st.params.items()))
        out.print(f"strategy: {st.class_path} as {st.account} on {', '.join(st.symbols)}"
                  + (f" ({params})" if params else ""))


def _symbols(names: list[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" +{len(names) - limit}" if len(names) > limit else "")
