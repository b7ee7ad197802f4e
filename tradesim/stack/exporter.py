"""The stack exporter: what no service reports about itself, as Prometheus metrics on loopback.

Per component: up (running and healthy), watchdog restarts, CPU seconds and RSS of its whole process tree (read
from /proc, so the JVMs, Redis and dynalite count too; the CPU seconds a counter that never drops, `TreeCpu`);
the committed lag of every consumer group the stack runs; Redis memory against its cap and the writes it refused
for memory; free disk under the stack folder; Flink jobs (running, restarts, age of the last checkpoint) from
Flink's REST API. Flink's own Prometheus reporter is not used: it binds every interface and has no address option.

Run as `python -m tradesim.stack.exporter` (the `exporter` component); one pass every scrape interval.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from prometheus_client import REGISTRY, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric

from tradesim.settings import Settings, load_settings

log = logging.getLogger("tradesim.exporter")


class ReadCounter:
    """A counter another process keeps, exported as last read (none until read); `increase()` allows for its
    resets (a Redis restart)."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name, self.documentation = name, documentation
        self.value: float | None = None
        REGISTRY.register(self)

    def set(self, value: float) -> None:
        self.value = value

    def clear(self) -> None:
        self.value = None

    def describe(self) -> list[Metric]:
        return [CounterMetricFamily(self.name, self.documentation)]

    def collect(self) -> list[Metric]:
        if self.value is None:
            return []
        return [CounterMetricFamily(self.name, self.documentation, value=self.value)]


UP = Gauge("tradesim_component_up", "1 when the component runs and answers its health check", ["component"])
RESTARTS = Gauge("tradesim_component_restarts", "Restarts by the watchdog within its window (may go down)",
                 ["component"])
CPU = Gauge("tradesim_component_cpu_seconds", "CPU time of the component's process tree, with the processes that "
            "left it, since the exporter first saw it (never goes down while the exporter runs)", ["component"])
RSS = Gauge("tradesim_component_rss_bytes", "Resident memory of the component's process tree", ["component"])
LAG = Gauge("tradesim_consumer_lag", "Records beyond a consumer group's committed offsets", ["group", "topic"])
REDIS_USED = Gauge("tradesim_redis_used_memory_bytes", "Redis used_memory")
REDIS_MAX = Gauge("tradesim_redis_maxmemory_bytes", "Redis maxmemory (0: no cap)")
# at its cap Redis evicts keys with a TTL (volatile-lru) and refuses a write only when none is left: what hurts
REDIS_REFUSED = ReadCounter("tradesim_redis_refused_writes", "Commands Redis refused for memory (OOM error "
                            "replies, INFO errorstats) since it started")
DISK_FREE = Gauge("tradesim_disk_free_bytes", "Free bytes on the stack folder's file system")
DISK_TOTAL = Gauge("tradesim_disk_total_bytes", "Size of the stack folder's file system")
# `flink_job`, not `job`: Prometheus gives every scraped series a `job` label of its own (the scrape job)
JOB_RUNNING = Gauge("tradesim_flink_job_running", "1 while the job is RUNNING", ["flink_job"])
JOB_RESTARTS = Gauge("tradesim_flink_job_restarts", "Restarts of the job since its submission", ["flink_job"])
JOB_CHECKPOINT_AGE = Gauge("tradesim_flink_job_checkpoint_age_seconds", "Time since the last completed checkpoint",
                           ["flink_job"])
PASS_SECONDS = Gauge("tradesim_exporter_pass_seconds", "How long the last pass took")
SOURCE_UP = Gauge("tradesim_exporter_source_up", "1 when the last pass could read this source", ["source"])


@dataclass(frozen=True)
class ProcStat:
    ppid: int
    own_s: float  # user + system time of its threads, live and exited
    reaped_s: float  # the same of the children it waited for (and of theirs): the kernel's cutime + cstime
    rss_bytes: int
    started: int  # clock ticks after boot: with the pid, which process this is (pids are reused)

    @property
    def cpu_s(self) -> float:
        return self.own_s + self.reaped_s


