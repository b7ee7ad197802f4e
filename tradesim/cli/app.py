"""Entry point of the `tradesim` command."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from types import FrameType

import typer

from tradesim.cli import (
    accounts,
    analytics,
    backup,
    bench,
    chaos,
    infra,
    jobs,
    market,
    observe,
    orders,
    portfolio,
    rebuild,
    scenarios,
    stack,
    trace,
    trades,
)
from tradesim.cli import run as run_cmd
from tradesim.cli import tui as tui_cmd
from tradesim.cli.entry import INTERRUPTED, install
from tradesim.lifetime import stop_children
from tradesim.text import one_line

app = typer.Typer(
    name="tradesim",
    help="Trading simulator on a real streaming stack (Kafka, Redis, ...). Start with `tradesim up`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stack.register(app)
market.register(app)
orders.register(app)
app.command("portfolio")(portfolio.portfolio)
app.command("trades")(trades.trades)
rebuild.register(app)
backup.register(app)
observe.register(app)
trace.register(app)
tui_cmd.register(app)
run_cmd.register(app)
app.add_typer(accounts.app, name="accounts")
app.add_typer(analytics.app, name="analytics")
app.add_typer(bench.app, name="bench")
app.add_typer(chaos.app, name="chaos")
app.add_typer(infra.app, name="infra")
app.add_typer(jobs.app, name="jobs")
app.add_typer(scenarios.app, name="scenarios")


#: an option name click made of a negative number (`-1`, `-2.5` gives `-2`)
_NUMBER = re.compile(r"-[0-9.]+")


#: a signal this soon after the first is the same request delivered twice (a CI runner signalling the process
#: group, Ctrl-C with a wrapper forwarding it), not a second one
SAME_REQUEST_S = 1.0
_first_signal: float | None = None
_clock, _exit = time.monotonic, os._exit  # names a test replaces


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    """The first Ctrl-C or termination signal ends the command as Ctrl-C does, so its clean-up runs; another one
    later ends the process at once: a clean-up that hangs, or a strategy that swallows the first (`except
    BaseException`), does not keep it running."""
    global _first_signal  # noqa: PLW0603 - one process, one first signal
    now = _clock()
    if _first_signal is None:
        _first_signal = now
        raise KeyboardInterrupt
    if now - _first_signal < SAME_REQUEST_S:
        return
    stopped = stop_children()  # e.g. `flink run` clients resuming jobs: none may submit after this exit
    os.write(2, b"interrupted again: stopped at once, without clean-up" + (
        b" (a job submit under way was stopped: `tradesim jobs list` shows what runs)" if stopped else b"") + b"\n")
    _exit(INTERRUPTED)


def install_signal_handlers() -> None:
    """`_interrupt` for Ctrl-C and the termination signals (`entry.install`: not those the process ignores)."""
    install(_interrupt)


def main() -> None:
    """The `tradesim` command. A mistake typer itself catches (an unknown option, a value out of range) is one
    `error:` line and exit 2, like the commands' own; librdkafka's connection chatter stays out of the output.
    A termination signal (kill, a closed terminal) ends a command as Ctrl-C does, so its clean-up runs: a backup
    killed mid-way left the jobs stopped, their only savepoints in its unfinished folder."""
    from tradesim.adapters.kafka import LIBRDKAFKA_LOGGER
    from tradesim.cli.errors import err

    logging.getLogger(LIBRDKAFKA_LOGGER).setLevel(logging.CRITICAL)
    install_signal_handlers()
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        err.print("aborted")
        sys.exit(1)
    except typer.TyperException as exc:  # typer's own click: usage errors, bad parameters
        if type(exc).__name__ == "NoArgsIsHelpError":  # `tradesim` alone, or a group without its command:
            sys.exit(exc.exit_code)  # typer printed the help as it raised this
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        message = exc.format_message()
        if type(exc).__name__ == "NoSuchOption" and _NUMBER.fullmatch(getattr(exc, "option_name", "")):
            # `order buy AAPL -1`: click reads a negative number as an option; before: "No such option: -1"
            message = ("a negative number is not accepted here (no option starts with a digit; quantities, prices "
                       "and amounts are positive)")
        err.print(f"error: {one_line(message)}{hint}")
        sys.exit(exc.exit_code)
    # without standalone mode typer returns an exit's code, or the command's value (every command returns None)
    if code == INTERRUPTED:  # typer's answer to Ctrl-C (or a termination signal, see above): say why it stopped
        err.print("interrupted")
    sys.exit(code if isinstance(code, int) else 0)
