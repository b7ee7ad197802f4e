"""`tradesim jobs`: user mistakes exit 2 with one readable line; no cluster needed for these."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradesim.adapters.flink.client import JobInfo
from tradesim.cli.app import app
from tradesim.domain.events import OrderPlaced
from tradesim.settings import Settings, load_settings
from tradesim.stack.jobs import JOBS, job_args, name_of, running_names, source_groups
from tradesim.stack.state import StateFile
from tradesim.testing.net import free_port

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRADESIM_FLINK__REST_PORT", str(free_port()))  # nothing listens there
    monkeypatch.delenv("TRADESIM_FLINK__REST_URL", raising=False)  # which would win over the port
    StateFile(load_settings().stack_dir).claim()  # the stack's folder, as `up` leaves it


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
def test_no_cluster_exits_1(argv: list[str]) -> None:
    result = runner.invoke(app, argv)
    assert result.exit_code == 1  # a server that is down: the environment, not the user's input
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


def test_a_folder_that_is_not_a_savepoint_is_one_line_before_flink_is_asked(tmp_path: Path) -> None:
    """A probe: `--from-savepoint /etc` (or a savepoint's parent folder) ended in Flink's Java trace, exit 1; with
    the job running it said "already runs" and exit 0."""
    result = runner.invoke(app, ["jobs", "submit", "execution", "--from-savepoint", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert _one_line(result.output) == f"error: {tmp_path} is not a savepoint (it has no _metadata file)"
    (tmp_path / "savepoint-1a2b").mkdir()
    (tmp_path / "savepoint-1a2b" / "_metadata").write_bytes(b"")
    result = runner.invoke(app, ["jobs", "submit", "execution", "--from-savepoint", str(tmp_path)])
    assert _one_line(result.output).endswith(f"; the one in it is {tmp_path / 'savepoint-1a2b'}")


def test_fresh_forgets_the_parked_state_even_with_no_cluster_to_submit_to(tmp_path: Path) -> None:
    from tradesim.stack.jobs import parked

    settings = load_settings()
    folder = settings.stack_dir / "flink" / "parked"
    folder.mkdir(parents=True)
    (folder / "parked.json").write_text('{"execution": "file:/sp/1", "bars": "file:/sp/2"}')
    result = runner.invoke(app, ["jobs", "submit", "execution", "--fresh"])
    assert result.exit_code == 1  # no cluster
    assert parked(settings) == {"bars": "file:/sp/2"}
    (folder / "parked.json").write_text("not json")
    assert parked(settings) == {}


@pytest.mark.parametrize("name", ["nosuchjob", "execution"])
def test_fresh_before_the_first_up_leaves_a_folder_up_takes(name: str, monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    """A review found `jobs submit nosuchjob --fresh` on a new home writing the jobs' note locks into the stack
    folder before the name was checked, after which `up` refused the folder as not its own."""
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "new"))
    settings = load_settings()
    result = runner.invoke(app, ["jobs", "submit", name, "--fresh"])
    assert result.exit_code == (2 if name == "nosuchjob" else 1), result.output  # 1: no cluster
    assert settings.stack_dir.exists() == (name != "nosuchjob")
    StateFile(settings.stack_dir).claim()  # as `up` does first; raised UserError


def test_fresh_on_a_folder_holding_something_else_writes_nothing_there(monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path) -> None:
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "new"))
    settings = load_settings()
    settings.stack_dir.mkdir(parents=True)
    (settings.stack_dir / "mine.txt").write_text("the user's")
    result = runner.invoke(app, ["jobs", "submit", "execution", "--fresh"])
    assert result.exit_code == 2, result.output
    assert "did not make" in _one_line(result.output)
    assert sorted(p.name for p in settings.stack_dir.iterdir()) in (["mine.txt"], [".lock", "mine.txt"])


def test_a_home_whose_stack_is_a_file_is_named_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A probe: such a home gave `[Errno 17] File exists` with exit 1 (`up`, and a backup, whose jobs then stayed
    stopped)."""
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "odd"))
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "stack").write_text("not a folder")
    result = runner.invoke(app, ["jobs", "submit", "execution", "--fresh"])
    assert result.exit_code == 2, result.output
    assert "stack is not a folder, so it cannot be the stack's" in _one_line(result.output)