def read_stat(entry: Path) -> ProcStat | None:
    """The process of the /proc/<pid> folder `entry`, or None once it is gone."""
    try:
        text = (entry / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state is field 0 here
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    ticks = os.sysconf("SC_CLK_TCK")
    return ProcStat(ppid=int(fields[1]), own_s=(utime + stime) / ticks, reaped_s=(cutime + cstime) / ticks,
                    rss_bytes=int(fields[21]) * os.sysconf("SC_PAGE_SIZE"), started=int(fields[19]))


def read_procs(root: Path = Path("/proc")) -> dict[int, ProcStat]:
    """Every process's parent, CPU time, RSS and start time, from /proc/<pid>/stat."""
    out: dict[int, ProcStat] = {}
    for entry in root.iterdir():
        if entry.name.isdigit() and (stat := read_stat(entry)) is not None:  # None: gone meanwhile
            out[int(entry.name)] = stat
    return out


def reread_tree(procs: dict[int, ProcStat], pid: int, root: Path = Path("/proc")) -> dict[int, ProcStat]:
    """`procs` with the process and its descendants read again, parents first (breadth-first), those gone left out.

    /proc lists pids in order, so after a wraparound a child can come before its parent: read, then reaped before
    its parent was read, its seconds were in both. Read after its parent, a child reaped in between is in neither
    this pass, which `TreeCpu` expects (its parent adds them next pass)."""
    out = dict(procs)
    children = _children(procs)
    todo, seen = deque([pid]), set()
    while todo:
        current = todo.popleft()
        if current in seen:
            continue
        seen.add(current)
        stat = read_stat(root / str(current))
        if stat is None:
            out.pop(current, None)
        else:
            out[current] = stat  # a reused pid or an adopted process: `family` of the result tells
        todo += children.get(current, [])
    return out


def _children(procs: dict[int, ProcStat]) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for child, stat in procs.items():
        children.setdefault(stat.ppid, []).append(child)
    return children


def family(procs: dict[int, ProcStat], pid: int) -> list[int]:
    """The pids of the process and all its descendants (those still in `procs`)."""
    children = _children(procs)
    out, todo, seen = [], [pid], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue  # a ppid cycle: a pid reused between the reads of a parent and of its child
        seen.add(current)
        if current in procs:
            out.append(current)
        todo += children.get(current, [])
    return out


def tree(procs: dict[int, ProcStat], pid: int) -> Iterator[ProcStat]:
    """The process and all its descendants."""
    return (procs[p] for p in family(procs, pid))


class TreeCpu:
    """A component's CPU seconds as a counter that never drops.

    The sum over its process tree drops whenever a process leaves the tree without its seconds reaching a reaper
    in it: a grandchild orphaned when its parent is killed (init adopts it, and its seconds), a child nobody waits
    for, a child reaped between the reads of its parent and its own. Prometheus reads any drop as a counter reset,
    so the rate showed the whole tree's seconds as one spike. Instead each pass adds what every process of the tree
    spent since the last one; a process that left keeps what it spent in the tree counted (as the kernel's cutime
    keeps a reaped child's), and when a reaper in the tree adds a gone child's seconds to its own, the part already
    counted is not added again.

    The count begins at nought when it first sees the tree, not at what the tree spent before: a restarted exporter
    then reads as a counter reset. Begun at the tree's lifetime, it was below the last exporter's count (which kept
    processes gone since) and Prometheus took all of it as spent since the reset: a spike in the rate."""

    def __init__(self) -> None:
        self.total_s = 0.0
        self._seen: dict[int, ProcStat] = {}  # the tree at the last pass
        self._owed: dict[int, float] = {}  # seconds a reaper in the tree had not added yet at the last pass
        self._begun = False  # a pass has seen the tree: its seconds before that are not counted

    def update(self, procs: dict[int, ProcStat], root: int) -> float:
        """The component's CPU seconds since the count first saw it, given its root process and a fresh
        `read_procs()`."""
        now = {pid: procs[pid] for pid in family(procs, root)}
        if not self._begun:
            self._seen, self._begun = now, bool(now)
            return self.total_s
        stayed = {pid for pid, old in self._seen.items() if pid in now and now[pid].started == old.started}
        owed = {pid: due for pid, due in self._owed.items() if pid in stayed}
        fresh: dict[int, float] = {}
        for pid, old in self._seen.items():
            if pid in stayed or (pid in procs and procs[pid].started == old.started):
                continue  # still in the tree, or alive outside it (adopted): what it spent in the tree is counted
            reaper = old.ppid  # gone: its seconds reach its nearest ancestor still in the tree, if it waits for it
            walked = {pid}  # a ppid cycle (a pid reused within one pass) ends the walk: no reaper
            while reaper in self._seen and reaper not in stayed and reaper not in walked:
                walked.add(reaper)
                reaper = self._seen[reaper].ppid
            if reaper in stayed:
                fresh[reaper] = fresh.get(reaper, 0.0) + old.cpu_s
        self._owed = {}
        spent = 0.0
        for pid, stat in now.items():
            if pid not in stayed:
                spent += stat.cpu_s  # new since the last pass (a restarted root too): all it spent is new
                continue
            old = self._seen[pid]
            due = owed.get(pid, 0.0) + fresh.get(pid, 0.0)
            reaped = stat.reaped_s - old.reaped_s
            spent += max(0.0, stat.own_s - old.own_s) + max(0.0, reaped - due)
            if due > reaped and pid in fresh:  # reaped after this pass read the reaper: its seconds come next pass
                self._owed[pid] = min(due - reaped, fresh[pid])  # (only then: a child nobody waits for never comes)
        self._seen = now
        self.total_s += spent
        return self.total_s


def consumer_groups(settings: Settings) -> list[tuple[str, str]]:
    """(group, topic) of every consumer group the stack runs that commits its position."""
    from tradesim.stack.jobs import source_groups

    p, executed = settings.persistence, settings.topics.trade_executed
    return [*source_groups(settings), *((p.group(sink), executed) for sink in p.SINKS)]


class Exporter:
    proc_root = Path("/proc")  # tests point it at a folder of their own

    def __init__(self, settings: Settings) -> None:
        from tradesim.adapters.kafka.client import consumer
        from tradesim.stack import registry
        from tradesim.stack.supervisor import Supervisor

        self.settings = settings
        self.supervisor = Supervisor(settings, registry.build(settings))
        self.groups = consumer_groups(settings)
        self.cpu: dict[str, TreeCpu] = {}  # per component, kept while it is stopped: its count goes on
        self.probes = {group: consumer(settings.kafka, group_id=group) for group, _ in self.groups}

    def run_once(self) -> None:
        started = time.monotonic()
        for part, gauges in ((self._components, (UP, RESTARTS, CPU, RSS)), (self._lags, (LAG,)),
                             (self._redis, (REDIS_USED, REDIS_MAX, REDIS_REFUSED)),
                             (self._disk, (DISK_FREE, DISK_TOTAL)),
                             (self._flink, (JOB_RUNNING, JOB_RESTARTS, JOB_CHECKPOINT_AGE))):
            source = part.__name__.strip("_")
            try:
                part()
                SOURCE_UP.labels(source).set(1)
            except Exception as exc:  # noqa: BLE001 - one source down must not stop the others
                log.warning("%s not measured: %s", source, exc)
                SOURCE_UP.labels(source).set(0)
                for gauge in gauges:  # no stale value may keep an alert quiet
                    gauge.clear()
        PASS_SECONDS.set(time.monotonic() - started)

    def _components(self) -> None:
        procs = read_procs(self.proc_root)
        rows = self.supervisor.status()
        for gauge in (UP, RESTARTS, CPU, RSS):
            gauge.clear()  # a component stopped since the last pass is no longer reported
        for row in rows:
            if row.state == "stopped":
                continue  # not started, or stopped on purpose (`down`): nothing is missing
            UP.labels(row.name).set(1 if row.healthy else 0)
            RESTARTS.labels(row.name).set(row.restarts)
            if row.pid is not None and row.state in ("running", "unhealthy"):
                mine = reread_tree(procs, row.pid, self.proc_root)
                CPU.labels(row.name).set(self.cpu.setdefault(row.name, TreeCpu()).update(mine, row.pid))
                RSS.labels(row.name).set(sum(s.rss_bytes for s in tree(mine, row.pid)))

    def _lags(self) -> None:
        from tradesim.adapters.kafka.client import measure_group_lag

        # a broker that does not answer raises: the source is down (alerts blind), not a lag of nothing
        lags = {(group, topic): measure_group_lag(self.probes[group], topic, committed_only=True)
                for group, topic in self.groups}
        LAG.clear()
        for (group, topic), lag in lags.items():
            if lag is not None:
                LAG.labels(group, topic).set(lag)

    def _redis(self) -> None:
        from tradesim.adapters.redis.client import connect

        client = connect(self.settings.redis, timeout_s=1.0)
        try:
            info = client.info("memory")
            errors = client.info("errorstats")  # Redis 6.2+; no line for an error not seen since it started
        finally:
            client.close()
        REDIS_USED.set(float(info["used_memory"]))
        REDIS_MAX.set(float(info.get("maxmemory", 0)))
        REDIS_REFUSED.set(float(errors.get("errorstat_OOM", {}).get("count", 0)))

    def _disk(self) -> None:
        usage = shutil.disk_usage(self.settings.stack_dir if self.settings.stack_dir.exists() else "/")
        DISK_FREE.set(usage.free)
        DISK_TOTAL.set(usage.total)

    def _flink(self) -> None:
        from tradesim.adapters.flink.client import FlinkRest
        from tradesim.stack.jobs import name_of, runs

        rest = FlinkRest(self.settings.flink.client_rest_url)
        now_ms = time.time() * 1000
        jobs = [job for job in rest.jobs() if job.active]
        restarts = {job.id: rest.restarts(job.id) for job in jobs}
        for gauge in (JOB_RUNNING, JOB_RESTARTS, JOB_CHECKPOINT_AGE):
            gauge.clear()  # a cancelled job is no longer reported
        for job in jobs:
            name = name_of(job.name)
            JOB_RUNNING.labels(name).set(1 if job.state == "RUNNING" else 0)
            JOB_RESTARTS.labels(name).set(restarts[job.id])
            since = job.last_checkpoint_ms or job.start_time_ms
            if since > 0:  # Flink says -1 for a job not started yet: no age to tell (not one since 1970)
                JOB_CHECKPOINT_AGE.labels(name).set(max(0.0, (now_ms - since) / 1000))
        # a standard job tradesim submitted and nobody stopped on purpose (its run is still noted) that the cluster
        # no longer runs (failed, or lost with a restarted cluster) is 0, not absent: an absent series fires no alert
        for name in set(runs(self.settings)) - {name_of(job.name) for job in jobs}:
            JOB_RUNNING.labels(name).set(0)

    def close(self) -> None:
        for probe in self.probes.values():
            with contextlib.suppress(Exception):
                probe.close()


def main() -> None:
    from tradesim.logs import setup

    setup("exporter", level=logging.WARNING)  # clients' request logs stay out
    logging.getLogger("tradesim").setLevel(logging.INFO)
    settings = load_settings()
    o = settings.observability
    start_http_server(o.exporter_port, addr=o.host)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    exporter = Exporter(settings)
    log.info("exporting on %s:%s", o.host, o.exporter_port)
    while not stop.is_set():
        exporter.run_once()
        stop.wait(o.scrape_interval_s)
    exporter.close()


if __name__ == "__main__":
    main()
