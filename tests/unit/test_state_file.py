from __future__ import annotations

import json
from pathlib import Path

import pytest

from tradesim.stack.state import ComponentRecord, StackState, StateFile


def _record(pid: int = 42) -> ComponentRecord:
    return ComponentRecord(pid=pid, start_ticks=99, started_at=1.5, address="127.0.0.1:1", version="1", log="/x")


def test_round_trip(tmp_path: Path) -> None:
    sf = StateFile(tmp_path)
    sf.save(StackState(components={"kafka": _record(42), "redis": _record(43)}))
    loaded = sf.load()
    assert loaded.components["kafka"] == _record(42)
    assert loaded.components["redis"].pid == 43
    raw = json.loads((tmp_path / "state.json").read_text())
    assert raw["schema_version"] == 1
    assert set(raw["components"]["kafka"]) == {"pid", "start_ticks", "started_at", "address", "version", "log"}


def test_missing_file_is_empty(tmp_path: Path) -> None:
    assert StateFile(tmp_path / "nowhere").load().components == {}


def test_torn_or_foreign_file_is_treated_as_empty(tmp_path: Path) -> None:
    sf = StateFile(tmp_path)
    sf.path.write_text("{not json")
    assert sf.load().components == {}
    sf.path.write_text(json.dumps({"schema_version": 999, "components": {"kafka": {}}}))
    assert sf.load().components == {}


@pytest.mark.parametrize("text", [
    "[]", '{"schema_version": 1, "components": []}', '{"schema_version": 1, "components": {"kafka": {"pid": 1}}}',
    '{"schema_version": 1, "components": {"kafka": {"pid": "x", "start_ticks": 1, "started_at": 1.0, '
    '"address": "a", "version": "1", "log": "/x"}}}', '{"schema_version": 1, "runtime": [], "components": {}}'])
def test_a_file_of_another_shape_is_treated_as_empty(tmp_path: Path, text: str) -> None:
    """A probe: `[]`, a list of components or a record missing fields gave AttributeError and TypeError
    tracebacks from status, up and down."""
    sf = StateFile(tmp_path)
    sf.path.write_text(text)
    assert sf.load() == StackState()


def test_a_fifo_in_its_place_does_not_block(tmp_path: Path) -> None:
    """A probe: `status` hung for ever reading a FIFO named state.json."""
    import os

    os.mkfifo(tmp_path / "state.json")
    assert StateFile(tmp_path).load() == StackState()


def test_save_is_atomic_no_tmp_left(tmp_path: Path) -> None:
    """A reader that opened the file before a save reads the old state whole: the new one replaces the file, it
    is not written into it (a save truncating in place showed that reader half a file, or the new one)."""
    sf = StateFile(tmp_path)
    sf.save(StackState(components={"kafka": _record(42)}))
    with sf.path.open() as reader:
        sf.save(StackState(components={"redis": _record(43)}))
        assert json.loads(reader.read())["components"]["kafka"]["pid"] == 42
    assert sf.load() == StackState(components={"redis": _record(43)})
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_claiming_a_folder_owned_before_the_marker_needs_no_lock(tmp_path: Path) -> None:
    """A review: `down` of a stack started before the marker existed holds the state lock while it parks the
    jobs, whose notes claim the folder: that claim took the lock again and waited on it for ever."""
    import threading

    from tradesim.stack.state import MARKER, claim_stack_dir

    sf = StateFile(tmp_path)
    sf.save(StackState(components={"kafka": _record()}))
    assert not (tmp_path / MARKER).exists()
    done = threading.Event()
    with sf.locked():
        worker = threading.Thread(target=lambda: (claim_stack_dir(tmp_path), done.set()), daemon=True)
        worker.start()
        assert done.wait(10), "claim_stack_dir waited on the lock its caller holds"
    assert (tmp_path / MARKER).is_file()

