"""`tradesim bench ...`: benchmarks that print figures (they live in benchmarks/, imported lazily)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from tradesim.cli.errors import cli_errors
from tradesim.settings import load_settings

app = typer.Typer(help="Benchmarks; each prints its figures and the command that produced them.",
                  no_args_is_help=True)
out = Console(highlight=False, soft_wrap=True)


@app.command("up")
def up(only: Annotated[str | None, typer.Option("--only")] = None,
       cold: Annotated[bool, typer.Option("--cold/--warm", help="Cold also empties the caches.")] = True) -> None:
    """Time `up` cold (empty caches) and warm, and report each server's peak RSS. Needs the stack's ports free."""
    _up(only, cold)


@cli_errors
def _up(only: str | None, cold: bool) -> None:
    from benchmarks import stack_up
    from tradesim.stack import registry

    settings = load_settings()
    names = only.split(",") if only else None
    registry.build(settings, names)  # validates names before anything starts
    lines: list[str] = []
    stack_up.run(settings, names, cold, lines)
    out.print(f"command: tradesim bench up{' --only ' + only if only else ''}{'' if cold else ' --warm'}")
    for line in lines:
        out.print("  " + line, markup=False)
