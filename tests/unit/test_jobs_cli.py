"""`tradesim jobs`: user mistakes exit 2 with one readable line; no cluster needed for these."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradesim.adapters.flink.client import JobInfo
from tradesim.cli.app import app
from tradesim.settings import load_settings
from tradesim.stack.jobs import JOBS, job_args, name_of, running_names, source_groups
from tradesim.testing.net import free_port

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRADESIM_FLINK__REST_PORT", str(free_port()))  # nothing listens there
    monkeypatch.delenv("TRADESIM_FLINK__REST_URL", raising=False)  # which would win over the port


def _one_line(output: str) -> str:
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


def test_unknown_job_name_exits_2() -> None:
    result = runner.invoke(app, ["jobs", "submit", "nosuchjob"])
    assert result.exit_code == 2
    line = _one_line(result.output)
    assert "unknown job 'nosuchjob'" in line
    assert "bars" in line  # names the known jobs


@pytest.mark.parametrize("argv", [["jobs", "submit", "bars"], ["jobs", "list"], ["jobs", "cancel", "bars"]])
def test_no_cluster_exits_2(argv: list[str]) -> None:
    result = runner.invoke(app, argv)
    assert result.exit_code == 2
    assert "no Flink cluster is up" in _one_line(result.output)


def test_bars_args_come_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESIM_KAFKA__PORT", "19999")
    monkeypatch.setenv("TRADESIM_TOPICS__MARKET_BARS", "bars_x")
    args = job_args(JOBS["bars"], load_settings(), {"group-id": "g2"})
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs["--bootstrap"] == "127.0.0.1:19999"
    assert pairs["--bars-topic"] == "bars_x"
    assert pairs["--group-id"] == "g2"
    assert pairs["--job-name"] == "tradesim-bars"
    assert name_of("tradesim-bars") == "bars"


def test_source_groups_of_some_jobs_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADESIM_TOPICS__MARKET_DATA", "md_x")
    s = load_settings()
    every = source_groups(s)
    assert ("tradesim-execution-prices", "md_x") in every
    assert source_groups(s, jobs={"bars"}) == [("tradesim-bars", "md_x")]
    assert source_groups(s, jobs=set()) == []
    assert set(source_groups(s, jobs={"bars", "execution"})) == set(every)


def test_without_a_cluster_the_running_jobs_are_unknown_and_every_group_counts() -> None:
    s = load_settings()  # Flink's REST port is one nothing listens on
    assert running_names(s) is None
    assert source_groups(s, jobs=running_names(s)) == source_groups(s)


def test_fresh_and_a_savepoint_exclude_each_other(tmp_path: Path) -> None:
    result = runner.invoke(app, ["jobs", "submit", "execution", "--fresh", "--from-savepoint", str(tmp_path)])
    assert result.exit_code == 2
    assert "--fresh and --from-savepoint exclude each other" in _one_line(result.output)


def test_fresh_forgets_the_parked_state_even_with_no_cluster_to_submit_to(tmp_path: Path) -> None:
    from tradesim.stack.jobs import parked

    settings = load_settings()
    folder = settings.stack_dir / "flink" / "parked"
    folder.mkdir(parents=True)
    (folder / "parked.json").write_text('{"execution": "file:/sp/1", "bars": "file:/sp/2"}')
    result = runner.invoke(app, ["jobs", "submit", "execution", "--fresh"])
    assert result.exit_code == 2  # no cluster
    assert parked(settings) == {"bars": "file:/sp/2"}
    (folder / "parked.json").write_text("not json")
    assert parked(settings) == {}


class _Cluster:
    """Stands in for a Flink REST client here: only the ids of the jobs the cluster knows."""

    def __init__(self, *ids: str) -> None:
        self.ids = ids

    def jobs(self, with_checkpoints: bool = True) -> list[JobInfo]:
        return [JobInfo(id=i, name="tradesim-execution", state="CANCELED", start_time_ms=0, duration_ms=0)
                for i in self.ids]


def test_a_run_the_cluster_lost_resumes_its_newest_complete_checkpoint() -> None:
    from tradesim.stack.jobs import lost_checkpoint

    settings = load_settings()
    runs_file = settings.stack_dir / "flink" / "runs.json"
    runs_file.parent.mkdir(parents=True)
    runs_file.write_text('{"execution": "run1"}')
    folder = settings.stack_dir / "flink" / "checkpoints" / "run1"
    for name, complete in (("chk-3", True), ("chk-12", True), ("chk-13", False), ("chk-x", True)):
        (folder / name).mkdir(parents=True)
        if complete:
            (folder / name / "_metadata").write_bytes(b"")
    assert lost_checkpoint(settings, _Cluster("other"), "execution") == ("run1", str(folder / "chk-12"))
    assert lost_checkpoint(settings, _Cluster("run1"), "execution") is None  # ended on this cluster: not taken back
    assert lost_checkpoint(settings, _Cluster(), "bars") is None  # no run noted
    runs_file.write_text("not json")
    assert lost_checkpoint(settings, _Cluster(), "execution") is None
