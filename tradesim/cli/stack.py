"""Stack commands: up, down, status, logs, doctor."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table
from rich.text import Text

from tradesim.cli.backup import warn_unfinished
from tradesim.cli.errors import cli_errors, err
from tradesim.cli.readout import console, user_param
from tradesim.settings import Settings, load_settings
from tradesim.stack.errors import StackError, UserError

out = console()
Only = Annotated[str | None, typer.Option("--only", help="Comma-separated components, e.g. kafka,redis.")]
Runtime = Annotated[str | None, typer.Option("--runtime", help="native (default) or docker.")]


def _runtime(settings: Settings, runtime: str | None) -> Literal["native", "docker"]:
    chosen = runtime or settings.stack.runtime
    if chosen not in ("native", "docker"):
        raise UserError(f"unknown runtime {chosen!r}; use native or docker")
    return chosen  # type: ignore[return-value]


def only_names(only: str | None) -> list[str] | None:
    """The names `--only` gives; `--only ''` is an empty name (refused), not "every component"."""
    return None if only is None else only.split(",")


class _LineProgress:
    """Progress as timestamped plain lines: readable in a terminal and in CI logs alike."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, component: str, message: str) -> None:
        out.print(f"[{time.monotonic() - self.started:6.1f}s] {component:<10} {message}")


def up(only: Only = None, runtime: Runtime = None,
       with_jobs: Annotated[bool, typer.Option("--with-jobs", help="Then submit the standard Flink jobs.")]
       = False,
       demo: Annotated[bool, typer.Option(
           "--demo", help="Also the standard jobs, the live market and a demo account with cash; then open the "
           "TUI when run in a terminal.")] = False,
       demo_user: Annotated[str | None, typer.Option(
           "--demo-user", help="Account of --demo (default demo): created with 100,000 cash, or reused if the "
           "credentials file has its key.")] = None) -> None:
    """Provision, start and health-check the stack; what already runs healthy is left alone."""
    if not demo:
        _up(only, runtime, with_jobs, demo_user)
        return
    user = "demo" if demo_user is None else demo_user
    _demo(only, runtime, user)
    if sys.stdin.isatty() and sys.stdout.isatty():
        _open_tui(user)
    else:
        out.print("open the trading terminal: tradesim tui")


@cli_errors
def _up(only: str | None, runtime: str | None, with_jobs: bool = False, demo_user: str | None = None) -> None:
    if demo_user is not None:  # before: ignored without a word
        raise UserError("--demo-user names the account of --demo; add --demo")
    _bring_up(only, runtime, with_jobs, show=True)


def _bring_up(only: str | None, runtime: str | None, with_jobs: bool, *, show: bool) -> None:
    from tradesim.stack import registry

    settings = load_settings()
    comps = registry.build(settings, only_names(only))
    if _runtime(settings, runtime) == "docker":
        from tradesim.stack.docker import DockerRuntime

        if with_jobs:  # before: the jobs were left out without a word (compose starts no job and no watchdog)
            raise UserError("--with-jobs submits to the native stack; under docker: `docker compose exec flink "
                            "flink run ...` (docker/compose.yaml)")
        # on-demand components (the live market) run under docker only when started there explicitly
        DockerRuntime(settings, [c for c in comps if c.not_requested() is None]).up()
        out.print("stack is up (docker)")
        return
    from tradesim.stack.supervisor import Supervisor

    try:
        rows = Supervisor(settings, comps, progress=_LineProgress()).up()
    except StackError:
        with contextlib.suppress(Exception):  # the failure to report is up's own
            _leave_watchdog(settings, healthy=False)
        raise
    if show:
        _print_table(rows)
    warn_unfinished(settings)
    bad = [r.name for r in rows if not r.healthy]
    _leave_watchdog(settings, healthy=not bad)
    if bad:
        if not show:
            _print_table(rows)
        # what did start keeps running (`up` is idempotent): say how to see why, and how to retry or stop
        raise StackError(f"not healthy after up: {', '.join(bad)} (`tradesim logs {bad[0]}` shows why); the rest "
                         "keeps running: `tradesim up` again starts what is missing, `tradesim down` stops it all")
    from tradesim.stack import jobs

    if with_jobs:
        for line in jobs.submit_standard_jobs(settings,
                                              progress=lambda msg: out.print(f"flink: {msg}")):
            out.print(line)
    elif any(c.name == "flink" for c in comps) and (waiting := jobs.waiting_to_resume(settings)):
        out.print(f"flink: {', '.join(waiting)} stopped with state to resume (books, resting orders); "
                  "`tradesim up --with-jobs` or `tradesim jobs submit NAME` resumes it")


