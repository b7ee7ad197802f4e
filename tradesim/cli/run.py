"""Scripted runs: `tradesim run SCENARIO` (one scenario against its expectations) and `tradesim smoke` (the shipped
smoke scenarios, for CI). Exit codes: 0 all met, 1 an expectation failed, 2 bad file, 3 stack not usable."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from tradesim.cli.errors import check_output, cli_errors, err
from tradesim.cli.readout import console
from tradesim.settings import MIN_SPEED, Settings, load_settings
from tradesim.stack.errors import UserError

if TYPE_CHECKING:
    from collections.abc import Callable

    from tradesim.runner.engine import Run
    from tradesim.scenarios.expect import Check
    from tradesim.scenarios.report import RunReport

out = console()
EXIT_FAILED, EXIT_BAD_FILE, EXIT_STACK = 1, 2, 3
#: the canonical smoke scenarios `tradesim smoke` runs, from the scenarios folder
SMOKE = ("round-trip-fees", "flash-crash-ladder", "earnings-gap-stop", "overdraw-refused", "cancel-before-fill",
         "strategy-ma-cross")
SPARKS = "▁▂▃▄▅▆▇█"


DEFAULT_RUN_SPEED = 10.0


def register(app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("smoke")(smoke)


def run(scenario: Annotated[str, typer.Argument(help="Scenario name (e.g. round-trip-fees) or path to a YAML file.")],
        speed: Annotated[float | None, typer.Option("--speed", min=MIN_SPEED, max=1e6, show_default=False,
                                                    help="Simulated seconds per real second \\[default: 10].")]
        = None,
        fast: Annotated[bool, typer.Option("--fast", help="As fast as possible (same outcomes as any speed).")]
        = False,
        junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here.")] = None,
        json_out: Annotated[Path | None, typer.Option("--json", help="Write the run as JSON here.")] = None,
        ) -> None:
    """Run a scenario on the stack: accounts, scripted orders, strategy; check its `expect` section.
    Exit 0 all met, 1 an expectation failed, 2 bad file, 3 stack not usable."""
    code = _run_cli(scenario, speed, fast, junit, json_out)
    raise typer.Exit(code)


@cli_errors
def _run_cli(name: str, given_speed: float | None, fast: bool, junit: Path | None, json_out: Path | None) -> int:
    from tradesim.scenarios.loader import find_scenario
    from tradesim.scenarios.report import UNFINISHED, write_junit

    if fast and given_speed is not None:
        raise UserError("give --speed N or --fast, not both")
    speed = None if fast else DEFAULT_RUN_SPEED if given_speed is None else given_speed
    check_output(junit, "--junit")
    check_output(json_out, "--json")
    if junit is not None and json_out is not None and junit.resolve() == json_out.resolve():
        raise UserError(f"--junit and --json both name {junit}; give each report a file of its own")
    try:  # a bad file, setting or server: a CI server still gets a report saying why
        settings = load_settings()
        path = find_scenario(name, settings.scenarios_dir)
    except Exception as exc:
        _error_reports(junit, json_out, Path(name).stem, speed, str(exc))
        raise
    for option, given in (("--junit", junit), ("--json", json_out)):
        if given is not None and given.resolve() == path.resolve():  # the report would overwrite the scenario
            message = f"{option} names the scenario file {given}; write the report to another file"
            _error_reports(None if junit is given else junit, None if json_out is given else json_out,
                           Path(name).stem, speed, message)  # an older report of the other kind says no more
            raise UserError(message)
    named = [Path(name).stem]  # the scenario's id once the file loads, as a finished run's report names it

    def loaded(scenario_id: str) -> None:
        named[0] = scenario_id
        _error_reports(junit, json_out, scenario_id, speed, UNFINISHED)  # what the run's end replaces

    loaded(named[0])
    try:
        report, code = run_file(settings, path, speed, json_out, loaded=loaded)
    except Exception as exc:
        _error_reports(junit, json_out, named[0], speed, str(exc))
        raise
    if junit is not None:
        write_junit(junit, [report])
    return code


def _error_reports(junit: Path | None, json_out: Path | None, name: str, speed: float | None, error: str) -> None:
    """The reports asked for, of a run that did not complete."""
    from tradesim.scenarios.report import RunReport, write_error_json, write_junit

    if junit is not None:
        write_junit(junit, [RunReport(name, [], 0.0, error=error)])
    if json_out is not None:
        write_error_json(json_out, name, None, speed, error)


def run_file(settings: Settings, path: Path, speed: float | None, json_out: Path | None = None, *,
             loaded: Callable[[str], None] | None = None) -> tuple[RunReport, int]:
    """Load, run, print, and the JUnit record and exit code; ScenarioError (bad file) propagates. `loaded`: told
    the scenario's id once the file loads (the name every report of the run goes by)."""
    from tradesim.runner.engine import ScenarioRunner, StackUnusable, StrategyFailed
    from tradesim.runner.files import load_run, require_expect
    from tradesim.scenarios.expect import evaluate
    from tradesim.scenarios.report import RunReport, json_document, write_error_json, write_json

    scenario, strategy = load_run(path)
    if loaded is not None:
        loaded(scenario.id)
    require_expect(scenario, path)
    started = time.monotonic()
    stamp = datetime.now(UTC)
    props = {"seed": str(scenario.seed), "speed": "fast" if speed is None else f"{speed:g}"}
    pace = "as fast as possible" if speed is None else f"speed {speed:g}×"
    out.print(Text.assemble((scenario.id, "bold"), f" · {pace}"))
    try:
        runner = ScenarioRunner(settings, scenario, speed=speed, strategy=strategy)
        runner.progress.step = lambda msg: out.print(f"  {msg}", style="dim")
        done = runner.run()
    except StackUnusable as exc:
        err.print(f"error: stack not usable: {exc}")
        report = RunReport(scenario.id, [], time.monotonic() - started, error=f"stack not usable: {exc}",
                           timestamp=stamp, properties=props)
        if json_out is not None:
            write_error_json(json_out, scenario.id, scenario.seed, speed, str(exc))
        return report, EXIT_STACK
    except StrategyFailed as exc:
        err.print(f"error: {exc}")
        report = RunReport(scenario.id, [], time.monotonic() - started, error=str(exc), timestamp=stamp,
                           properties=props)
        if json_out is not None:
            write_error_json(json_out, scenario.id, scenario.seed, speed, str(exc))
        return report, EXIT_FAILED
    checks = evaluate(scenario.expect, done.result)
    elapsed = time.monotonic() - started
    _print(done, checks, elapsed)
    if json_out is not None:
        write_json(json_out, json_document(scenario.id, scenario.seed, speed, checks, done.result))
    report = RunReport(scenario.id, checks, elapsed, timestamp=stamp, properties=props)
    return report, (0 if all(c.passed for c in checks) else EXIT_FAILED)


