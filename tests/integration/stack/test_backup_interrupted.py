"""A backup that is interrupted while its jobs are stopped never leaves them without their state: Ctrl-C at the
terminal (a signal to the whole foreground group) does not stop the resume, and a backup killed outright leaves the
savepoints noted, so the next plain submit resumes them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tradesim.settings import Settings
from tradesim.stack.jobs import JOBS, active_catalog_jobs, cluster, local_state, parked, submit_standard_jobs
from tradesim.testing.waiting import wait_for

pytestmark = pytest.mark.integration

STANDARD = {name for name, spec in JOBS.items() if spec.standard}
TRADESIM = str(Path(sys.executable).parent / "tradesim")


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _flink_client_of(pid: int) -> bool:
    return any("flink" in cmd and " run " in f" {cmd} " for _, cmd in _children(pid))


def _backup(folder: Path) -> subprocess.Popen[str]:
    """`tradesim backup` as a terminal runs it: a process group of its own, which a Ctrl-C signals as a whole."""
    return subprocess.Popen([TRADESIM, "backup", str(folder)], start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_a_signal_to_the_group_while_a_backup_resumes_its_jobs_lets_them_resume(settings: Settings,
                                                                                tmp_path: Path) -> None:
    """A probe: Ctrl-C at the terminal (or SIGTERM to the group) reached the `flink run` clients of the resume too,
    which died, so both jobs stayed stopped without a word, their only savepoints in the unfinished backup; `up
    --with-jobs` then started the execution job without its books, and every resting order was lost. SIGTERM here:
    the CLI takes it as it takes Ctrl-C, and a test run in the background (as CI runs) inherits SIGINT ignored."""
    submit_standard_jobs(settings)
    backup = _backup(tmp_path / "backup")
    try:
        wait_for(lambda: _flink_client_of(backup.pid) or backup.poll() is not None, 600, "the resume's flink run")
        assert backup.poll() is None, backup.communicate()[0]
        os.killpg(backup.pid, signal.SIGTERM)
        output, _ = backup.communicate(timeout=600)
    finally:
        if backup.poll() is None:
            backup.kill()
            backup.communicate(timeout=30)
    assert backup.returncode == 130, output
    assert "interrupted: the folder has no manifest, so it is not a backup; remove it" in output, output
    rest = cluster(settings)
    assert set(active_catalog_jobs(rest)) >= STANDARD, output
    for name, job_id in active_catalog_jobs(rest).items():
        if name in STANDARD:
            restored = rest.restored_from(job_id)
            assert restored is not None, f"{name} started without its state"
            assert str(tmp_path / "backup") in restored, restored
    assert parked(settings) == {}  # resumed: nothing left to resume later


def test_a_backup_killed_while_its_jobs_are_stopped_leaves_their_state_to_the_next_submit(settings: Settings,
                                                                                         tmp_path: Path) -> None:
    """A kill -9 (no clean-up at all) after the savepoints: before, the next `up --with-jobs` started the jobs from
    their groups' offsets, without the books of resting orders."""
    submit_standard_jobs(settings)
    folder = tmp_path / "backup"
    backup = _backup(folder)
    try:
        wait_for(lambda: set(parked(settings)) >= STANDARD or backup.poll() is not None, 600,
                 "every standard job stopped with its savepoint")
        assert backup.poll() is None, backup.communicate()[0]
        backup.kill()
    finally:
        if backup.poll() is None:
            backup.kill()
        backup.communicate(timeout=30)  # its output pipe closed too
    noted = parked(settings)
    rest = cluster(settings)
    wait_for(lambda: not STANDARD & set(active_catalog_jobs(rest)), 60, "the stopped jobs gone from the cluster")
    submit_standard_jobs(settings)
    jobs = active_catalog_jobs(rest)
    for name in STANDARD:
        restored = rest.restored_from(jobs[name])
        assert restored is not None, f"{name} started without its state"
        assert local_state(restored).resolve() == local_state(noted[name]).resolve(), (restored, noted)
        assert str(folder) in restored
    assert parked(settings) == {}