class _Cluster:
    """Stands in for a Flink REST client here: only the ids of the jobs the cluster knows."""

    def __init__(self, *ids: str) -> None:
        self.ids = ids

    def jobs(self, with_checkpoints: bool = True) -> list[JobInfo]:
        return [JobInfo(id=i, name="tradesim-execution", state="CANCELED", start_time_ms=0, duration_ms=0)
                for i in self.ids]


def _noted(settings: Settings, **notes: dict[str, object]) -> None:
    path = settings.stack_dir / "flink" / "runs.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notes))


def test_a_run_the_cluster_lost_resumes_its_newest_complete_checkpoint() -> None:
    from tradesim.stack.jobs import lost_checkpoint

    settings = load_settings()
    _noted(settings, execution={"run": "run1"})  # a cluster tradesim did not start: unlisted counts as lost
    folder = settings.stack_dir / "flink" / "checkpoints" / "run1"
    for name, complete in (("chk-3", True), ("chk-12", True), ("chk-13", False), ("chk-x", True)):
        (folder / name).mkdir(parents=True)
        if complete:
            (folder / name / "_metadata").write_bytes(b"")
    assert lost_checkpoint(settings, _Cluster("other"), "execution") == ("run1", str(folder / "chk-12"))
    assert lost_checkpoint(settings, _Cluster("run1"), "execution") is None  # ended on this cluster: not taken back
    assert lost_checkpoint(settings, _Cluster(), "bars") is None  # no run noted
    (settings.stack_dir / "flink" / "runs.json").write_text("not json")
    assert lost_checkpoint(settings, _Cluster(), "execution") is None


def test_a_run_lost_before_its_first_checkpoint_resumes_the_state_it_had_resumed(tmp_path: Path) -> None:
    from tradesim.stack.jobs import lost_checkpoint

    settings = load_settings()
    earlier = tmp_path / "savepoint-1"
    earlier.mkdir()
    _noted(settings, execution={"run": "run2", "resumed": f"file:{earlier}"})
    assert lost_checkpoint(settings, _Cluster(), "execution") is None  # that state is gone too: nothing to resume
    (earlier / "_metadata").write_bytes(b"")
    assert lost_checkpoint(settings, _Cluster(), "execution") == ("run2", f"file:{earlier}")


def test_a_run_is_lost_only_when_another_cluster_instance_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from tradesim.stack import jobs

    settings = load_settings()
    (settings.stack_dir / "flink" / "checkpoints" / "run3" / "chk-1").mkdir(parents=True)
    (settings.stack_dir / "flink" / "checkpoints" / "run3" / "chk-1" / "_metadata").write_bytes(b"")
    _noted(settings, execution={"run": "run3", "cluster": "100:5"})
    monkeypatch.setattr(jobs, "_cluster_instance", lambda _s: "100:5")
    # the same JobManager no longer lists it (a finished job expires from its listing): it ended there
    assert jobs.lost_checkpoint(settings, _Cluster(), "execution") is None
    monkeypatch.setattr(jobs, "_cluster_instance", lambda _s: "200:9")  # a new one: the run died with the old
    assert jobs.lost_checkpoint(settings, _Cluster(), "execution") is not None


def test_fresh_forgets_a_lost_run_too_even_with_no_cluster_to_submit_to() -> None:
    from tradesim.stack.jobs import runs

    settings = load_settings()
    _noted(settings, execution={"run": "run4"}, bars={"run": "run5"})
    result = runner.invoke(app, ["jobs", "submit", "execution", "--fresh"])
    assert result.exit_code == 1  # no cluster
    assert set(runs(settings)) == {"bars"}


