"""The stack exporter's /proc reading: a component's CPU and memory are those of its whole process tree."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tradesim.stack.exporter import read_procs, tree


def _stat(root: Path, pid: int, ppid: int, utime: int, stime: int, rss_pages: int, comm: str = "java",
          children: int = 0, started: int = 100) -> None:
    (root / str(pid)).mkdir(exist_ok=True)
    # fields after "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    # cutime cstime priority nice threads itrealvalue starttime vsize rss
    rest = ["S", ppid, 1, 1, 0, -1, 0, 0, 0, 0, 0, utime, stime, children, 0, 20, 0, 1, 0, started, 1000, rss_pages]
    (root / str(pid) / "stat").write_text(f"{pid} ({comm}) " + " ".join(map(str, rest)) + " 0 0\n")


def test_a_tree_sums_the_process_and_its_descendants_only(tmp_path: Path) -> None:
    ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
    _stat(tmp_path, 10, 1, ticks * 2, ticks, 100, children=ticks)  # the component's process; a child exited
    _stat(tmp_path, 11, 10, ticks, 0, 50, "a (b) c")     # its child; a command name with parentheses and spaces
    _stat(tmp_path, 12, 11, 0, ticks, 25)                 # a grandchild
    _stat(tmp_path, 20, 1, ticks * 9, 0, 999)             # someone else's
    (tmp_path / "self").mkdir()                            # not a pid
    procs = read_procs(tmp_path)
    assert set(procs) == {10, 11, 12, 20}
    mine = list(tree(procs, 10))
    assert sum(p.cpu_s for p in mine) == 6.0  # an exited child's CPU stays counted (the sum must not drop)
    assert sum(p.rss_bytes for p in mine) == 175 * page
    assert list(tree(procs, 99)) == []  # a pid that is gone


def test_a_components_cpu_never_drops_when_a_process_leaves_its_tree(tmp_path: Path) -> None:
    """A probe: the exporter reported the sum over the tree, which drops when a process leaves it with seconds no
    reaper in the tree adds to its own (a grandchild adopted by init when its parent was killed, a child reaped
    between the reads of its parent and its own); Prometheus reads a drop as a counter reset, and the rate as a
    spike of the whole tree's seconds."""
    import shutil
    from types import SimpleNamespace

    from tradesim.stack import exporter

    ticks = os.sysconf("SC_CLK_TCK")
    row = SimpleNamespace(name="flink", state="running", healthy=True, restarts=0, pid=10)
    probe = exporter.Exporter.__new__(exporter.Exporter)  # only what _components reads: no Kafka probes
    probe.supervisor = SimpleNamespace(status=lambda: [row])
    probe.cpu = {}
    probe.proc_root = tmp_path

    def cpu_s(**tree: tuple[int, float, float]) -> float:
        """One pass over the tree pid → (ppid, own seconds, reaped seconds); the component's CPU it reports."""
        for entry in tmp_path.iterdir():
            shutil.rmtree(entry)
        for pid, (ppid, own, reaped) in tree.items():
            _stat(tmp_path, int(pid.removeprefix("p")), ppid, round(own * ticks), 0, 1, children=round(reaped * ticks))
        probe._components()
        (sample,) = exporter.CPU.collect()[0].samples
        return float(sample.value)

    assert cpu_s(p10=(1, 0, 0), p11=(10, 0, 0), p12=(11, 0, 0)) == 0  # first seen: the count begins
    assert cpu_s(p10=(1, 1, 0), p11=(10, 1, 0), p12=(11, 5, 0)) == 7  # the root, a child, a grandchild
    # the child killed and reaped by the root; the grandchild adopted by init: its 5 s leave the tree
    assert cpu_s(p10=(1, 1, 1), p12=(1, 6, 0)) == 7
    assert cpu_s(p10=(1, 2, 1), p13=(10, 3, 0)) == 11  # a new child
    # it ends and is reaped after this pass read the root, before it read the child: gone, not yet in the root's
    assert cpu_s(p10=(1, 2, 1)) == 11
    assert cpu_s(p10=(1, 2, 4.5)) == 11.5  # the root's reaped seconds have its 3.5 now: only the 0.5 are new
    assert cpu_s(p10=(1, 2, 4.5), p14=(10, 2, 0)) == 13.5
    assert cpu_s(p10=(1, 2, 7)) == 14  # an ordinary reap: the child's last 0.5 s
    row.pid = 20  # restarted by the watchdog: the count goes on
    assert cpu_s(p20=(1, 0.5, 0)) == 14.5