DEMO_CASH = "100000"


def _leave_watchdog(settings: Settings, *, healthy: bool) -> None:
    """The watchdog `up` leaves (docs/design/hardening.md): a restarting one after a healthy `up` with
    `stack.watchdog` on; else one for the logs only while a server of ours runs, none when none does."""
    from tradesim.stack import registry, watchdog
    from tradesim.stack.supervisor import Supervisor, watchdog_state

    if settings.stack.watchdog and healthy:
        handle = watchdog.start(settings)
        out.print(f"watchdog: running (pid {handle.pid}); it restarts what dies, `tradesim down` stops it first")
        return
    if settings.stack.watchdog and watchdog_state(settings, []) == "running":
        return  # a failed `up` keeps the restarting one it found
    if not Supervisor(settings, registry.build(settings)).alive():
        watchdog.stop(settings)  # an all-external stack (the AWS init task): nothing to restart or trim
        return
    handle = watchdog.start(settings, restarting=False)
    state = "`up` failed" if settings.stack.watchdog else "stack.watchdog is off"
    out.print(f"watchdog: for the logs only (pid {handle.pid}): {state}, so nothing restarts what dies; it keeps "
              "each server's log under stack.log_rotate_mb")


@cli_errors
def _demo(only: str | None, runtime: str | None, user: str) -> None:
    """`up --demo`: everything a first session needs, each step idempotent, then what runs."""
    from tradesim.cli.market import start_market
    from tradesim.stack import registry
    from tradesim.stack.supervisor import Supervisor

    if only:
        raise UserError("--demo brings up the whole stack; leave out --only")
    user_param(user)  # before anything starts
    settings = load_settings()
    if _runtime(settings, runtime) == "docker":
        raise UserError("--demo runs the native stack; leave out --runtime docker")
    _bring_up(None, runtime, True, show=False)
    market = start_market(settings, None, None, None, keep_any=True)
    account = _demo_account(settings, user)
    _print_table(Supervisor(settings, registry.build(settings)).status())
    out.print(market)
    out.print(account)


def _demo_account(settings: Settings, name: str) -> str:
    """Reuse the account if the credentials file holds a working key for it, else create it; either way make it
    active."""
    from tradesim.cli.accounts import create_account
    from tradesim.client.api import call, credentials_path, credentials_update, load_credentials
    from tradesim.services.api.schemas import AccountInfo

    stored = load_credentials(settings)["users"].get(name)
    if stored:
        try:
            me = call(settings, "GET", "/accounts/me", stored["api_key"], shape=AccountInfo)
        except UserError:
            me = None  # the key no longer works (the stack was purged): create the account again
        if me is not None:
            with credentials_update(settings) as data:
                data["active"] = name
            return f"account {name}: cash {me['cash']} (reused; active user)"
    try:  # as `accounts create`: a key the file cannot keep is shown, not lost
        created, path, _ = create_account(settings, name, DEMO_CASH, activate=True)
    except UserError as exc:
        if "account_exists" not in str(exc) and "account_taken_over" not in str(exc):
            raise
        raise UserError(f"account {name!r} exists, but {credentials_path(settings)} has no working key for it: use "
                        "the credentials file that created it, or pick another name with --demo-user") from None
    return (f"account {name}: created with {created.get('starting_cash', DEMO_CASH)} cash; key saved to {path} "
            "(active user)")


