"""`tradesim rebuild search|analytics|all`: rebuild read models from `trade_executed` while the live ones serve."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Literal

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from tradesim.cli.errors import cli_errors
from tradesim.cli.readout import console
from tradesim.settings import Settings, load_settings
from tradesim.stack.errors import StackError
from tradesim.text import one_line

out = console()
Which = Literal["search", "analytics", "all"]


def register(app: typer.Typer) -> None:
    app.command("rebuild")(rebuild_cmd)


def rebuild_cmd(which: Annotated[Which, typer.Argument(help="search (OpenSearch), analytics (ClickHouse) or all.")]
                ) -> None:
    """Load fresh copies from the start of trade_executed, then switch to them (the old ones serve meanwhile)."""
    _rebuild(which)


@cli_errors
def _rebuild(which: Which) -> None:
    from tradesim.adapters.clickhouse.errors import ClickHouseRefused
    from tradesim.adapters.search.errors import IndexLayoutError, SearchRequestError
    from tradesim.ports import Unavailable
    from tradesim.services.persistence.rebuild import rebuild
    from tradesim.services.persistence.sinks import rebuildable
    from tradesim.stack.marks import begin_rebuild, finish_rebuild

    settings = load_settings()
    for model in rebuildable(settings, [which] if which != "all" else ["search", "analytics"]):
        columns = (TextColumn(f"{model.name:<9}", markup=False), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=out, transient=False) as bar:
            task = bar.add_task(model.name, total=None)
            try:
                done = rebuild(settings, model, lambda n, total, t=task: bar.update(t, completed=n, total=total),
                               partial(begin_rebuild, settings, model.name))
            except Unavailable as exc:
                raise StackError(f"rebuild of {model.name} stopped: {exc} ({_what_serves(settings, model.name)}; "
                                 "run it again when the server answers)") from None
            except (ClickHouseRefused, SearchRequestError, IndexLayoutError) as exc:
                raise StackError(f"rebuild of {model.name} refused: {one_line(exc)} "
                                 f"({_what_serves(settings, model.name)})") from None
        finish_rebuild(settings, model.name)
        # records, not outcomes: trade_executed is at-least-once, and a repeat is one document again
        out.print(f"{done.name}: {done.written} of {done.read} outcome records written (a repeated outcome "
                  "counts each time)"
                  + (f" ({done.skipped} malformed skipped)" if done.skipped else "") + "; switched")


def _what_serves(settings: Settings, model: str) -> str:
    from tradesim.stack.marks import rebuild_marked

    if not rebuild_marked(settings, model):
        return "the live copy keeps serving, unchanged"
    return (f"{model} may miss outcomes that arrived during the load, if the switch to the fresh copy happened, "
            f"until `tradesim rebuild {model}` finishes")