def test_the_cpu_count_tells_a_reused_pid_and_a_child_nobody_waits_for() -> None:
    from tradesim.stack.exporter import ProcStat, TreeCpu

    def stat(ppid: int, own: float, reaped: float = 0, started: int = 1) -> ProcStat:
        return ProcStat(ppid=ppid, own_s=own, reaped_s=reaped, rss_bytes=0, started=started)

    cpu = TreeCpu()
    assert cpu.update({1: stat(0, 0), 2: stat(1, 0)}, 1) == 0  # first seen: the count begins
    assert cpu.update({1: stat(0, 1), 2: stat(1, 4)}, 1) == 5
    assert cpu.update({1: stat(0, 1), 2: stat(1, 1, started=9)}, 1) == 6  # pid 2 is another process now
    # pid 2 ends and nobody waits for it (SIGCHLD ignored): its seconds stay counted; the root's later reaped
    # seconds are counted in full once the one pass they may be late for is over
    assert cpu.update({1: stat(0, 1)}, 1) == 6
    assert cpu.update({1: stat(0, 1, 0.5)}, 1) == 6  # (this pass: perhaps pid 2's own, late)
    assert cpu.update({1: stat(0, 1, 2.5)}, 1) == 8
    assert cpu.update({}, 1) == 8  # the root gone: nothing is read, nothing is lost


def test_a_child_listed_before_its_parent_and_reaped_between_their_reads_counts_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: /proc lists pids in order, so after a wraparound a child (pid 5) came before its parent (pid 10);
    read, then reaped before the parent was read, its seconds were both its own and in the parent's reaped."""
    from types import SimpleNamespace

    from tradesim.stack import exporter
    from tradesim.stack.exporter import ProcStat

    ticks = os.sysconf("SC_CLK_TCK")
    row = SimpleNamespace(name="flink", state="running", healthy=True, restarts=0, pid=10)
    probe = exporter.Exporter.__new__(exporter.Exporter)
    probe.supervisor = SimpleNamespace(status=lambda: [row])
    probe.cpu = {}
    probe.proc_root = tmp_path
    monkeypatch.setattr(exporter, "read_procs", lambda *_: read_procs(tmp_path))

    def cpu_s() -> float:
        probe._components()
        (sample,) = exporter.CPU.collect()[0].samples
        return float(sample.value)

    _stat(tmp_path, 10, 1, 0, 0, 1)
    _stat(tmp_path, 5, 10, 0, 0, 1)
    assert cpu_s() == 0  # first seen: the count begins
    _stat(tmp_path, 10, 1, ticks, 0, 1)
    _stat(tmp_path, 5, 10, 2 * ticks, 0, 1)
    assert cpu_s() == 3
    # the child ends with 3.5 s: the pass read it alive, then its parent with its seconds reaped
    torn = {5: ProcStat(ppid=10, own_s=3.0, reaped_s=0, rss_bytes=0, started=100),
            10: ProcStat(ppid=1, own_s=1.0, reaped_s=3.5, rss_bytes=0, started=100)}
    monkeypatch.setattr(exporter, "read_procs", lambda *_: torn)
    (tmp_path / "5" / "stat").unlink()
    _stat(tmp_path, 10, 1, ticks, 0, 1, children=round(3.5 * ticks))
    assert cpu_s() == 4.5  # read parents first: the child is gone, its seconds are in the parent's only
    monkeypatch.setattr(exporter, "read_procs", lambda *_: read_procs(tmp_path))
    assert cpu_s() == 4.5


