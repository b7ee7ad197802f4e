"""The Kafka component's storage format: the cluster id it formats a new log dir with."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tradesim.settings import Settings
from tradesim.stack import kafka as kafka_module
from tradesim.stack.kafka import Kafka


def _formats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Kafka, list[list[str]]]:
    """A Kafka component whose storage tool is recorded, not run."""
    calls: list[list[str]] = []
    monkeypatch.setattr(kafka_module, "require_java", lambda *_a: "java")
    monkeypatch.setattr(kafka_module, "run_tool", lambda _c, argv, *_a, **_kw: calls.append(argv) or "")
    return Kafka(Settings(home=tmp_path / "home", cache_dir=tmp_path / "cache")), calls


def _cluster_id(argv: list[str]) -> str:
    return next(a for a in argv if a.startswith("--cluster-id=")).removeprefix("--cluster-id=")


@pytest.mark.parametrize("torn", ["", "MkU3OEVBNTcwNTJENDM2Qg"[:9]])
def test_a_torn_cluster_id_is_replaced_before_the_first_format(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, torn: str) -> None:
    """A review: a cluster.id left empty or cut (a full disk, a kill as it was written) was passed to every
    later format, which failed at every `up`; the log dir had no meta.properties, so no data had the old id."""
    kafka, calls = _formats(tmp_path, monkeypatch)
    kafka.dir.mkdir(parents=True)
    (kafka.dir / "cluster.id").write_text(torn)
    kafka.configure()
    fresh = _cluster_id(calls[0])
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", fresh)  # as `kafka-storage random-uuid` makes them
    assert (kafka.dir / "cluster.id").read_text() == fresh
    kafka.configure()  # the id written is the one kept
    assert _cluster_id(calls[1]) == fresh
    assert sorted(p.name for p in kafka.dir.iterdir()) == ["cluster.id", "log4j2.xml", "server.properties"]


def test_a_formatted_log_dir_is_not_formatted_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kafka, calls = _formats(tmp_path, monkeypatch)
    (kafka.dir / "data").mkdir(parents=True)
    (kafka.dir / "data" / "meta.properties").write_text("cluster.id=MkU3OEVBNTcwNTJENDM2Qg\n")
    (kafka.dir / "cluster.id").write_text("")
    kafka.configure()
    assert calls == []
