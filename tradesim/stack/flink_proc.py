"""The one process the supervisor tracks for Flink: runs the JobManager and the TaskManager in the foreground.

    python -m tradesim.stack.flink_proc <FLINK_HOME> <pid dir> <TaskManager scratch dir>

The supervisor knows one pid per component, so this small parent owns both JVMs: it restarts the TaskManager
when it dies (kill -9, OOM) so running jobs get their slots back and recover from their last checkpoint; if the
JobManager dies it stops the TaskManager and exits (the component is then `down` and `tradesim up` restarts it);
on SIGTERM it stops both (TERM, then KILL after a grace period); killed itself, it takes both with it. The
TaskManager gets a scratch folder of its own (`io.tmp.dirs`), emptied before each start: one killed leaves ~85 MB
there (its blob cache, RPC jar, Python files). Stdlib only (and tradesim.lifetime): it runs in tradesim's own venv.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

from tradesim.lifetime import die_with_parent

GRACE_S = 15.0
RESTART_DELAY_S = 1.0


def _log(message: str) -> None:
    print(f"[flink_proc {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _start(flink_home: Path, script: str, pid_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    # `start-foreground` execs flink-console.sh, which execs java: the child's pid is the JVM's pid.
    proc = subprocess.Popen(["bash", str(flink_home / "bin" / script), "start-foreground", *args],
                            stdin=subprocess.DEVNULL,  # and it dies with this process (not left holding ports)
                            preexec_fn=partial(die_with_parent, os.getpid(), signal.SIGKILL))  # noqa: PLW1509
    pid_file = pid_dir / f"{script.removesuffix('.sh')}.pid"
    pid_file.with_suffix(".tmp").write_text(f"{proc.pid}\n")
    pid_file.with_suffix(".tmp").replace(pid_file)  # whole or absent for a reader (status, a test's kill)
    _log(f"started {script} as pid {proc.pid}")
    return proc


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + GRACE_S
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _start_taskmanager(flink_home: Path, pid_dir: Path, scratch: Path) -> subprocess.Popen[bytes]:
    """Start the TaskManager in an empty scratch folder: what is there belongs to one that died."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True, exist_ok=True)
    return _start(flink_home, "taskmanager.sh", pid_dir, f"-Dio.tmp.dirs={scratch}")


def main(argv: list[str]) -> int:
    flink_home, pid_dir, scratch = Path(argv[0]), Path(argv[1]), Path(argv[2])
    pid_dir.mkdir(parents=True, exist_ok=True)
    stopping = False

    def on_term(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    jm = _start(flink_home, "jobmanager.sh", pid_dir)
    tm = _start_taskmanager(flink_home, pid_dir, scratch)
    restarts = 0
    while not stopping:
        time.sleep(0.2)
        if jm.poll() is not None:
            _log(f"JobManager exited with {jm.returncode}: stopping the TaskManager")
            _stop([tm])
            return 1
        if tm.poll() is not None and not stopping:
            restarts += 1
            _log(f"TaskManager exited with {tm.returncode}: restarting it (restart {restarts})")
            time.sleep(RESTART_DELAY_S)
            tm = _start_taskmanager(flink_home, pid_dir, scratch)
    _log("SIGTERM: stopping TaskManager and JobManager")
    _stop([tm, jm])  # together, within one grace period: the supervisor's own wait for this process is longer
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
