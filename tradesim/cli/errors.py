"""Turns expected failures into one readable line and an exit code (2: user mistake, 1: environment)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ParamSpec, TypeVar

import typer
from pydantic import ValidationError

from tradesim.adapters.flink.errors import FlinkRequestError, FlinkUnavailable
from tradesim.adapters.kafka.errors import KafkaDeliveryError, KafkaUnavailable
from tradesim.cli.readout import console, reader_gone
from tradesim.ports import Unavailable
from tradesim.scenarios.errors import ScenarioError
from tradesim.settings import SettingsFileError, config_path, shown_value
from tradesim.stack.errors import StackError, UserError
from tradesim.text import one_line, validation_message, visible

P = ParamSpec("P")
R = TypeVar("R")
err = console(stderr=True)


def settings_error_line(exc: ValidationError) -> str:
    """One line naming the setting, where its value came from (the env var if set, else the config file) and why."""
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    env = "TRADESIM_" + "__".join(str(p).upper() for p in first["loc"])
    # an unknown key's value is not shown: it may be a secret under a misspelt name
    value = None if first.get("type") == "extra_forbidden" else shown_value(first["loc"], first.get("input"))
    # the variable of the setting or of a section holding it (JSON); pydantic-settings reads names in any case
    names = {"TRADESIM_" + "__".join(str(p).upper() for p in first["loc"][:i]) for i in range(1, len(first["loc"]) + 1)}
    given = next((name.upper() for name in os.environ if name.upper() in names), None)
    if given == env:
        source = env if value is None else f"{env}={value}"
    elif given is not None:
        source = f"in {given}" if value is None else f"{value} in {given}"
    elif config_path().is_file():
        source = f"in {config_path()}" if value is None else f"{value} in {config_path()}"
    else:
        source = "given" if value is None else value
    return f"invalid setting {visible(loc)} ({source}): {validation_message(first)}"


def check_output(path: Path | None, option: str) -> None:
    """Refuse an output file that cannot be written, before the work whose result it is to hold (UserError)."""
    if path is None:
        return
    try:
        _check_output(path, option)
    except OSError as exc:  # a name too long, a loop of links: the path the user gave
        raise UserError(f"{option} {path}: {exc.strerror or exc}") from None


def _check_output(path: Path, option: str) -> None:
    folder = path.parent
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder; give a file name")
    if not folder.is_dir():
        raise UserError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"{option} {path}: not writable")


def check_output_folder(path: Path, option: str) -> None:
    """Refuse an output folder that cannot be made or written, before the work whose result it is to hold
    (UserError); nothing is made here."""
    try:
        _check_output_folder(path, option)
    except OSError as exc:  # a name too long, a loop of links: the path the user gave
        raise UserError(f"{option} {path}: {exc.strerror or exc}") from None


def _check_output_folder(path: Path, option: str) -> None:
    if path.exists() and not path.is_dir():
        raise UserError(f"{option} {path} is a file; give a folder")
    if path.is_symlink() and not path.exists():
        raise UserError(f"{option} {path} is a link to nothing; give a folder")
    nearest = next(p for p in (path, *path.parents) if p.exists())
    if not nearest.is_dir():
        raise UserError(f"{option} {path}: {nearest} is a file, not a folder")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise UserError(f"{option} {path}: {nearest} is not writable")


def cli_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Command decorator: UserError, ScenarioError, bad or unreadable settings → exit 2; StackError, a request
    the Flink cluster refused, a store or Kafka that does not answer and a file operation the system refused →
    exit 1; a reader that stopped reading the output → exit 141, quietly; no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ValidationError as exc:
            if exc.title != "Settings":
                raise  # a model tradesim built itself: a bug to see in full, not a setting to fix
            err.print(f"error: {settings_error_line(exc)}")
            raise typer.Exit(2) from None
        except SettingsFileError as exc:
            err.print(f"error: {one_line(exc)}")
            raise typer.Exit(2) from None
        except ScenarioError as exc:
            for problem in exc.problems:  # one `file:line: field: message` line each, like a compiler
                err.print(str(problem))
            raise typer.Exit(2) from None
        except UserError as exc:
            err.print(f"error: {one_line(exc)}")
            raise typer.Exit(2) from None
        except (StackError, FlinkRequestError) as exc:  # may end with a tool's output (`flink run`, compose)
            err.print(f"error: {exc}")
            raise typer.Exit(1) from None
        except (Unavailable, FlinkUnavailable, KafkaUnavailable, KafkaDeliveryError) as exc:  # a server a command
            # needs (the benchmarks reach the stores directly): the stack's problem, one line
            err.print(f"error: {one_line(exc)}")
            raise typer.Exit(1) from None
        except BrokenPipeError:  # the reader went away (`| head`): not an error of the stack's (click said 1)
            reader_gone()
        except OSError as exc:  # the machine refused: a read-only or full folder, a folder where a file should be
            where = f": {exc.filename}" if exc.filename else ""
            err.print(f"error: {exc.strerror or exc}{where}")
            raise typer.Exit(1) from None

    return wrapper


@contextmanager
def said_if_unknown(what: str) -> Iterator[None]:
    """Around a request whose answer must not be lost (an order, a key the API shows once): when its outcome is
    unknown (no answer, a 5xx), or Ctrl-C or a termination signal (KeyboardInterrupt, see `app._interrupt`) came
    while it was on its way, the line says `what` to do about it."""
    from tradesim.client.api import OutcomeUnknown

    try:
        yield
    except OutcomeUnknown as exc:
        raise OutcomeUnknown(f"{exc}; {what}") from None
    except KeyboardInterrupt:  # before the CLI's own "interrupted" (exit 130)
        err.print(f"interrupted before the API answered: the request may have been done; {what}")
        raise