@cli_errors
def _open_tui(user: str) -> None:
    from tradesim.tui.app import run

    run(user=user)


def down(purge: Annotated[bool, typer.Option("--purge", help="Also delete data.")] = False,
         only: Only = None, runtime: Runtime = None) -> None:
    """Stop the stack's servers (by pid: TERM, then KILL after a grace period)."""
    _down(purge, only, runtime)


@cli_errors
def _down(purge: bool, only: str | None, runtime: str | None) -> None:
    from tradesim.stack import registry

    settings = load_settings()
    comps = registry.build(settings, only_names(only))
    if _runtime(settings, runtime) == "docker":
        from tradesim.stack.docker import DockerRuntime

        DockerRuntime(settings, comps).down(purge, everything=only is None)
        return
    from tradesim.stack import watchdog
    from tradesim.stack.supervisor import Supervisor

    if only is None and watchdog.stop(settings):  # first: it must not restart what this stops
        out.print("watchdog stopped")
    stopped = Supervisor(settings, comps, progress=_LineProgress()).down(purge)
    if purge and only is None:
        from tradesim.stack.marks import forget_unfinished_rebuilds, forget_unfinished_restore

        forget_unfinished_restore(settings)
        forget_unfinished_rebuilds(settings)
    out.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")
    if settings.chaos.enabled and only is not None and any(c.name == "toxiproxy" for c in comps):
        # the services and jobs still reach the local stores through its ports: they are cut off now
        err.print("warning: with chaos.enabled the services and jobs reach the local Redis, DynamoDB and Kafka "
                  "through Toxiproxy; they fail until `tradesim up` starts it again")


def status(as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
           only: Only = None) -> None:
    """Show each component: state, pid, address, version, uptime, health. Exit 1 if any is not healthy."""
    _status(as_json, only)


@cli_errors
def _status(as_json: bool, only: str | None) -> None:
    from tradesim.stack import registry
    from tradesim.stack.supervisor import Supervisor, status_document, watchdog_state

    settings = load_settings()
    if _runtime(settings, None) == "docker":  # before: the native stack's state, labelled native
        raise UserError("status reads the native stack; stack.runtime is docker: `docker compose ps` "
                        "(docker/compose.yaml)")
    rows = Supervisor(settings, registry.build(settings, only_names(only))).status()
    if as_json:
        sys.stdout.write(json.dumps(status_document(settings, "native", rows), indent=2) + "\n")
    else:
        _print_table(rows)
        warn_unfinished(settings)
        if watchdog_state(settings, rows) == "not running":
            err.print("warning: the watchdog is not running, so nothing restarts a component that dies; "
                      "`tradesim up` starts it again")
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)


def _print_table(rows: list) -> None:  # type: ignore[type-arg]
    table = Table(title="tradesim stack")
    restarted = any(r.restarts for r in rows)  # the watchdog's column, only once it had something to do
    for col in ("component", "state", "pid", "address", "version", "uptime", *(["restarts"] if restarted else []),
                "health"):
        table.add_column(col)
    for r in rows:
        # "stopped" and healthy: an on-demand component nobody started (the market); detail says how to start it
        colour = "yellow" if r.state == "stopped" else ("green" if r.healthy else "red")
        health = "ok" if r.healthy and r.state != "stopped" else (r.detail or "-")
        uptime = f"{r.uptime_s:.0f}s" if r.uptime_s is not None else "-"
        table.add_row(r.name, Text(r.state, style=colour), str(r.pid or "-"), r.address or "-", r.version or "-",
                      uptime, *([str(r.restarts)] if restarted else []), health)
    out.print(table)
    for r in rows:
        if r.last_log_lines and not r.healthy:
            out.print(Text.assemble((r.name, "bold"), f" last log lines ({r.log}):"))
            for line in r.last_log_lines:
                out.print("  " + line)


