"""CPU time and memory of every running component of the stack, read from /proc (as the stack exporter reads
them), so a benchmark can say what each server spent on its load and how much memory it held."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from tradesim.settings import Settings


@dataclass(frozen=True)
class Usage:
    """One component's process tree at one moment."""

    pid: int
    cpu_s: float  # user + system since start, the tree's own and its waited-for children's
    rss: int
    anon: int  # RssAnon: resident memory not backed by a file (heaps; no mapped Kafka indexes or TSDB blocks)
    switches: int = 0  # context switches of the tree's live threads (a thread that ended takes its count along)


def _switches(pid: int) -> int:
    """Voluntary and involuntary context switches of every thread of `pid`: one per wait for a socket, a lock or
    a timer, and per preemption, so per order they show how often the work hands off rather than how long."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0  # gone meanwhile
    for task in tasks:
        try:
            for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
                if "ctxt_switches:" in line:
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def _anon_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass  # gone meanwhile
    return 0


def component_usage(settings: Settings) -> dict[str, Usage]:
    """Per running component (by name), its process tree's usage."""
    from tradesim.stack import registry
    from tradesim.stack.exporter import family, read_procs
    from tradesim.stack.supervisor import Supervisor

    procs = read_procs()
    out = {}
    for row in Supervisor(settings, registry.build(settings)).status():
        if row.pid is None or row.state not in ("running", "unhealthy"):
            continue
        pids = family(procs, row.pid)
        out[row.name] = Usage(row.pid, sum(procs[p].cpu_s for p in pids), sum(procs[p].rss_bytes for p in pids),
                              sum(_anon_bytes(p) for p in pids), sum(_switches(p) for p in pids))
    return out


def cpu_spent(before: dict[str, Usage], after: dict[str, Usage]) -> dict[str, float]:
    """CPU seconds each component spent between two readings; a component that restarted meanwhile (another
    pid) or was not running at both is left out rather than reported as a negative or partial figure."""
    return {name: after[name].cpu_s - u.cpu_s for name, u in before.items()
            if name in after and after[name].pid == u.pid}


def switches_spent(before: dict[str, Usage], after: dict[str, Usage]) -> dict[str, int]:
    """Context switches of each component between two readings (as `cpu_spent`: same pid at both)."""
    return {name: after[name].switches - u.switches for name, u in before.items()
            if name in after and after[name].pid == u.pid}


def _bytes_on_disk(root: Path) -> int:
    """Allocated bytes of the regular files under root; folders and files that vanish meanwhile (merged parts,
    checkpoints, rolled segments) are skipped, not an error."""
    total = 0
    for folder, _, files in os.walk(root):  # os.walk skips a folder that is gone by the time it lists it
        for name in files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_blocks * 512
    return total


def state_on_disk(settings: Settings) -> dict[str, int]:
    """Bytes each local component keeps in its folder of the stack (data, checkpoints, logs): what grows with
    use, where memory readings do not show it."""
    if not settings.stack_dir.is_dir():
        return {}
    return {d.name: _bytes_on_disk(d) for d in sorted(settings.stack_dir.iterdir()) if d.is_dir()}
