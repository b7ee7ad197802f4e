"""The `tradesim` console script. Loading the commands takes a second or two on a slow box: a Ctrl-C, SIGTERM or
SIGHUP meanwhile ends the command as it would later (exit 130, one line), not with a traceback (Ctrl-C) or at once
without a word (the others)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from types import FrameType

#: the exit of a command stopped by Ctrl-C or a termination signal (128 + SIGINT)
INTERRUPTED = 130
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def install(handler: Callable[[int, FrameType | None], None]) -> None:
    """`handler` for Ctrl-C and the termination signals, but those the process was started ignoring: `nohup
    tradesim ...` outlives its terminal, and a background job of a shell ignores Ctrl-C, as asked."""
    for sig in SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, handler)


def _at_once(_signum: int, _frame: FrameType | None) -> None:
    os._exit(INTERRUPTED)


def _early(_signum: int, _frame: FrameType | None) -> None:
    """The first signal stops the loading; any other while that unwinds ends the process at once."""
    install(_at_once)
    raise KeyboardInterrupt


def main() -> None:
    install(_early)
    try:
        from tradesim.cli.app import main as run  # installs the commands' own handlers
    except KeyboardInterrupt:
        with contextlib.suppress(OSError):  # a terminal that hung up takes no more output
            os.write(2, b"interrupted\n")
        os._exit(INTERRUPTED)  # not sys.exit: a signal during the interpreter's shutdown would end it by the signal
    run()
