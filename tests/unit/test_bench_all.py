"""`tradesim bench all`'s bookkeeping: the JSON per run, the generated tables, and what it leaves alone."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from benchmarks import all as bench_all
from benchmarks import marketdata
from tradesim.settings import Settings
from tradesim.stack.errors import StackError


def _doc(date: str, commit: str, **benchmarks: Any) -> dict[str, Any]:
    return {"date": date, "commit": commit, "quick": True, "errors": {},
            "probe": {"python_loop_1e7_s": 0.61, "flink_passthrough_records_per_s": 24_647.0},
            "benchmarks": benchmarks, "lines": {}}


def test_every_number_of_a_result_is_a_figure_by_its_path() -> None:
    result = {"150.0": {"p99_ms": 72.5, "cpu_ms_per_order": {"api": 2.2}, "ok": True, "samples": [1, 2]},
              "ratio": float("nan"), "label": "x"}
    assert dict(bench_all.figures(result)) == {"150.0.p99_ms": 72.5, "150.0.cpu_ms_per_order.api": 2.2}


def test_figures_keyed_by_rate_come_in_the_order_of_the_rate(tmp_path: Path) -> None:
    """A review: the file's sorted keys listed the e2e rows as 150, 300, 50."""
    doc = _doc("2026-11-30T10:00:00+00:00", "dddd444",
               e2e={50.0: {"p99_ms": 1.0}, 150.0: {"p99_ms": 2.0}, 300.0: {"p99_ms": 3.0}, "passthrough": 4.0})
    bench_all.write(doc, tmp_path)
    (loaded,) = bench_all.load_all(tmp_path)
    assert [k for k, _ in bench_all.figures(loaded["benchmarks"]["e2e"])] == [
        "50.0.p99_ms", "150.0.p99_ms", "300.0.p99_ms", "passthrough"]


def test_the_runs_line_up_by_probe_and_the_newest_shows_every_figure(tmp_path: Path) -> None:
    old = _doc("2026-11-29T10:00:00+00:00", "aaaa111", e2e={"150.0": {"p99_ms": 90.0}})
    new = _doc("2026-11-30T10:00:00+00:00", "bbbb222", e2e={"150.0": {"p99_ms": 72.5}}, orders={"sat": 1113.4})
    new["errors"] = {"queries": "Unavailable: down"}
    for doc in (new, old):
        bench_all.write(doc, tmp_path)
    docs = bench_all.load_all(tmp_path)
    assert [d["commit"] for d in docs] == ["aaaa111", "bbbb222"]
    text = bench_all.render(docs)
    assert "| 2026-11-29 10:00 | aaaa111 | quick | 0.61 s | 24,647 records/s | none |" in text
    assert "| 2026-11-30 10:00 | bbbb222 | quick | 0.61 s | 24,647 records/s | queries |" in text
    assert "| e2e | 150.0.p99_ms | 72.5 |" in text
    assert "| orders | sat | 1,113 |" in text
    assert "90" not in text.split("Newest run")[1]  # only the newest run's figures


