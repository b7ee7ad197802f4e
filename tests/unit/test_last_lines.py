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


@pytest.mark.parametrize("block", [3, 64 * 1024])
def test_a_line_is_what_ends_at_a_newline_alone(tmp_path: Path, block: int) -> None:
    """Before: a progress bar's carriage returns and a form feed cut lines too, so `logs -n 4` printed four pieces
    of the last two lines and left out the two before them."""
    log = tmp_path / "server.log"
    log.write_bytes(b"one\ntwo\r\ndownload 10%\r55%\r100%\nfour\x0cpage\n")
    assert last_lines(log, 4, block=block) == ["one", "two", "download 10%\r55%\r100%", "four\x0cpage"]
    assert last_lines(log, 1, block=block) == ["four\x0cpage"]
