"""Entry point of the `tradesim` command."""

from __future__ import annotations

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


def main() -> None:
    app()
