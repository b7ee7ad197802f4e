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


@app.command("marketdata")
def marketdata(ticks: Annotated[int, typer.Option(min=1000)] = 200_000,
               symbols: Annotated[int, typer.Option(min=1)] = 50,
               clients: Annotated[int, typer.Option(min=1)] = 1000,
               burst: Annotated[int, typer.Option(min=10)] = 2000,
               rate: Annotated[float, typer.Option(min=1)] = 20.0,
               seconds: Annotated[float, typer.Option(min=1)] = 10.0) -> None:
    """Ingest → Redis ticks/s, and WebSocket fan-out vs a bare websockets broadcast (needs `tradesim up`)."""
    _marketdata(ticks, symbols, clients, burst, rate, seconds)


@cli_errors
def _marketdata(ticks: int, symbols: int, clients: int, burst: int, rate: float, seconds: float) -> None:
    from benchmarks import marketdata as bench_md

    settings = load_settings()
    lines: list[str] = []
    bench_md.run(settings, ticks, symbols, clients, burst, rate, seconds, lines)
    out.print(f"command: tradesim bench marketdata --ticks {ticks} --symbols {symbols} --clients {clients} "
              f"--burst {burst} --rate {rate:g} --seconds {seconds:g}")
    for line in lines:
        out.print("  " + line, markup=False)
