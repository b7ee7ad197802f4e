"""Turns expected failures into one readable line and an exit code (2: user mistake, 1: environment)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from tradesim.adapters.flink.errors import FlinkRequestError
from tradesim.scenarios.errors import ScenarioError
from tradesim.stack.errors import StackError, UserError

P = ParamSpec("P")
R = TypeVar("R")
err = Console(stderr=True, highlight=False, soft_wrap=True)


def settings_error_line(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    env = "TRADESIM_" + "__".join(str(p).upper() for p in first["loc"])
    value = first.get("input")
    return f"invalid setting {loc} ({env}={value!r}): {first['msg']}"


def cli_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Command decorator: UserError, ScenarioError, bad settings → exit 2; StackError and a request the Flink
    cluster refused → exit 1; no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ValidationError as exc:
            if exc.title != "Settings":
                raise  # a model tradesim built itself: a bug to see in full, not a setting to fix
            err.print(f"error: {settings_error_line(exc)}", markup=False)
            raise typer.Exit(2) from None
        except ScenarioError as exc:
            for problem in exc.problems:  # one `file:line: field: message` line each, like a compiler
                err.print(str(problem), markup=False)
            raise typer.Exit(2) from None
        except UserError as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(2) from None
        except (StackError, FlinkRequestError) as exc:
            err.print(f"error: {exc}", markup=False)
            raise typer.Exit(1) from None

    return wrapper
