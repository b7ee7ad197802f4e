"""`tradesim jobs ...`: submit, list and cancel the Flink jobs of tradesim on the session cluster."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from tradesim.cli.errors import cli_errors
from tradesim.settings import Settings, load_settings
from tradesim.stack.errors import StackError, UserError

if TYPE_CHECKING:
    from tradesim.adapters.flink.client import FlinkRest, JobInfo
    from tradesim.stack.flink import Flink

app = typer.Typer(help="Flink jobs on the session cluster: submit, list, cancel.", no_args_is_help=True)
out = Console(highlight=False, soft_wrap=True)


def _flink(settings: Settings) -> Flink:
    from tradesim.stack.flink import Flink

    return Flink(settings)


def _rest(settings: Settings) -> FlinkRest:
    """A REST client of a cluster that answers; UserError (exit 2) when none is up."""
    from tradesim.adapters.flink.errors import FlinkRequestError, FlinkUnavailable

    rest = _flink(settings).rest()
    try:
        rest.overview()
    except (FlinkUnavailable, FlinkRequestError) as exc:
        raise UserError(f"no Flink cluster is up ({exc}); start it with `tradesim up --only kafka,flink`") from None
    return rest


def _running(rest: FlinkRest, flink_name: str) -> list[JobInfo]:
    return [j for j in rest.jobs(with_checkpoints=False) if j.name == flink_name and j.active]


def submit_job(settings: Settings, name: str, parallelism: int | None = None,
               overrides: dict[str, str] | None = None, options: dict[str, str] | None = None) -> tuple[str, bool]:
    """Submit a catalog job unless it already runs; returns (job id, newly submitted)."""
    from tradesim.adapters.flink.client import submit
    from tradesim.adapters.flink.errors import FlinkRequestError
    from tradesim.jobs.catalog import JOBS, job_args

    spec = JOBS.get(name)
    if spec is None:
        raise UserError(f"unknown job {name!r}; known: {', '.join(JOBS)}")
    rest = _rest(settings)
    job_name = (overrides or {}).get("job-name", spec.flink_name)
    already = _running(rest, job_name)
    if already:
        return already[0].id, False
    flink = _flink(settings)
    flink.provision(lambda msg: out.print(f"flink: {msg}", markup=False))  # no-op when the venv and jars exist
    opts = {"python.execution-mode": settings.flink.execution_mode, **(options or {})}
    try:
        job_id = submit(flink.flink_bin, settings.flink.client_rest_url, spec.module,
                        job_args(spec, settings, overrides), python=flink.python, jars=flink.connector_jars,
                        env=flink.client_env(), parallelism=parallelism or settings.flink.parallelism,
                        options=opts)
    except FlinkRequestError as exc:
        raise StackError(str(exc)) from None
    return job_id, True


@app.command("submit")
def submit_cmd(name: Annotated[str, typer.Argument(help="Job name, e.g. bars.")],
               parallelism: Annotated[int | None, typer.Option("--parallelism", "-p", min=1)] = None) -> None:
    """Submit a job (detached); a job that already runs is left alone."""
    _submit(name, parallelism)


@cli_errors
def _submit(name: str, parallelism: int | None) -> None:
    settings = load_settings()
    job_id, new = submit_job(settings, name, parallelism)
    if new:
        out.print(f"submitted {name}: job {job_id}")
    else:
        out.print(f"{name} already runs as job {job_id}; nothing submitted")


def _ago(ms: int | None, now_ms: float) -> str:
    if not ms:
        return "-"
    return f"{(now_ms - ms) / 1000:.0f}s ago"


@app.command("list")
def list_cmd(show_all: Annotated[bool, typer.Option("--all", help="Also finished, cancelled and failed jobs.")]
             = False,
             as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Jobs on the cluster: name, id, state, start time, uptime, last completed checkpoint."""
    _list(show_all, as_json)


@cli_errors
def _list(show_all: bool, as_json: bool = False) -> None:
    from tradesim.jobs.catalog import name_of

    settings = load_settings()
    rest = _rest(settings)
    jobs = [j for j in rest.jobs() if show_all or j.active]
    if as_json:
        rows = [{**dataclasses.asdict(j), "name": name_of(j.name), "flink_name": j.name} for j in jobs]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    now = time.time() * 1000
    table = Table(title=f"Flink jobs at {rest.url}")
    for col in ("name", "id", "state", "started", "uptime", "last checkpoint"):
        table.add_column(col)
    for j in jobs:
        started = datetime.fromtimestamp(j.start_time_ms / 1000, UTC).isoformat(timespec="seconds")
        checkpoint = f"#{j.last_checkpoint_id} {_ago(j.last_checkpoint_ms, now)}" if j.last_checkpoint_id else "-"
        table.add_row(name_of(j.name), j.id, j.state, started, f"{j.duration_ms / 1000:.0f}s", checkpoint)
    out.print(table)
    if not jobs:
        out.print("no jobs" + ("" if show_all else " running (--all shows finished ones)"))


@app.command("cancel")
def cancel_cmd(job: Annotated[str, typer.Argument(help="Job name (e.g. bars) or Flink job id.")],
               savepoint: Annotated[bool, typer.Option("--savepoint", help="Stop with a savepoint first.")]
               = False) -> None:
    """Cancel a running job by name or id (with --savepoint: stop it with a savepoint)."""
    _cancel(job, savepoint)


@cli_errors
def _cancel(job: str, savepoint: bool) -> None:
    from tradesim.adapters.flink.errors import FlinkRequestError
    from tradesim.jobs.catalog import JOBS

    settings = load_settings()
    rest = _rest(settings)
    active = [j for j in rest.jobs(with_checkpoints=False) if j.active]
    flink_name = JOBS[job].flink_name if job in JOBS else None
    targets = [j for j in active if j.id == job or (flink_name and j.name == flink_name)]
    if not targets:
        raise UserError(f"no running job {job!r}; `tradesim jobs list` shows the running ones")
    for target in targets:
        try:
            if savepoint:
                location = rest.stop_with_savepoint(target.id, None)
                out.print(f"stopped {job} ({target.id}) with savepoint {location}")
            else:
                rest.cancel(target.id)
                out.print(f"cancelled {job} ({target.id})")
        except FlinkRequestError as exc:
            raise StackError(str(exc)) from None


def submit_standard_jobs(settings: Settings) -> list[str]:
    """Submit every standard job (for `tradesim up --with-jobs`); returns one line per job."""
    from tradesim.jobs.catalog import JOBS

    lines = []
    for spec in JOBS.values():
        if spec.standard:
            job_id, new = submit_job(settings, spec.name)
            lines.append(f"{'submitted' if new else 'already running'} {spec.name}: job {job_id}")
    return lines
