"""The stack exporter: what no service reports about itself, as Prometheus metrics on loopback.

Per component: up (running and healthy), watchdog restarts, CPU seconds and RSS of its whole process tree (read
from /proc, so the JVMs, Redis and dynalite count too); the committed lag of every consumer group the stack
runs; Redis memory against its cap; free disk under the stack folder; Flink jobs (running, restarts, age of the
last checkpoint) from Flink's REST API. Flink's own Prometheus reporter is not used: it binds every interface
and has no address option.

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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from prometheus_client import Gauge, start_http_server

from tradesim.settings import Settings, load_settings

log = logging.getLogger("tradesim.exporter")

UP = Gauge("tradesim_component_up", "1 when the component runs and answers its health check", ["component"])
RESTARTS = Gauge("tradesim_component_restarts", "Restarts by the watchdog within its window (may go down)",
                 ["component"])
CPU = Gauge("tradesim_component_cpu_seconds", "CPU time of the component's process tree, with its exited children",
            ["component"])
RSS = Gauge("tradesim_component_rss_bytes", "Resident memory of the component's process tree", ["component"])
LAG = Gauge("tradesim_consumer_lag", "Records beyond a consumer group's committed offsets", ["group", "topic"])
REDIS_USED = Gauge("tradesim_redis_used_memory_bytes", "Redis used_memory")
REDIS_MAX = Gauge("tradesim_redis_maxmemory_bytes", "Redis maxmemory (0: no cap)")
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
    cpu_s: float
    rss_bytes: int


def read_procs(root: Path = Path("/proc")) -> dict[int, ProcStat]:
    """Every process's parent, CPU time (user + system, its own and its waited-for children's, so the sum over a
    tree does not drop when a child exits) and RSS, from /proc/<pid>/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    out: dict[int, ProcStat] = {}
    for entry in root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": state is field 0 here
        cpu_ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        out[int(entry.name)] = ProcStat(ppid=int(fields[1]), cpu_s=cpu_ticks / ticks,
                                        rss_bytes=int(fields[21]) * page)
    return out


def family(procs: dict[int, ProcStat], pid: int) -> list[int]:
    """The pids of the process and all its descendants (those still in `procs`)."""
    children: dict[int, list[int]] = {}
    for child, stat in procs.items():
        children.setdefault(stat.ppid, []).append(child)
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        if current in procs:
            out.append(current)
        todo += children.get(current, [])
    return out


def tree(procs: dict[int, ProcStat], pid: int) -> Iterator[ProcStat]:
    """The process and all its descendants."""
    return (procs[p] for p in family(procs, pid))


def consumer_groups(settings: Settings) -> list[tuple[str, str]]:
    """(group, topic) of every consumer group the stack runs that commits its position."""
    from tradesim.stack.jobs import source_groups

    p, executed = settings.persistence, settings.topics.trade_executed
    return [*source_groups(settings), *((p.group(sink), executed) for sink in p.SINKS)]


class Exporter:
    def __init__(self, settings: Settings) -> None:
        from tradesim.adapters.kafka.client import consumer
        from tradesim.stack import registry
        from tradesim.stack.supervisor import Supervisor

        self.settings = settings
        self.supervisor = Supervisor(settings, registry.build(settings))
        self.groups = consumer_groups(settings)
        self.probes = {group: consumer(settings.kafka, group_id=group) for group, _ in self.groups}

    def run_once(self) -> None:
        started = time.monotonic()
        for part, gauges in ((self._components, (UP, RESTARTS, CPU, RSS)), (self._lags, (LAG,)),
                             (self._redis, (REDIS_USED, REDIS_MAX)), (self._disk, (DISK_FREE, DISK_TOTAL)),
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
        procs = read_procs()
        rows = self.supervisor.status()
        for gauge in (UP, RESTARTS, CPU, RSS):
            gauge.clear()  # a component stopped since the last pass is no longer reported
        for row in rows:
            if row.state == "stopped":
                continue  # not started, or stopped on purpose (`down`): nothing is missing
            UP.labels(row.name).set(1 if row.healthy else 0)
            RESTARTS.labels(row.name).set(row.restarts)
            if row.pid is not None and row.state in ("running", "unhealthy"):
                stats = list(tree(procs, row.pid))
                CPU.labels(row.name).set(sum(s.cpu_s for s in stats))
                RSS.labels(row.name).set(sum(s.rss_bytes for s in stats))

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
        finally:
            client.close()
        REDIS_USED.set(float(info["used_memory"]))
        REDIS_MAX.set(float(info.get("maxmemory", 0)))

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