def _print(done: Run, checks: list[Check], elapsed: float) -> None:
    from tradesim.domain.money import money_text
    from tradesim.scenarios.model import seconds_text

    result = done.result
    table = Table(title="orders", title_justify="left")
    for col in ("id", "at", "account", "order", "status", "fill", "fee"):
        table.add_column(col)
    for o in result.outcomes:
        colour = {"executed": "green", "refused": "red", "rejected": "red", "open": "yellow"}.get(o.status, "")
        status = o.status + (f" ({o.reason})" if o.reason else "")
        table.add_row(o.order_id, seconds_text(o.at_ms), o.account, f"{o.side} {o.qty} {o.symbol} {o.type}",
                      Text(status, style=colour), str(o.fill_price or "-"), str(o.fee or "-"))
    out.print(table)
    accounts = Table(title="accounts", title_justify="left")
    for col in ("account", "cash", "positions", "realized P&L", "executions", "cash curve"):
        accounts.add_column(col)
    for name, a in result.accounts.items():
        curve = _cash_curve(done.start_cash.get(name, Decimal(0)), [o for o in result.outcomes if o.account == name])
        held = ", ".join(f"{s} {q}" for s, q in sorted(a.positions.items()) if q) or "flat"
        accounts.add_row(name, str(a.cash), held, money_text(a.realized_pnl), str(a.executions), curve)
    out.print(accounts)
    if result.bars:
        out.print("bars: " + ", ".join(f"{k} {v}" for k, v in result.bars.items()) + " (from the bars job)")
    for c in checks:
        mark = ("✓", "green") if c.passed else ("✗", "red")
        detail = f"{c.actual}" if c.passed else f"expected {c.expected}, got {c.actual}"
        out.print(Text.assemble(mark, f" {c.name}: {detail}"))
    failed = sum(not c.passed for c in checks)
    out.print(f"outcomes hash {result.outcomes_hash}")
    verdict = ("passed", "green") if not failed else (f"{failed} of {len(checks)} expectations failed", "red")
    out.print(Text.assemble(verdict, f" in {elapsed:.1f}s (run {done.suffix})"))