def test_a_hand_edited_run_note_of_the_wrong_types_is_no_note() -> None:
    """A probe: `{"run": "abc", "resumed": 5}` in runs.json gave a traceback after every `up`."""
    from tradesim.stack.jobs import runs

    settings = load_settings()
    _noted(settings, execution={"run": "abc", "resumed": 5}, bars={"run": 7}, passthrough={"run": "p1"})
    assert set(runs(settings)) == {"passthrough"}


def test_notes_changed_by_many_writers_at_once_keep_every_change() -> None:
    from concurrent.futures import ThreadPoolExecutor

    from tradesim.stack.jobs import RunNote, _note_run, runs

    settings = load_settings()
    names = [f"job{i}" for i in range(40)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: _note_run(settings, n, RunNote(n + "-run")), names))
    assert {n: note.run for n, note in runs(settings).items()} == {n: n + "-run" for n in names}


def test_only_the_standard_jobs_runs_are_taken_back() -> None:
    from tradesim.stack.jobs import lost_checkpoint

    settings = load_settings()
    (settings.stack_dir / "flink" / "checkpoints" / "run6" / "chk-1").mkdir(parents=True)
    (settings.stack_dir / "flink" / "checkpoints" / "run6" / "chk-1" / "_metadata").write_bytes(b"")
    _noted(settings, passthrough={"run": "run6"})  # a benchmark baseline noted by an older version
    assert lost_checkpoint(settings, _Cluster(), "passthrough") is None


