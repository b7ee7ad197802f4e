"""The stack exporter's /proc reading: a component's CPU and memory are those of its whole process tree."""

from __future__ import annotations

import os
from pathlib import Path

from tradesim.stack.exporter import read_procs, tree


def _stat(root: Path, pid: int, ppid: int, utime: int, stime: int, rss_pages: int, comm: str = "java",
          children: int = 0) -> None:
    (root / str(pid)).mkdir()
    # fields after "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
    # cutime cstime priority nice threads itrealvalue starttime vsize rss
    rest = ["S", ppid, 1, 1, 0, -1, 0, 0, 0, 0, 0, utime, stime, children, 0, 20, 0, 1, 0, 100, 1000, rss_pages]
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