@pytest.mark.timeout(5)
def test_a_ppid_cycle_ends_the_walks_over_the_tree() -> None:
    """A probe: a pid reused within one pass can make a parent and its child each other's parent; the walks over
    the tree and up to a gone process's reaper went round it forever."""
    from tradesim.stack.exporter import ProcStat, TreeCpu

    def stat(ppid: int, own: float) -> ProcStat:
        return ProcStat(ppid=ppid, own_s=own, reaped_s=0, rss_bytes=0, started=1)

    cpu = TreeCpu()
    assert cpu.update({1: stat(2, 0), 2: stat(1, 0)}, 1) == 0  # first seen: the count begins
    assert cpu.update({1: stat(2, 1), 2: stat(1, 2)}, 1) == 3
    assert cpu.update({}, 1) == 3  # both gone: no reaper in the tree


def _passes_over_an_exporter_restart() -> list[float]:
    """The CPU count, 5 s apart, of a component at 10 % of a core: the last 12 passes of an exporter that saw the
    watchdog restart it an hour before (its count holds the first process's seconds too), then the first 12 of a
    restarted exporter (a fresh count)."""
    from tradesim.stack.exporter import ProcStat, TreeCpu

    def tree(pid: int, own_s: float) -> dict[int, ProcStat]:
        return {pid: ProcStat(ppid=1, own_s=own_s, reaped_s=0, rss_bytes=0, started=pid)}

    before, spent_s, counts = TreeCpu(), 0.0, []
    before.update(tree(10, 3600.0), 10)  # its first process, then the one the watchdog started (pid 20)
    for cpu, passes in ((before, 720), (TreeCpu(), 12)):
        for _ in range(passes):
            counts.append(cpu.update(tree(20, spent_s), 20))
            spent_s += 0.5
    return counts[-24:]


