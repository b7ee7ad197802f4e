"""`tradesim jobs ...`: submit, list and cancel the Flink jobs of tradesim on the session cluster."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tradesim.cli.errors import cli_errors, err
from tradesim.cli.readout import console
from tradesim.settings import load_settings, redacted
from tradesim.stack.errors import UserError
from tradesim.stack.jobs import (
    JOBS,
    RECOVERY,
    cancel_job,
    cancel_lost_orders,
    cluster,
    doubled,
    forget_state,
    name_of,
    orders_in_books,
    parked,
    submit_job,
)

app = typer.Typer(help="Flink jobs on the session cluster: submit, list, cancel.", no_args_is_help=True)
out = console()


def _progress(message: str) -> None:
    out.print(f"flink: {message}")


@app.command("submit")
def submit_cmd(name: Annotated[str, typer.Argument(help="Job name, e.g. bars.")],
               parallelism: Annotated[int | None, typer.Option("--parallelism", "-p", min=1)] = None,
               savepoint: Annotated[Path | None, typer.Option(
                   "--from-savepoint", help="Start from this savepoint folder (e.g. one `jobs cancel --savepoint` "
                   "or `tradesim backup` took).", exists=True, file_okay=False)] = None,
               fresh: Annotated[bool, typer.Option(
                   "--fresh", help="Start without the state of the job's last run (its books are then gone; the "
                   "execution job cancels the orders they held).")] = False) -> None:
    """Submit a job (detached); a job that already runs is left alone. A job that `tradesim down` stopped, or
    whose run the cluster lost (a crash), resumes the state it had then, unless --fresh or --from-savepoint."""
    _submit(name, parallelism, savepoint, fresh)


@cli_errors
def _submit(name: str, parallelism: int | None, savepoint: Path | None = None, fresh: bool = False) -> None:
    settings = load_settings()
    if savepoint and fresh:
        raise UserError("--fresh and --from-savepoint exclude each other")
    if savepoint and not (savepoint / "_metadata").is_file():  # before: Flink's Java trace, exit 1
        inside = sorted(str(p.parent) for p in savepoint.glob("*/_metadata"))
        raise UserError(f"{savepoint} is not a savepoint (it has no _metadata file)"
                        + (f"; the one in it is {inside[0]}" if len(inside) == 1 else ""))
    if fresh:  # even with no cluster to submit to: the user said the state is not wanted
        forget_state(settings, name)
    options = {RECOVERY: str(savepoint.resolve())} if savepoint else None
    job_id, new = submit_job(settings, name, parallelism, options=options, progress=_progress, fresh=fresh)
    if new:
        out.print(f"submitted {name}: job {job_id}")
    else:
        out.print(f"{name} already runs as job {job_id}; nothing submitted")


def _ago(ms: int | None, now_ms: float) -> str:
    if not ms:
        return "-"
    return f"{(now_ms - ms) / 1000:.0f}s ago"


def _started(ms: int) -> str:
    """A job's start time; "-" for none (Flink's -1 before a job starts) or one no calendar holds."""
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds") if ms > 0 else "-"
    except (ValueError, OverflowError, OSError):
        return "-"


@app.command("list")
def list_cmd(show_all: Annotated[bool, typer.Option("--all", help="Also finished, cancelled and failed jobs.")]
             = False,
             as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Jobs on the cluster: name, id, state, start time, uptime, last completed checkpoint."""
    _list(show_all, as_json)


@cli_errors
def _list(show_all: bool, as_json: bool = False) -> None:
    settings = load_settings()
    rest = cluster(settings)
    jobs = [j for j in rest.jobs() if show_all or j.active]
    if as_json:
        rows = [{**dataclasses.asdict(j), "name": name_of(j.name), "flink_name": j.name} for j in jobs]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    now = time.time() * 1000
    table = Table(title=f"Flink jobs at {redacted(rest.url)}")
    for col in ("name", "id", "state", "started", "uptime", "last checkpoint"):
        table.add_column(col)
    for j in jobs:
        started = _started(j.start_time_ms)
        checkpoint = f"#{j.last_checkpoint_id} {_ago(j.last_checkpoint_ms, now)}" if j.last_checkpoint_id else "-"
        uptime = f"{j.duration_ms / 1000:.0f}s" if j.duration_ms >= 0 else "-"
        table.add_row(name_of(j.name), j.id, j.state, started, uptime, checkpoint)
    out.print(table)
    if not jobs:
        out.print("no jobs" + ("" if show_all else " running (--all shows finished ones)"))
    for name, ids in doubled(jobs).items():
        err.print(f"warning: {len(ids)} {name} jobs run: every order is decided by each and every "
                  f"outcome goes out {len(ids)} times; cancel all but one with `tradesim jobs cancel ID`")


@app.command("cancel")
def cancel_cmd(job: Annotated[str, typer.Argument(help="Job name (e.g. bars) or Flink job id.")],
               savepoint: Annotated[bool, typer.Option("--savepoint", help="Stop with a savepoint first.")]
               = False) -> None:
    """Cancel a running job by name or id; with --savepoint, stop it with a savepoint that its next `jobs submit`
    resumes (a standard job: execution, bars)."""
    _cancel(job, savepoint)


@cli_errors
def _cancel(job: str, savepoint: bool) -> None:
    settings = load_settings()
    rest = cluster(settings)
    active = [j for j in rest.jobs(with_checkpoints=False) if j.active]
    flink_name = JOBS[job].flink_name if job in JOBS else None
    targets = [j for j in active if j.id == job or (flink_name and j.name == flink_name)]
    if not targets:
        raise UserError(f"no running job {job!r}; `tradesim jobs list` shows the running ones")
    for target in targets:
        name = name_of(target.name)
        standard = name in JOBS and JOBS[name].standard
        location = cancel_job(settings, target.id, savepoint=savepoint, park_as=name if standard else None)
        if savepoint:
            resumes = (f"; `tradesim jobs submit {name}` resumes it" if parked(settings).get(name) == location
                       else f"; `tradesim jobs submit {name} --from-savepoint DIR` resumes it" if standard else "")
            out.print(f"stopped {job} ({target.id}) with savepoint {location}{resumes}")
        else:
            dropped = (f"; its state (books, resting orders) is not kept: the next `jobs submit {name}` starts "
                       "without it (--savepoint keeps it)") if standard else ""
            out.print(f"cancelled {job} ({target.id}){dropped}")


@app.command("cancel-lost")
def cancel_lost_cmd() -> None:
    """Cancel the orders shown in a book that the execution job does not hold (an earlier run's, lost with its
    state): each gets a cancel the job ignores for an order it holds, so this is safe at any time. A start of the
    job without state does the same by itself."""
    _cancel_lost()


@cli_errors
def _cancel_lost() -> None:
    settings = load_settings()
    orders = orders_in_books(settings)
    if isinstance(orders, Exception):
        raise orders
    cancel_lost_orders(settings, orders)
    shown = "1 order shown in a book" if len(orders) == 1 else f"{len(orders)} orders shown in a book"
    out.print(f"{shown}: each sent a cancel, which the execution job acts on only for an order it does not hold")
