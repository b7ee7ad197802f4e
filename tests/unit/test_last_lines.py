"""`tradesim logs -n N` and status read a log's last lines from its end."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradesim.stack.supervisor import last_lines


@pytest.mark.parametrize("block", [7, 64, 64 * 1024])  # lines across block edges, and one block for all
def test_the_last_lines_are_whole_and_as_many_as_asked(tmp_path: Path, block: int) -> None:
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {i} " + "x" * (i % 13) + "\n" for i in range(2000)))
    want = [f"line {i} " + "x" * (i % 13) for i in range(2000)]
    assert last_lines(log, 5, block=block) == want[-5:]
    # before: only the last 64 KiB were read, so a long tail came back short, its first line cut
    assert last_lines(log, 1500, block=block) == want[-1500:]
    assert last_lines(log, 10_000, block=block) == want


def test_a_log_without_a_final_newline_or_at_all(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("a\nb\nc")
    assert last_lines(log, 2, block=2) == ["b", "c"]
    assert last_lines(tmp_path / "none.log", 3) == []