def test_retained_checkpoints_of_ended_runs_are_bounded_and_resumable_ones_kept(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from tradesim.adapters.flink.errors import FlinkUnavailable
    from tradesim.stack.jobs import prune_checkpoints

    monkeypatch.setenv("TRADESIM_FLINK__ENDED_RUNS_KEPT", "2")
    settings = load_settings()
    root = settings.stack_dir / "flink" / "checkpoints"
    names = ["live", "noted", "source", "picked", "restored", *(f"ended{i}" for i in range(6))]
    for age, name in enumerate(names):  # "live" oldest, "ended5" newest
        (root / name / "chk-1").mkdir(parents=True)
        os.utime(root / name, (1_000_000 + age, 1_000_000 + age))
    _noted(settings, execution={"run": "noted", "resumed": f"file:{root / 'source' / 'chk-1'}"})

    class Live(_Cluster):
        def jobs(self, with_checkpoints: bool = True) -> list[JobInfo]:
            return [JobInfo(id="live", name="tradesim-bars", state="RUNNING", start_time_ms=0, duration_ms=0),
                    *super().jobs(with_checkpoints)]

        def restored_from(self, job_id: str) -> str | None:
            return f"file:{root / 'restored' / 'chk-1'}" if job_id == "live" else None

    class Gone:
        def jobs(self, with_checkpoints: bool = True) -> list[JobInfo]:
            raise FlinkUnavailable("no answer")

    assert prune_checkpoints(settings, Gone()) == []  # type: ignore[arg-type]  # no telling what still writes
    assert len(list(root.iterdir())) == len(names)
    # "picked": the state this submit restores (`--from-savepoint`), not noted yet; "restored": what "live" restored
    removed = prune_checkpoints(settings, Live("ended0", "ended5"),  # type: ignore[arg-type]
                                restoring=str(root / "picked" / "chk-1"))
    assert sorted(removed) == ["ended0", "ended1", "ended2", "ended3"]
    assert sorted(p.name for p in root.iterdir()) == ["ended4", "ended5", "live", "noted", "picked", "restored",
                                                      "source"]
    assert prune_checkpoints(settings, Live()) == ["picked"]  # type: ignore[arg-type]  # an old ended run now


def test_pruning_removes_nothing_while_it_cannot_tell_what_a_restore_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A job other than the one just submitted still starting, a run notes file that does not parse: nothing goes.
    A restore in flight in another process, named by its run folder or its `_metadata` file, keeps that run."""
    import os

    from tradesim.stack.jobs import _restoring_notes, prune_checkpoints

    monkeypatch.setenv("TRADESIM_FLINK__ENDED_RUNS_KEPT", "0")
    settings = load_settings()
    root = settings.stack_dir / "flink" / "checkpoints"
    for age, name in enumerate(["old", "folder", "metadata", "mine"]):
        (root / name / "chk-1").mkdir(parents=True)
        os.utime(root / name, (1_000_000 + age, 1_000_000 + age))

    class Starting(_Cluster):
        def __init__(self, state: str, job_id: str) -> None:
            super().__init__()
            self.state, self.job_id = state, job_id

        def jobs(self, with_checkpoints: bool = True) -> list[JobInfo]:
            return [JobInfo(id=self.job_id, name="tradesim-bars", state=self.state, start_time_ms=0, duration_ms=0)]

        def restored_from(self, job_id: str) -> str | None:
            return None

    for state in ("INITIALIZING", "CREATED", "RESTARTING"):
        assert prune_checkpoints(settings, Starting(state, "other")) == []  # type: ignore[arg-type]
    assert len(list(root.iterdir())) == 4
    (settings.stack_dir / "flink" / "runs.json").write_text("{not json")
    assert prune_checkpoints(settings, Starting("RUNNING", "other")) == []  # type: ignore[arg-type]
    (settings.stack_dir / "flink" / "runs.json").unlink()
    (settings.stack_dir / "flink" / "restoring.json").write_text("[")
    assert prune_checkpoints(settings, Starting("RUNNING", "other")) == []  # type: ignore[arg-type]
    (settings.stack_dir / "flink" / "restoring.json").unlink()
    with _restoring_notes(settings).changing() as entries:  # two submits of other processes, not listed yet
        entries.update(bars=str(root / "folder"), execution=f"file:{root / 'metadata' / 'chk-1' / '_metadata'}")
    # the submit that just started "mine" may prune while its job initializes: what it restores is `restoring`
    removed = prune_checkpoints(settings, Starting("INITIALIZING", "mine"),  # type: ignore[arg-type]
                                submitted="mine")
    assert removed == ["old"]
    assert sorted(p.name for p in root.iterdir()) == ["folder", "metadata", "mine"]


class _Slots:
    def __init__(self, free: int, total: int) -> None:
        self.answer = {"slots-available": free, "slots-total": total}

    def overview(self) -> dict[str, int]:
        return self.answer


@pytest.mark.parametrize(("parallelism", "free", "said"), [
    (100_000, 4, "refused"), (5, 4, "refused"), (3, 2, "warned"), (2, 2, "")])
def test_a_parallelism_the_slots_cannot_hold_is_refused_and_one_they_cannot_hold_now_warned(
        parallelism: int, free: int, said: str) -> None:
    """A probe: `-p 100000` ended in a page of Java, `-p 3` with two free slots restarted silently."""
    from tradesim.stack.errors import UserError
    from tradesim.stack.jobs import _check_slots

    told: list[str] = []
    if said == "refused":
        with pytest.raises(UserError, match=f"--parallelism {parallelism} needs as many task slots; the cluster "
                                            "has 4"):
            _check_slots(_Slots(free, 4), parallelism, told.append)  # type: ignore[arg-type]
    else:
        _check_slots(_Slots(free, 4), parallelism, told.append)  # type: ignore[arg-type]
    assert bool(told) == (said == "warned")


def test_standard_jobs_provision_flink_once_and_report_no_wait_for_each_other(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`up --with-jobs` printed "waiting for another provisioning of flink to finish" with no other provisioning
    anywhere: its two job submits, side by side, each took Flink's provisioning lock after `up` had provisioned."""
    from tradesim.stack import jobs
    from tradesim.stack.flink import Flink

    provisions: list[str] = []
    monkeypatch.setattr(Flink, "provision_locked", lambda self, report: provisions.append("flink"))
    monkeypatch.setattr(jobs, "cluster", lambda settings: object())
    monkeypatch.setattr(jobs, "running", lambda rest, name: [])

    class Reached(Exception):
        """The submit went past provisioning (to the parked state): far enough for this test."""

    def parked(settings: Settings) -> dict[str, str]:
        raise Reached

    monkeypatch.setattr(jobs, "parked", parked)
    with pytest.raises(Reached):
        jobs.submit_standard_jobs(load_settings())
    assert provisions == ["flink"]


def test_a_standard_job_running_twice_is_named_with_its_ids() -> None:
    """A probe: an orphaned `flink run` client started a second execution job; `jobs list` showed both without a
    word, and a backup stopped one while the other went on deciding orders."""
    from tradesim.stack.jobs import doubled

    def job(job_id: str, name: str, state: str = "RUNNING") -> JobInfo:
        return JobInfo(id=job_id, name=name, state=state, start_time_ms=0, duration_ms=0)

    assert doubled([job("a", "tradesim-execution"), job("b", "tradesim-execution"), job("c", "tradesim-bars"),
                    job("d", "tradesim-bars", "CANCELED"), job("e", "tradesim-passthrough"),
                    job("f", "tradesim-passthrough")]) == {"execution": ["a", "b"]}


def test_a_plain_submit_of_a_job_that_runs_already_forgets_a_parked_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: a parked note left while the job ran (a backup's resume done by another submit, an orphaned
    client) made a later resume after a crash roll the job back to the parked state."""
    from tradesim.stack import jobs

    settings = load_settings()
    running = JobInfo(id="j1", name=JOBS["execution"].flink_name, state="RUNNING", start_time_ms=0, duration_ms=0)
    monkeypatch.setattr(jobs, "cluster", lambda settings: object())
    monkeypatch.setattr(jobs, "running", lambda rest, name: [running])
    jobs.note_parked(settings, "execution", "file:/backups/b1/flink/execution/savepoint-1")
    jobs.note_parked(settings, "bars", "file:/backups/b1/flink/bars/savepoint-2")
    said: list[str] = []
    assert jobs.submit_job(settings, "execution", progress=said.append) == ("j1", False)
    assert jobs.parked(settings) == {"bars": "file:/backups/b1/flink/bars/savepoint-2"}
    assert said == ["execution runs already (job j1): the state parked at file:/backups/b1/flink/execution/"
                    "savepoint-1 is not its state any more, and is forgotten"]
    assert jobs.submit_job(settings, "execution", overrides={"job-name": "x"}, progress=said.append)[1] is False
    assert jobs.parked(settings) == {"bars": "file:/backups/b1/flink/bars/savepoint-2"}  # another's name: kept
    assert jobs._unpark_if(settings, "bars", "file:/elsewhere") is None  # parked anew meanwhile: not this one's
    assert jobs._unpark_if(settings, "bars", "file:/backups/b1/flink/bars/savepoint-2") is not None
    assert jobs.parked(settings) == {}


@pytest.mark.parametrize(("name", "how", "sent"), [
    ("execution", "plain", True),  # nothing parked, no lost run: a start without state
    ("execution", "fresh", True),
    ("execution", "parked", False),
    ("execution", "parked but gone", True),
    ("execution", "lost run", False),
    ("execution", "from a savepoint", False),
    ("execution", "other name", False),  # not the standard job's run: not its books
    ("bars", "plain", False),  # holds no orders
])
def test_only_a_start_of_the_execution_job_without_state_cancels_the_orders_earlier_books_held(
        name: str, how: str, sent: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A run that restores nothing has empty books: the orders an earlier run held there showed open for ever.
    Such a start sends them cancels (which the run ignores for orders it holds); one that restores state must not
    (its books hold them)."""
    from tradesim.stack import jobs
    from tradesim.stack.flink import Flink

    settings = load_settings()
    monkeypatch.setattr(Flink, "provision_locked", lambda self, report: None)
    monkeypatch.setattr(jobs, "cluster", lambda settings: object())
    monkeypatch.setattr(jobs, "running", lambda rest, name: [])
    monkeypatch.setattr(jobs, "_kafka_route", lambda settings, progress: settings)
    monkeypatch.setattr(jobs, "_with_start_offsets", lambda spec, settings, args: args)
    monkeypatch.setattr(jobs, "_await_resumed", lambda *args: True)
    monkeypatch.setattr(jobs, "prune_checkpoints", lambda *args, **kwargs: None)
    monkeypatch.setattr(jobs, "lost_checkpoint",
                        lambda s, rest, n: ("run-0", str(tmp_path / "chk-1")) if how == "lost run" else None)
    held = [OrderPlaced(order_id=f"o{i}", user_id="u", symbol="AAA", side="buy", qty=1, order_type="limit",
                        limit_price=Decimal(1), time_in_force="gtc", placed_at_ms=1) for i in range(3)]
    read: list[str] = []
    monkeypatch.setattr(jobs, "orders_in_books", lambda s: read.append("read") or held)
    calls: list[list[OrderPlaced]] = []
    monkeypatch.setattr(jobs, "cancel_lost_orders", lambda s, orders: calls.append(orders))
    started: list[str] = []
    monkeypatch.setattr(jobs, "_start", lambda *args: started.append("job-1") or "job-1")
    savepoint = tmp_path / "savepoint-1"
    savepoint.mkdir()
    if how != "parked but gone":
        (savepoint / "_metadata").write_bytes(b"")
    if how.startswith("parked"):
        jobs.note_parked(settings, name, f"file:{savepoint}")
    said: list[str] = []
    jobs.submit_job(settings, name, progress=said.append, fresh=how == "fresh",
                    options={jobs.RECOVERY: f"file:{savepoint}"} if how == "from a savepoint" else None,
                    overrides={"job-name": "mine"} if how == "other name" else None)
    assert calls == ([held] if sent else [])
    assert read == (["read"] if sent else [])  # read before the start: the new run's own orders are not among them
    assert started == ["job-1"]
    assert any("3 orders an earlier run held in its books are cancelled" in line for line in said) == sent


def test_cancels_a_start_could_not_send_are_named_and_the_start_stands(monkeypatch: pytest.MonkeyPatch) -> None:
    from tradesim.stack import jobs
    from tradesim.stack.errors import StackError

    def refused(settings: Settings, orders: list[OrderPlaced]) -> None:
        raise StackError("Kafka did not answer")

    monkeypatch.setattr(jobs, "cancel_lost_orders", refused)
    said: list[str] = []
    one = OrderPlaced(order_id="o1", user_id="u", symbol="AAA", side="buy", qty=1, order_type="market",
                      placed_at_ms=1)
    jobs._cancel_lost_orders(load_settings(), "execution", [], said.append)  # nothing to send: nothing said
    jobs._cancel_lost_orders(load_settings(), "execution", [one], said.append)
    jobs._cancel_lost_orders(load_settings(), "execution", StackError("DynamoDB did not answer"), said.append)
    assert said == [f"execution started without state, and the orders an earlier run held in its books could not be "
                    f"cancelled ({why} did not answer): `tradesim jobs cancel-lost` sends their cancels again"
                    for why in ("Kafka", "DynamoDB")]


def test_two_runs_of_one_job_are_warned_in_words_not_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: the only warning of an execution job running twice printed `[yellow]warning:[/yellow]` (the
    console reads no markup)."""
    import tradesim.cli.jobs as jobs_cli
    from tradesim.adapters.flink.client import JobInfo

    class Cluster:
        url = "http://127.0.0.1:8081"

        def jobs(self) -> list[JobInfo]:
            return [JobInfo(f"j{i}", "tradesim-execution", "RUNNING", 0, 1000) for i in (1, 2)]

    monkeypatch.setattr(jobs_cli, "cluster", lambda _settings: Cluster())
    result = runner.invoke(app, ["jobs", "list"])
    assert result.exit_code == 0, result.output
    assert "warning: 2 execution jobs run" in result.output
    assert "[yellow]" not in result.output
