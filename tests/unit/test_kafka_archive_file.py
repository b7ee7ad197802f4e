"""The Kafka archive's file format: what `write` stores, `read` gives back unchanged (null and empty keys and
values, headers with null values), so late orders a backup copies come back as they were published."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradesim.adapters.kafka.archive import ArchiveError, Record, read, write


def test_records_read_back_as_written(tmp_path: Path) -> None:
    records = [Record(0, 5, None, None, None), Record(1, 6, b"k", b"v", [("a", b"x"), ("n", None)]),
               Record(9, 7, b"", b"", None)]
    assert write(tmp_path / "p.bin.gz", records) == 3
    assert list(read(tmp_path / "p.bin.gz")) == records


def test_a_file_that_is_not_an_archive_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "p.bin.gz", [])
    assert list(read(tmp_path / "p.bin.gz")) == []
    import gzip

    (tmp_path / "q.bin.gz").write_bytes(gzip.compress(b"something else"))
    with pytest.raises(ArchiveError, match="not a tradesim Kafka archive"):
        list(read(tmp_path / "q.bin.gz"))
