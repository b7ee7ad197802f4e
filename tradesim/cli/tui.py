"""`tradesim tui`: the terminal trading app (tradesim/tui)."""

from __future__ import annotations

from typing import Annotated

import typer

from tradesim.cli.errors import cli_errors
from tradesim.cli.readout import user_param


def tui(user: Annotated[str | None, typer.Option(
        "--user", help="Account of the credentials file to trade as; default tui.user, else the active one.")]
        = None) -> None:
    """Trade in a terminal app: watchlist, charts, portfolio, order ticket, open orders, executions."""
    _tui(user)


@cli_errors
def _tui(user: str | None) -> None:
    from tradesim.tui.app import run

    run(None if user is None else user_param(user))


def register(app: typer.Typer) -> None:
    app.command("tui")(tui)