def _cash_curve(start: Decimal, outcomes: list[object]) -> str:
    """Cash after each executed outcome in script order, as a sparkline (a picture, not a ledger)."""
    from tradesim.domain.pnl import cash_delta
    from tradesim.domain.trades import TradeRecord
    from tradesim.scenarios.expect import Outcome

    points = [start]
    for o in outcomes:
        if isinstance(o, Outcome) and o.executed:
            record = TradeRecord(order_id=o.order_id, user_id=o.account, symbol=o.symbol, side=o.side, qty=o.qty,
                                 status=o.status, decided_at_ms=0, order_type=o.type, price=o.fill_price, fee=o.fee)
            points.append(points[-1] + cash_delta(record))
    low, high = min(points), max(points)
    if high == low:
        return SPARKS[0] * len(points)
    return "".join(SPARKS[int((p - low) / (high - low) * (len(SPARKS) - 1))] for p in points)


def smoke(keep_up: Annotated[bool, typer.Option("--keep-up", help="Leave a stack this command started running.")]
          = False,
          junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here (a suite per scenario).")]
          = None) -> None:
    """Run the shipped smoke scenarios as fast as possible (starting the stack if needed, and stopping it again
    unless --keep-up); the last line is `N passed, N failed`; exit 1 if any failed, 3 if the stack would not come
    up healthy (then no scenario ran)."""
    raise typer.Exit(_smoke(keep_up, junit))


@cli_errors
def _smoke(keep_up: bool, junit: Path | None) -> int:
    from tradesim.scenarios.report import UNFINISHED

    check_output(junit, "--junit")
    _error_reports(junit, None, "smoke", None, UNFINISHED)  # what the end replaces: not an older run's pass
    try:
        return _smoke_runs(keep_up, junit)
    except Exception as exc:  # a bad setting or folder, a stack that would not start: the report says why
        _error_reports(junit, None, "smoke", None, str(exc))
        raise


def _smoke_runs(keep_up: bool, junit: Path | None) -> int:
    from tradesim.scenarios.errors import ScenarioError
    from tradesim.scenarios.loader import find_scenario
    from tradesim.scenarios.report import RunReport, write_junit
    from tradesim.stack import registry
    from tradesim.stack.supervisor import Supervisor

    settings = load_settings()
    files = {name: find_scenario(name, settings.scenarios_dir) for name in SMOKE}  # a wrong folder: exit 2, at once
    supervisor = Supervisor(settings, registry.build(settings))
    statuses = supervisor.status()
    running = {s.name for s in statuses if s.state == "running"}  # left running at the end, whatever happens
    started_stack = not all(s.healthy for s in statuses if s.name != "market")
    reports: list[RunReport] = []
    try:  # what it starts is stopped again, also when the start itself fails or is interrupted
        if started_stack:
            out.print("bringing the stack up …")
            rows = supervisor.up()
            bad = [r.name for r in rows if not r.healthy and r.name != "market"]
            if bad:
                err.print(f"error: stack not healthy after up: {', '.join(bad)}")
                _error_reports(junit, None, "smoke", None, f"stack not healthy after up: {', '.join(bad)}")
                return EXIT_STACK
        for name in SMOKE:
            started = time.monotonic()
            try:
                report, _code = run_file(settings, files[name], None)
            except ScenarioError as exc:
                err.print(str(exc))
                report = RunReport(name, [], time.monotonic() - started, error=str(exc))
            reports.append(report)
    finally:
        if started_stack and not keep_up:
            out.print("stopping what this command started …")
            Supervisor(settings, [c for c in supervisor.components if c.name not in running]).down()
    if junit is not None:
        write_junit(junit, reports)
    failed = sum(r.error is not None or r.failures > 0 for r in reports)
    out.print(f"{len(reports) - failed} passed, {failed} failed")
    return EXIT_FAILED if failed else 0
