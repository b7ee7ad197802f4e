"""`tradesim jobs` against the real cluster: submit is idempotent, list and status show the cluster and the job."""

from __future__ import annotations

import json
import threading

import pytest
from typer.testing import CliRunner

from tradesim.cli.app import app
from tradesim.settings import Settings

pytestmark = pytest.mark.integration
runner = CliRunner()


@pytest.fixture(autouse=True)
def _needs_flink(stack_components: list[str]) -> None:
    if "flink" not in stack_components:
        pytest.skip("needs flink in the stack (--stack-only kafka,flink)")


def test_submit_twice_runs_one_job_and_list_shows_it(settings: Settings) -> None:
    first = runner.invoke(app, ["jobs", "submit", "bars"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["jobs", "submit", "bars"])
    assert second.exit_code == 0, second.output
    assert "already runs as job" in second.output
    job_id = second.output.split("already runs as job ")[1].split(";")[0]
    assert job_id in first.output  # the second submission named the first job, no duplicate
    from tradesim.stack.flink import Flink

    running = [j for j in Flink(settings).rest().jobs(with_checkpoints=False)
               if j.name == "tradesim-bars" and j.active]
    assert [j.id for j in running] == [job_id]
    listed = runner.invoke(app, ["jobs", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = [r for r in json.loads(listed.stdout) if r["id"] == job_id]
    assert (row["name"], row["state"]) == ("bars", "RUNNING")
    assert row["start_time_ms"] > 0
    table = runner.invoke(app, ["jobs", "list"])
    assert "bars" in table.output
    assert "RUNNING" in table.output


def test_list_answers_while_a_job_starts(settings: Settings) -> None:
    """For a new job's first moments Flink answers HTTP 500 for its checkpoint statistics (the job master is still
    initializing); the listing shows the job without a checkpoint instead of failing."""
    from tradesim.stack.flink import Flink
    from tradesim.stack.jobs import cancel_job

    rest = Flink(settings).rest()
    for job in rest.jobs(with_checkpoints=False):
        if job.name == "tradesim-bars" and job.active:
            cancel_job(settings, job.id)
    listings: list[list[str]] = []
    errors: list[Exception] = []
    done = threading.Event()

    def list_until_done() -> None:
        while not done.is_set():
            try:
                listings.append([j.id for j in rest.jobs() if j.name == "tradesim-bars" and j.active])
            except Exception as exc:  # noqa: BLE001 - any failure of the listing is what this test looks for
                errors.append(exc)
            done.wait(0.02)

    lister = threading.Thread(target=list_until_done, daemon=True)
    lister.start()
    try:
        submitted = runner.invoke(app, ["jobs", "submit", "bars"])
    finally:
        done.set()
        lister.join(timeout=10)
    assert submitted.exit_code == 0, submitted.output
    assert errors == []
    assert any(ids and ids[0] in submitted.output for ids in listings)  # the lister saw the new job


def test_status_shows_the_cluster() -> None:
    result = runner.invoke(app, ["status", "--json", "--only", "flink"])
    doc = json.loads(result.stdout)
    (row,) = doc["components"]
    assert (row["name"], row["state"], row["healthy"]) == ("flink", "running", True)
    assert row["address"].startswith("http://127.0.0.1:")


def test_cancel_unknown_job_exits_2() -> None:
    result = runner.invoke(app, ["jobs", "cancel", "0" * 32])
    assert result.exit_code == 2
    assert "no running job" in result.output


def test_pruning_keeps_the_checkpoint_a_run_restores_and_bounds_the_ended_ones(settings: Settings) -> None:
    """With no ended run to keep, a submit from an ended run's checkpoint keeps that folder (Flink reports the
    restore with its own spelling of the path), and a later plain submit removes both ended runs' folders."""
    import os
    from pathlib import Path

    from tradesim.adapters.flink.errors import FlinkRequestError
    from tradesim.stack.flink import Flink
    from tradesim.stack.jobs import RECOVERY, cancel_job, running_names, submit_job
    from tradesim.testing.waiting import wait_for

    none_kept = settings.model_copy(update={"flink": settings.flink.model_copy(update={"ended_runs_kept": 0})})
    rest = Flink(settings).rest()
    root = Flink(settings).dir / "checkpoints"

    def checkpointed(job_id: str) -> Path:
        wait_for(lambda: any((d / "_metadata").is_file() for d in (root / job_id).glob("chk-*")), 60,
                 f"a checkpoint of {job_id}", poll_s=0.5)
        return next(d for d in (root / job_id).glob("chk-*") if (d / "_metadata").is_file())

    first, _ = submit_job(none_kept, "bars")
    chk = checkpointed(first)
    cancel_job(settings, first)
    (root / "stale" / "chk-1").mkdir(parents=True)  # an older ended run: this prune must remove it
    os.utime(root / "stale", (1_000_000, 1_000_000))
    second, new = submit_job(none_kept, "bars", options={RECOVERY: str(chk)})
    assert new
    assert not (root / "stale").exists(), "the submit pruned nothing"
    assert chk.is_dir(), "the checkpoint this run restores from was pruned"
    def reported() -> bool:
        try:
            return rest.restored_from(second) is not None
        except FlinkRequestError:
            return False  # no statistics while the job initializes

    wait_for(reported, 60, "Flink to report the restore", poll_s=0.5)
    restored = rest.restored_from(second)
    assert restored is not None
    assert Path(restored.removeprefix("file:")).resolve() == chk.resolve()
    checkpointed(second)
    cancel_job(settings, second)
    third, _ = submit_job(none_kept, "bars")
    try:
        assert not (root / first).exists()
        assert not (root / second).exists()
        assert "bars" in (running_names(settings) or set())
        assert third != second
    finally:
        if "bars" not in (running_names(settings) or set()):
            submit_job(settings, "bars")


def test_a_job_stopped_with_a_savepoint_is_resumed_from_it_by_the_next_plain_submit(settings: Settings) -> None:
    """A probe: `jobs cancel execution --savepoint`, then `jobs submit execution`, started the job without its
    state (Flink: restored null): the resting orders stayed `accepted` for good, and nothing said so."""
    from pathlib import Path

    from tradesim.adapters.flink.errors import FlinkRequestError
    from tradesim.stack.flink import Flink
    from tradesim.stack.jobs import running_names, submit_job
    from tradesim.testing.waiting import wait_for

    submit_job(settings, "bars")
    rest = Flink(settings).rest()
    stopped = runner.invoke(app, ["jobs", "cancel", "bars", "--savepoint"])
    try:
        assert stopped.exit_code == 0, stopped.output
        assert "`tradesim jobs submit bars` resumes it" in stopped.output
        location = stopped.output.split("with savepoint ")[1].split(";")[0]
        submitted = runner.invoke(app, ["jobs", "submit", "bars"])
        assert submitted.exit_code == 0, submitted.output
        job_id = submitted.output.split("submitted bars: job ")[1].split()[0]

        def restored() -> str | None:
            try:
                return rest.restored_from(job_id)
            except FlinkRequestError:
                return None  # no statistics while the job initializes

        wait_for(lambda: restored() is not None, 60, "Flink to report the restore", poll_s=0.5)
        assert Path(str(restored()).removeprefix("file:")).resolve() == Path(location.removeprefix("file:")).resolve()
    finally:
        if "bars" not in (running_names(settings) or set()):
            submit_job(settings, "bars")


def test_a_resumed_submit_asks_for_the_checkpoint_that_confirms_it(settings: Settings,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A resumed submit waits for a completed checkpoint (the tasks loaded their state); it asks for one rather
    than wait up to an interval for the first periodic one. Here the interval is a week (Flink starts the first
    one at a random point within it: within this test's seconds, about once in 10⁵ runs): without the request the
    resume would go unconfirmed and say so, and the confirmation must come from the requested checkpoint's status."""
    from tradesim.adapters.flink.client import FlinkRest
    from tradesim.stack.flink import Flink
    from tradesim.stack.jobs import cancel_job, job_spec, submit_job
    from tradesim.testing.waiting import wait_for

    answers: list[bool | None] = []
    requested = FlinkRest.checkpoint_requested

    def spied(self: FlinkRest, job_id: str, request_id: str) -> bool | None:
        answers.append(requested(self, job_id, request_id))
        return answers[-1]

    monkeypatch.setattr(FlinkRest, "checkpoint_requested", spied)
    weekly = settings.flink.model_copy(update={"checkpoint_interval_ms": 7 * 24 * 3_600_000})
    rare = settings.model_copy(update={"flink": weekly})
    rest = Flink(settings).rest()
    first, _ = submit_job(settings, "bars")
    spec = job_spec("bars")
    lines: list[str] = []
    try:
        cancel_job(settings, first, savepoint=True, park_as="bars")
        job_id, new = submit_job(rare, "bars", progress=lines.append)
        assert new
        assert any(line.startswith("bars resumes from the state parked") for line in lines), lines
        assert not any("has not completed a checkpoint" in line for line in lines), lines
        assert answers[-1:] == [True], answers  # confirmed by the checkpoint it asked for
        # the statistics the REST API caches for a few seconds show it too
        wait_for(lambda: next(j for j in rest.jobs() if j.id == job_id).last_checkpoint_id is not None, 30,
                 "the checkpoint in the job's statistics", poll_s=0.5)
    finally:  # the later tests get bars at the usual interval, with its state if it can be kept
        try:
            for job in [j for j in rest.jobs(with_checkpoints=False) if j.active and j.name == spec.flink_name]:
                try:
                    cancel_job(settings, job.id, savepoint=True, park_as="bars")
                except Exception:  # noqa: BLE001 - the test's own failure is the one to report
                    cancel_job(settings, job.id)
        finally:
            submit_job(settings, "bars")


def test_a_plain_cancel_of_a_job_with_state_says_the_next_submit_starts_without_it(settings: Settings) -> None:
    from tradesim.stack.jobs import running_names, submit_job

    submit_job(settings, "bars")
    try:
        cancelled = runner.invoke(app, ["jobs", "cancel", "bars"])
        assert cancelled.exit_code == 0, cancelled.output
        assert "is not kept: the next `jobs submit bars` starts without it" in " ".join(cancelled.output.split())
    finally:
        if "bars" not in (running_names(settings) or set()):
            submit_job(settings, "bars")
