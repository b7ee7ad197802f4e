"""Process supervision without servers: a kill -9 of flink_proc takes its JVMs (stand-ins: scripts that exec
`sleep`) with it, and children that exited are reaped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tradesim.testing.waiting import wait_for

SCRIPT = "#!/bin/sh\nexec sleep 600\n"


def _alive(pid: int) -> bool:
    """Running, not a zombie (an orphan's new parent may not reap it at once)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_killed_flink_proc_takes_both_jvms_with_it(tmp_path: Path) -> None:
    """A probe: `kill -9` of the pid `status` shows for flink left the JobManager and TaskManager running, their
    ports held, so the watchdog gave up, `up` failed on the ports and `down --purge` left them behind."""
    home, pids = tmp_path / "flink", tmp_path / "pids"
    (home / "bin").mkdir(parents=True)
    for script in ("jobmanager.sh", "taskmanager.sh"):
        (home / "bin" / script).write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, "-m", "tradesim.stack.flink_proc", str(home), str(pids),
                             str(tmp_path / "scratch")], stdout=subprocess.DEVNULL)
    jvms: list[int] = []
    try:
        def started() -> bool:
            files = [pids / "jobmanager.pid", pids / "taskmanager.pid"]
            if not all(f.is_file() for f in files):
                return False
            jvms[:] = [int(f.read_text()) for f in files]
            return all(_alive(pid) for pid in jvms)

        wait_for(started, 30, "both stand-in JVMs running")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        wait_for(lambda: not any(_alive(pid) for pid in jvms), 10, "both JVMs gone with their parent")
    finally:
        proc.kill()
        for pid in jvms:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_children_that_exited_are_reaped_not_left_as_zombies(tmp_path: Path) -> None:
    """A probe: every server the watchdog restarted and that died again stayed `<defunct>` under it."""
    from tradesim.stack.process import OsProcessTable

    handle = OsProcessTable().spawn(["true"], dict(os.environ), tmp_path, tmp_path / "true.log")
    stat = Path(f"/proc/{handle.pid}/stat")
    wait_for(lambda: not _alive(handle.pid), 10, "the child to exit")
    assert stat.exists()  # a zombie until reaped
    OsProcessTable.reap_exited()
    assert not stat.exists()