def test_an_exporter_restart_reads_as_a_counter_reset_not_a_spike() -> None:
    """A probe: a fresh count began at all the tree's processes had spent in their lives. Below the last count of
    the exporter before (which held a process that had left), Prometheus read it as a counter reset and all of it
    as spent within the rate window: 360 s of CPU in a minute, 600 % in `top`, after the exporter restarted. The
    count begins at nought: what follows a reset is then what was spent since."""
    counts = _passes_over_an_exporter_restart()
    assert counts[12] < counts[11]  # a drop: Prometheus's counter reset
    assert counts[12] == 0
    assert [b - a for a, b in zip(counts[12:], counts[13:], strict=False)] == [0.5] * 11


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs promtool (Debian's prometheus package)")
def test_the_cpu_rate_stays_the_components_over_an_exporter_restart(tmp_path: Path) -> None:
    """Prometheus's own rule engine on the kept rules: the recorded CPU rate over a restart of the exporter (a
    missed scrape between the two) stays the component's 10 %."""
    from tradesim.stack.prometheus import RULE_FILES, RULES_DIR

    counts = _passes_over_an_exporter_restart()
    values = " ".join([*map(str, counts[:12]), "stale", *map(str, counts[12:])])
    test = {"rule_files": [str(RULES_DIR / name) for name in RULE_FILES], "evaluation_interval": "5s",
            "tests": [{"interval": "5s",
                       "input_series": [{"series": 'tradesim_component_cpu_seconds{component="flink"}',
                                         "values": values}],
                       "promql_expr_test": [
                           {"expr": "tradesim:component_cpu:rate < bool 0.2", "eval_time": f"{t}s",
                            "exp_samples": [{"labels": '{component="flink"}', "value": 1}]}
                           for t in range(70, 125, 5)]}]}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test))
    done = subprocess.run([str(shutil.which("promtool")), "test", "rules", "test.yml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_noted_job_the_cluster_no_longer_runs_is_reported_not_running(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: the exporter reported active jobs only, so a failed job, or one lost with a restarted cluster, had
    no series and `TradesimJobNotRunning` (running == 0) could never fire."""
    from tradesim.adapters.flink import client as flink_client
    from tradesim.adapters.flink.client import JobInfo
    from tradesim.settings import Settings
    from tradesim.stack import exporter, jobs

    class Cluster:
        def __init__(self, _url: str) -> None:
            pass

        def jobs(self) -> list[JobInfo]:
            return [JobInfo("j1", "tradesim-bars", "RUNNING", 0, 10),
                    JobInfo("j0", "tradesim-execution", "FAILED", 0, 5)]

        def restarts(self, _job_id: str) -> int:
            return 0

    monkeypatch.setattr(flink_client, "FlinkRest", Cluster)
    settings = Settings(home=tmp_path / "home", cache_dir=tmp_path / "cache")
    for name, run in (("bars", "j1"), ("execution", "j0")):  # both submitted; neither stopped on purpose
        jobs._note_run(settings, name, jobs.RunNote(run))
    probe = exporter.Exporter.__new__(exporter.Exporter)  # only what _flink reads: no Kafka probes
    probe.settings = settings
    probe._flink()
    running = {s.labels["flink_job"]: s.value for s in exporter.JOB_RUNNING.collect()[0].samples}
    assert running == {"bars": 1, "execution": 0}
    jobs._note_run(settings, "execution", None)  # cancelled on purpose: not expected to run
    probe._flink()
    assert {s.labels["flink_job"] for s in exporter.JOB_RUNNING.collect()[0].samples} == {"bars"}


def test_a_broker_that_does_not_answer_marks_the_lag_source_down() -> None:
    """A probe: the lag lookup swallowed Kafka's error, so the source stayed up and the lag series just vanished:
    `TradesimConsumerLag` went quiet and `TradesimMetricsSourceDown` never said the alerts were blind."""
    from confluent_kafka import KafkaError, KafkaException

    from tradesim.stack import exporter

    class Unanswered:
        def list_topics(self, *_args: object, **_kw: object) -> None:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker down"))

    probe = exporter.Exporter.__new__(exporter.Exporter)  # no Kafka, Redis, Flink or stack: only the lag source
    probe.groups = [("tradesim-execution", "trade_orders")]
    probe.probes = {"tradesim-execution": Unanswered()}

    def measured() -> None:
        pass

    for name in ("_components", "_redis", "_disk", "_flink"):
        setattr(probe, name, measured)
    exporter.LAG.labels("tradesim-execution", "trade_orders").set(5)  # an earlier pass's value
    probe.run_once()
    up = {s.labels["source"]: s.value for s in exporter.SOURCE_UP.collect()[0].samples}
    assert up["lags"] == 0
    assert exporter.LAG.collect()[0].samples == []  # no stale value keeps the lag alert quiet


def test_redis_reports_the_writes_it_refused_for_memory_as_a_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    """At its cap Redis evicts keys with a TTL (normal); the alert is on the writes it refuses (OOM replies)."""
    from prometheus_client import REGISTRY

    from tradesim.adapters.redis import client
    from tradesim.settings import load_settings
    from tradesim.stack import exporter

    sections: dict[str, dict[str, object]] = {
        "memory": {"used_memory": 1000, "maxmemory": 1000},
        "errorstats": {"errorstat_ERR": {"count": 2}, "errorstat_OOM": {"count": 7}}}

    class Redis:
        def info(self, section: str) -> dict[str, object]:
            return sections[section]

        def close(self) -> None:
            pass

    monkeypatch.setattr(client, "connect", lambda *_a, **_kw: Redis())
    probe = exporter.Exporter.__new__(exporter.Exporter)  # the Redis source only
    probe.settings = load_settings()
    for name in ("_components", "_lags", "_disk", "_flink"):
        setattr(probe, name, lambda: None)

    def refused() -> float | None:
        return REGISTRY.get_sample_value("tradesim_redis_refused_writes_total")

    probe.run_once()
    assert refused() == 7
    assert REGISTRY.get_sample_value("tradesim_redis_used_memory_bytes") == 1000
    sections["errorstats"] = {}  # restarted: no OOM reply since, so no line
    probe.run_once()
    assert refused() == 0
    sections.clear()  # Redis does not answer (KeyError here)
    probe.run_once()
    assert refused() is None  # no stale count keeps the alert quiet (TradesimMetricsSourceDown says why)
    assert REGISTRY.get_sample_value("tradesim_exporter_source_up", {"source": "redis"}) == 0
