"""`tradesim chaos list|run|clear`: faults between the services and Redis or DynamoDB, through Toxiproxy."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from tradesim.adapters.toxiproxy.client import Toxiproxy, ToxiproxyRefused
from tradesim.cli.errors import cli_errors
from tradesim.cli.readout import console
from tradesim.ports import Unavailable
from tradesim.settings import load_settings
from tradesim.stack.errors import StackError, UserError

app = typer.Typer(help="Inject faults between the services and Redis, DynamoDB or Kafka (needs chaos.enabled).",
                  no_args_is_help=True)
out = console()


def _proxy() -> Toxiproxy:
    settings = load_settings()
    if not settings.chaos.enabled:
        raise UserError("chaos is off: set TRADESIM_CHAOS__ENABLED=true (or [chaos] enabled = true) and run "
                        "`tradesim up`, which starts Toxiproxy and routes the services through it")
    return Toxiproxy(settings.chaos.api_url)


@app.command("list")
@cli_errors
def list_cmd() -> None:
    """The faults `run` knows, and what each proxy has on it now."""
    from tradesim.stack.chaos import FAULTS

    table = Table("fault", "does")
    for fault in FAULTS.values():
        table.add_row(fault.name, fault.description)
    out.print(table)
    tox = _proxy()
    try:
        proxies = tox.proxies()
    except Unavailable as exc:
        raise StackError(f"{exc}; start it with `tradesim up`") from None
    except ToxiproxyRefused as exc:  # another service on chaos.api_port
        raise StackError(f"{exc}: is `chaos.api_port` Toxiproxy's?") from None
    finally:
        tox.close()
    state = Table("proxy", "listen", "upstream", "enabled", "toxics")
    for p in proxies:
        state.add_row(p.name, p.listen, p.upstream, "yes" if p.enabled else Text("no", style="red"),
                      ", ".join(p.toxics) or "-")
    out.print(state)


@app.command("run")
@cli_errors
def run_cmd(name: Annotated[str, typer.Argument(help="A fault from `tradesim chaos list`, e.g. dynamodb-down.")],
            seconds: Annotated[float, typer.Option(help="How long the fault lasts.", min=0.1, max=3600)] = 10.0,
            ) -> None:
    """Inject one fault for a while, then remove it (also on Ctrl-C)."""
    from tradesim.stack.chaos import FAULTS

    fault = FAULTS.get(name)
    if fault is None:
        raise UserError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
    settings = load_settings()
    external = {"redis": settings.redis.url is not None, "dynamodb": settings.dynamodb.external,
                "kafka": settings.kafka.bootstrap_servers is not None}
    if external[fault.target]:
        raise UserError(f"{fault.target} is an external endpoint: it is never proxied, so {name} would change nothing")
    tox = _proxy()
    try:
        try:
            fault.apply(tox)
        except KeyboardInterrupt:  # the request may have reached Toxiproxy: no fault stays behind this run
            fault.remove(tox)
            raise
        try:  # from here whatever ends the run (a reader gone, a signal) removes the fault
            out.print(f"{fault.name}: {fault.description}, for {seconds:g} s")
            time.sleep(seconds)  # the fault's duration is the point, nothing to await
        except KeyboardInterrupt:
            out.print("interrupted")
        finally:
            removed = fault.remove(tox)
        out.print(f"{fault.name}: removed" if removed else f"{fault.name}: removed already (`tradesim chaos clear`?)")
    except Unavailable as exc:
        raise StackError(f"{exc}; start it with `tradesim up`") from None
    except ToxiproxyRefused as exc:
        raise UserError(f"{exc} (`tradesim chaos clear` removes every fault)") from None
    finally:
        tox.close()


@app.command("clear")
@cli_errors
def clear_cmd() -> None:
    """Remove every fault: all proxies enabled, no toxics."""
    tox = _proxy()
    try:
        tox.reset()
    except Unavailable as exc:
        raise StackError(f"{exc}; start it with `tradesim up`") from None
    except ToxiproxyRefused as exc:
        raise StackError(f"{exc}: is `chaos.api_port` Toxiproxy's?") from None
    finally:
        tox.close()
    out.print("no faults")
