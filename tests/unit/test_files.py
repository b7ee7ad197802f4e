"""tradesim.files: a file written whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradesim.files import replace_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.json"
    replace_text(path, "old\n")
    with pytest.raises(UnicodeEncodeError):
        replace_text(path, "new \udcff\n")  # a lone surrogate cannot be written: the write fails half-way
    assert path.read_text() == "old\n"
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]
    replace_text(path, "new\n")
    assert path.read_text() == "new\n"
    assert path.stat().st_mode & 0o077 == 0  # private: the credentials file holds keys


def test_a_file_for_others_gets_the_mode_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    replace_text(path, "{}\n", mode=0o644)
    assert (path.read_text(), path.stat().st_mode & 0o777) == ("{}\n", 0o644)
