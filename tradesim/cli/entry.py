"""The `tradesim` console script. Loading the commands takes a second or two on a slow box: a Ctrl-C, SIGTERM or
SIGHUP meanwhile ends the command as it would later (exit 130, one line), not with a traceback (Ctrl-C) or at once
without a word (the others)."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

#: 128 + SIGINT, as `tradesim.cli.app` exits on a signal
INTERRUPTED = 130


def _early(_signum: int, _frame: FrameType | None) -> None:
    """The first signal stops the loading; another one while that unwinds ends the process at once."""
    signal.signal(_signum, lambda *_: os._exit(INTERRUPTED))
    raise KeyboardInterrupt


def main() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # as asked by `nohup` or a shell's background job
            signal.signal(sig, _early)
    try:
        from tradesim.cli.app import main as run  # installs the command's own handlers
    except KeyboardInterrupt:
        os.write(2, b"interrupted\n")
        sys.exit(INTERRUPTED)
    run()
