"""The backup manifest: written last, so a folder without one, or with a damaged or foreign one, is refused with
one line (exit 2 in the CLI) before a restore touches anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tradesim.stack.backup import FORMAT, MANIFEST, Manifest, describe
from tradesim.stack.errors import UserError


def _manifest() -> Manifest:
    return Manifest(FORMAT, "0.1.0", 1.0, 2.0, 3.0, kafka={"orders": [[0, 5, 9], [1, 0, 2]]},
                    groups={"g": {"orders": {"0": 7}}}, dynamodb={"Orders": 4}, clickhouse={"trades": 6},
                    opensearch={"trades-1": ["trades"]}, jobs={"execution": "flink/execution/savepoint-1"})


def test_a_manifest_reads_back_as_written(tmp_path: Path) -> None:
    _manifest().save(tmp_path)
    assert Manifest.load(tmp_path) == _manifest()
    assert describe(Manifest.load(tmp_path)) == {"kafka records": 6, "DynamoDB items": 4, "search indices": 1,
                                                 "ClickHouse rows": 6, "job savepoints": 1}


def test_a_folder_without_a_manifest_is_not_a_backup(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a tradesim backup"):
        Manifest.load(tmp_path)


@pytest.mark.parametrize(("text", "says"), [
    ("{not json", "not a valid backup manifest"),
    (json.dumps({"format": FORMAT}), "not a valid backup manifest"),
    (json.dumps({**json.loads(json.dumps(_manifest().__dict__)), "format": FORMAT + 1}), f"format {FORMAT + 1}"),
])
def test_a_damaged_or_foreign_manifest_is_refused(tmp_path: Path, text: str, says: str) -> None:
    (tmp_path / MANIFEST).write_text(text)
    with pytest.raises(UserError, match=says):
        Manifest.load(tmp_path)
