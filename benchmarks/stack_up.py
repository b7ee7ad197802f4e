"""Cold and warm `up` of the native stack, and each server's peak resident memory.

cold: empty stack folder, empty artifact cache and an empty Maven repository (jars come from Maven Central;
      Debian packages already installed on the machine are not removed, so apt time is not included).
warm: artifacts cached, empty stack folder (includes Kafka storage format), then the standard Flink jobs (the
      whole of `up --with-jobs`);
restart: `down` then `up` on existing data.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from tradesim.settings import Settings
from tradesim.stack import registry
from tradesim.stack.jobs import submit_standard_jobs
from tradesim.stack.supervisor import Supervisor


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _timed_up(settings: Settings, only: list[str] | None) -> tuple[float, Supervisor]:
    """Seconds `up` took, and its supervisor; an `up` that fails takes down what it started (its folder is a
    temporary one, deleted next: servers left behind would run on without it, on the stack's ports)."""
    sup = Supervisor(settings, registry.build(settings, only))
    start = time.monotonic()
    try:
        sup.up()
    except BaseException:
        sup.down()
        raise
    return time.monotonic() - start, sup


def run(base: Settings, only: list[str] | None, cold: bool, out: list[str]) -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="tradesim-bench-") as tmp:
        root = Path(tmp)
        cache = root / "cache" if cold else base.cache_dir
        if cold:
            os.environ["MAVEN_OPTS"] = (os.environ.get("MAVEN_OPTS", "") +
                                        f" -Dmaven.repo.local={root / 'm2'}").strip()
        s = base.model_copy(update={"home": root / "home", "cache_dir": cache})
        label = "cold" if cold else "warm"
        secs, sup = _timed_up(s, only)
        try:
            figures[f"{label}_up_s"] = secs
            out.append(f"{label} up (empty stack folder{', empty caches' if cold else ', cached artifacts'}): "
                       f"{secs:.1f} s")
            if cold:
                sup.down()
                s = s.model_copy(update={"home": root / "home2"})
                secs, sup = _timed_up(s, only)
                figures["warm_up_s"] = secs
                out.append(f"warm up (empty stack folder, cached artifacts): {secs:.1f} s")
            if only is None or {"flink", "kafka"} <= set(only):  # the jobs read and write Kafka
                start = time.monotonic()
                submit_standard_jobs(s)
                jobs_s = time.monotonic() - start
                figures["warm_jobs_s"], figures["warm_up_with_jobs_s"] = jobs_s, figures["warm_up_s"] + jobs_s
                out.append(f"standard jobs submitted (as `up --with-jobs` does): {jobs_s:.1f} s more, so "
                           f"`up --with-jobs` warm: {figures['warm_up_with_jobs_s']:.1f} s (goal ≤ 60 s)")
            sup.down()
            start = time.monotonic()
            sup.up()
            figures["restart_up_s"] = time.monotonic() - start
            out.append(f"restart up (existing data): {figures['restart_up_s']:.1f} s")
            for name, rec in sup.state_file.load().components.items():
                rss = peak_rss_mb(rec.pid)
                if rss is not None:
                    figures[f"{name}_peak_rss_mb"] = rss
                    out.append(f"{name} peak RSS after up: {rss:.0f} MB")
        finally:  # as after a failed `up`: nothing of the temporary stack runs on once its folder is gone
            sup.down()
    return figures