def logs(component: Annotated[str, typer.Argument(help="kafka, redis, ...")],
         follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
         lines: Annotated[int, typer.Option("--lines", "-n", min=1)] = 50) -> None:
    """Print a component's server log (and keep following it with --follow)."""
    _logs(component, follow, lines)


@cli_errors
def _logs(component: str, follow: bool, lines: int) -> None:
    from tradesim.stack import registry
    from tradesim.stack.supervisor import last_lines

    settings = load_settings()
    (comp,) = registry.build(settings, [component])
    path = comp.log_path
    if path.exists() and not (path.is_file() or path.is_dir()):  # a FIFO, whose open would block for ever
        raise UserError(f"{path} is not a regular file")
    try:
        path.open("rb").close()  # an unreadable log: one line (cli_errors)
    except FileNotFoundError:
        hint = comp.not_requested()  # an on-demand component (the live market) starts its own way
        raise StackError(f"{component} has no log yet at {path} ({hint or 'start it with `tradesim up`'})"
                         ) from None
    for line in last_lines(path, lines):
        out.print(line)
    if follow:
        _follow(path)


def _follow(path: Path) -> None:
    """Print what is appended to a log until Ctrl-C; a restart that moved the log aside (`stack.log_rotate_mb`)
    is followed into the new file, as `tail -F` does."""
    fh = open(path, "rb")  # noqa: SIM115 - reopened below when the log is replaced
    fh.seek(0, 2)
    try:
        while True:
            chunk = fh.readline()
            if chunk:
                sys.stdout.write(chunk.decode("utf-8", "replace"))
                sys.stdout.flush()
                continue
            try:
                now, ours = path.stat(), os.fstat(fh.fileno())
            except FileNotFoundError:  # between the move and the new server's first write
                time.sleep(0.2)
                continue
            if (now.st_dev, now.st_ino) != (ours.st_dev, ours.st_ino):
                try:
                    new = open(path, "rb")  # noqa: SIM115
                except FileNotFoundError:  # moved again meanwhile: look again
                    continue
                sys.stdout.write(fh.read().decode("utf-8", "replace"))  # the old log's last lines, if any came
                fh.close()
                fh = new
            elif ours.st_size < fh.tell():  # emptied in place (the watchdog's trim): on from its new start
                fh.seek(0)
            else:
                time.sleep(0.2)
    except KeyboardInterrupt:
        return
    finally:
        fh.close()


def doctor() -> None:
    """Check Java, package clients, disk and ports; print the exact fix for each problem."""
    _doctor()


@cli_errors
def _doctor() -> None:
    from tradesim.stack import registry
    from tradesim.stack.doctor import run_checks

    settings = load_settings()
    checks = run_checks(settings, registry.build(settings))
    table = Table(title="tradesim doctor")
    for col in ("check", "ok", "detail", "fix"):
        table.add_column(col)
    for c in checks:
        table.add_row(c.name, Text("ok", style="green") if c.ok else Text("problem", style="red"), c.detail, c.fix)
    out.print(table)
    if not all(c.ok for c in checks):
        raise typer.Exit(1)


def provision(only: Only = None) -> None:
    """Install and build what a native `up` would start (packages, jars, venvs, Jaeger, Toxiproxy) without starting
    it: warms a machine ahead of `up`, not beside a running stack (only Jaeger's build is shared with an `up`)."""
    _provision(only)


@cli_errors
def _provision(only: str | None) -> None:
    from tradesim.stack import registry

    progress = _LineProgress()
    for comp in registry.build(load_settings(), only_names(only)):
        skip = "external" if comp.external else comp.not_requested()
        if skip is not None:
            progress(comp.name, f"skipped ({skip})")
            continue
        progress(comp.name, "provisioning")
        comp.provision_locked(lambda msg, n=comp.name: progress(n, msg))  # type: ignore[misc]
        progress(comp.name, "provisioned")


def register(app: typer.Typer) -> None:
    for fn in (up, down, status, logs, doctor, provision):
        app.command()(fn)
