"""`tradesim jobs` against the real cluster: submit is idempotent, list and status show the cluster and the job."""

from __future__ import annotations

import json

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