def test_results_md_keeps_its_prose_and_replaces_only_the_generated_part(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\nHand-written: 42 ms.\n")
    bench_all.update_results([_doc("2026-11-29T10:00:00+00:00", "aaaa111", e2e={"p99_ms": 90.0})], results)
    bench_all.update_results([_doc("2026-11-30T10:00:00+00:00", "bbbb222", e2e={"p99_ms": 72.5})], results)
    text = results.read_text()
    assert text.startswith("# Results\n\nHand-written: 42 ms.\n")
    assert text.count(bench_all.BEGIN) == 1
    assert text.count(bench_all.END) == 1
    assert "bbbb222" in text
    assert "aaaa111" not in text


def test_results_keyed_by_rate_are_written(tmp_path: Path) -> None:
    doc = _doc("2026-11-30T10:00:00+00:00", "cccc333", e2e={150.0: {"p99_ms": 72.5}, "passthrough": 41_464.0})
    bench_all.write(doc, tmp_path)
    (loaded,) = bench_all.load_all(tmp_path)
    assert loaded["benchmarks"]["e2e"] == {"150.0": {"p99_ms": 72.5}, "passthrough": 41_464.0}


def test_the_probe_times_a_loop() -> None:
    assert 0 < bench_all.python_probe_s(additions=10_000, repeats=2) < 5


@pytest.mark.parametrize("quick", [True, False])
def test_the_marketdata_plan_names_every_argument_of_the_bench(quick: bool) -> None:
    """So the JSON records how the fleet ran (its processes and rounds), not only the load."""
    arguments = set(inspect.signature(marketdata.run).parameters) - {"settings", "out"}
    assert set(bench_all.Plan(quick).marketdata) == arguments


@pytest.mark.parametrize("markers", [(bench_all.BEGIN,), (bench_all.END,), (bench_all.END, bench_all.BEGIN),
                                     (bench_all.BEGIN, bench_all.END, bench_all.BEGIN, bench_all.END)])
def test_results_md_with_a_marker_edited_away_is_refused_not_cut(tmp_path: Path, markers: tuple[str, ...]) -> None:
    """Before: with the END line gone, the tables were appended again, and the next run replaced everything from the
    first BEGIN on, the prose after it included."""
    from tradesim.stack.errors import UserError

    results = tmp_path / "RESULTS.md"
    original = "# Results\n\n" + "\n\nHand-written: 42 ms.\n\n".join(markers) + "\n\nMore prose.\n"
    results.write_text(original)
    doc = _doc("2026-11-30T10:00:00+00:00", "bbbb222", e2e={"p99_ms": 72.5})
    with pytest.raises(UserError, match="markers"):
        bench_all.update_results([doc], results)
    assert results.read_text() == original
    with pytest.raises(UserError, match="markers"):
        bench_all.check_results(results)  # what `bench all` asks before its run


def test_a_missing_results_md_is_made(tmp_path: Path) -> None:
    """Before: FileNotFoundError after the whole run."""
    results = tmp_path / "RESULTS.md"
    bench_all.update_results([_doc("2026-11-30T10:00:00+00:00", "bbbb222", e2e={"p99_ms": 72.5})], results)
    assert results.read_text().startswith(bench_all.BEGIN)
    assert results.read_text().endswith(bench_all.END + "\n")


def test_other_json_files_in_the_results_folder_are_left_out_with_one_warning(tmp_path: Path) -> None:
    bench_all.write(_doc("2026-11-30T10:00:00+00:00", "aaaa111", e2e={"p99_ms": 72.5}), tmp_path)
    (tmp_path / "soak.json").write_text('{"minutes": [{"p99_ms": 12.0}], "rss_growth": {"api": 0.02}}\n')
    (tmp_path / "list.json").write_text("[1, 2]\n")
    (tmp_path / "half.json").write_text('{"date": "2026-11-')
    assert [d["commit"] for d in bench_all.load_all(tmp_path)] == ["aaaa111"]  # was a KeyError: 'date'
    warnings: list[str] = []
    bench_all.load_all(tmp_path, warn=warnings.append)
    (line,) = warnings
    assert "half.json, list.json, soak.json" in line
    assert "aaaa111" not in line


def test_two_runs_of_one_commit_on_one_day_each_keep_their_file(tmp_path: Path) -> None:
    morning = _doc("2026-11-30T09:05:07+00:00", "aaaa111", e2e={"p99_ms": 90.0})
    evening = _doc("2026-11-30T21:40:00+00:00", "aaaa111", e2e={"p99_ms": 72.5})
    paths = [bench_all.write(doc, tmp_path) for doc in (morning, evening, evening)]
    assert [p.name for p in paths] == ["2026-11-30-090507-aaaa111-quick.json", "2026-11-30-214000-aaaa111-quick.json",
                                       "2026-11-30-214000-aaaa111-quick-2.json"]
    assert [d["date"] for d in bench_all.load_all(tmp_path)] == [morning["date"], evening["date"], evening["date"]]


def test_the_readme_names_the_results_files_as_they_are_written() -> None:
    readme = (Path(bench_all.REPO) / "README.md").read_text()
    assert "`benchmarks/results/<date>-<time>-<commit>[-quick].json`" in readme


class _Stack:
    """A supervisor of a stack of no servers: what is up, and an `up` or a job submission that fails."""

    made: list[_Stack] = []

    def __init__(self, *_args: Any) -> None:
        self.running = False
        _Stack.made.append(self)

    def up(self) -> None:
        self.running = True  # some servers started before the one that fails
        if _Stack.fail_up:
            raise StackError("flink: not healthy within 120 s")

    def down(self) -> None:
        self.running = False

    fail_up = False


@pytest.mark.parametrize("failing", ["up", "jobs"])
def test_a_failed_bench_up_leaves_no_server_of_its_temporary_stack(settings: Settings, failing: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench up` (the first of `bench all`) runs stacks in a temporary folder on the stack's ports. Before, an `up`
    or a job submission that failed left their servers running with their folder deleted, on the ports the rest of
    `bench all` then found taken."""
    from types import SimpleNamespace

    from benchmarks import stack_up

    def no_jobs(_settings: Settings) -> None:
        raise StackError("flink: the job did not start")

    monkeypatch.setattr(_Stack, "made", [])
    monkeypatch.setattr(_Stack, "fail_up", failing == "up")
    monkeypatch.setattr(stack_up, "Supervisor", _Stack)
    monkeypatch.setattr(stack_up, "registry", SimpleNamespace(build=lambda *_args: []))
    monkeypatch.setattr(stack_up, "submit_standard_jobs", no_jobs)
    with pytest.raises(StackError):
        stack_up.run(settings, None, False, [])
    assert _Stack.made  # the bench got as far as an `up`
    assert not any(stack.running for stack in _Stack.made)
