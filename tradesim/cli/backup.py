"""`tradesim backup DIR` and `tradesim restore DIR` (the steps live in tradesim/stack/backup.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from tradesim.cli.errors import cli_errors
from tradesim.cli.readout import console
from tradesim.settings import Settings, load_settings

out = console()
err = console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("backup")(backup_cmd)
    app.command("restore")(restore_cmd)


Folder = Annotated[Path, typer.Argument(help="The backup folder.", file_okay=False)]


def backup_cmd(folder: Folder) -> None:
    """Copy every store's data into a new folder (Kafka topics with their offsets, DynamoDB tables, a savepoint of
    each job, the search indices, the ClickHouse tables); orders keep being accepted meanwhile."""
    _backup(folder)


def restore_cmd(folder: Folder) -> None:
    """Put a backup back onto an empty stack (`tradesim down --purge && tradesim up` first); the jobs resume from
    their savepoints."""
    _restore(folder)


class _Bars:
    """Steps (tradesim.stack.backup) as rich progress bars; a step of unknown size pulses until it ends. The display
    starts with the first step, so a refusal before any is its one error line (not after an empty one)."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.shown = False

    def start(self, description: str, total: int | None) -> int:
        if not self.shown:
            self.bar.start()
            self.shown = True
        return int(self.bar.add_task(description, total=total))

    def advance(self, task: int, n: int) -> None:
        self.bar.advance(TaskID(task), n)

    def finish(self, task: int) -> None:
        done = next(t.completed for t in self.bar.tasks if t.id == task)
        self.bar.update(TaskID(task), total=max(done, 1), completed=max(done, 1))


@contextmanager
def _bars() -> Iterator[_Bars]:
    columns = (TextColumn("{task.description:<34}", markup=False), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    bars = _Bars(Progress(*columns, console=out, transient=False))
    try:
        yield bars
    finally:
        if bars.shown:
            bars.bar.stop()


def warn_unfinished(settings: Settings) -> None:
    """Say on stderr that a restore or a rebuild stopped half-way on this stack (`up`, `status` and `backup` say
    it)."""
    from tradesim.stack.marks import unfinished_rebuilds, unfinished_restore

    for line in filter(None, [unfinished_restore(settings), *unfinished_rebuilds(settings)]):
        err.print(f"warning: {line}")


@contextmanager
def _said_if_interrupted(what: Callable[[], str]) -> Iterator[None]:
    """Ctrl-C (or a termination signal) part-way may leave a half-written folder or stack: say what to do about
    it (`what`, worded by what is left then) before the CLI's own "interrupted"."""
    try:
        yield
    except KeyboardInterrupt:
        err.print(what())
        raise


@cli_errors
def _backup(folder: Path) -> None:
    from tradesim.stack.backup import MANIFEST, backup, describe, failures

    settings = load_settings()
    warn_unfinished(settings)  # a copy of it holds part of that backup only
    began = time.monotonic()

    def left() -> str:
        try:
            partial = folder.is_dir() and any(folder.iterdir()) and not (folder / MANIFEST).exists()
        except OSError:  # a name the system refuses: nothing could be written there
            partial = False
        return "the folder has no manifest, so it is not a backup; remove it" if partial else "nothing was written"

    with _said_if_interrupted(lambda: f"backup into {folder} interrupted: {left()}"), \
            failures(lambda: f"backup into {folder} ({left()})"), _bars() as steps:
        manifest = backup(settings, folder, steps)
    counts = ", ".join(f"{v} {k}" for k, v in describe(manifest).items())
    out.print(f"backed up into {folder} in {time.monotonic() - began:.1f} s (jobs paused {manifest.jobs_paused_s} s): "
              f"{counts}; recovery point {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(manifest.recovery_point))}")


@cli_errors
def _restore(folder: Path) -> None:
    from tradesim.stack.backup import RestoreProgress, describe, failures, restore
    from tradesim.stack.marks import unfinished_restore

    settings = load_settings()
    began = time.monotonic()
    progress = RestoreProgress()

    def left() -> str:
        if progress.restored:
            return "the backup is restored, but the services it stopped did not start again: `tradesim up` starts them"
        if unfinished_restore(settings) is not None:  # marked once the data is about to change
            return "purge the stack and restore again"
        if progress.cancelled:
            return (f"the stack's data was not changed, but its jobs were cancelled or asked to be "
                    f"({', '.join(progress.cancelled)}): restore again, or start them with `tradesim jobs submit "
                    "NAME`")
        return "the stack was not changed"

    with _said_if_interrupted(lambda: f"restore from {folder} interrupted: {left()}"), \
            failures(lambda: f"restore from {folder} ({left()})"), _bars() as steps:
        manifest = restore(settings, folder, steps, progress)
    counts = ", ".join(f"{v} {k}" for k, v in describe(manifest).items())
    out.print(f"restored {folder} in {time.monotonic() - began:.1f} s: {counts}")
