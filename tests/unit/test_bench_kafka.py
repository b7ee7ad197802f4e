"""The benchmarks' Kafka readers with the broker down (or the topic missing): one line through `cli_errors`
(exit 1), not a confluent_kafka traceback."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from confluent_kafka import KafkaError, KafkaException

from benchmarks import e2e, flink_bars
from tradesim.adapters.kafka import client
from tradesim.cli.errors import cli_errors
from tradesim.settings import Settings


class _NoBroker:
    """A confluent Consumer whose every request finds no broker."""

    def __init__(self, _conf: dict[str, Any]) -> None:
        pass

    def _down(self, *_args: Any, **_kwargs: Any) -> Any:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Connection refused"))

    list_topics = committed = get_watermark_offsets = _down

    def assign(self, _partitions: Any) -> None:
        pass

    def close(self) -> None:
        pass


class _NoTopic(_NoBroker):
    """A broker that answers, without the topic asked for."""

    def list_topics(self, *_args: Any, **_kwargs: Any) -> Any:
        return SimpleNamespace(topics={})


def _exit_code(call: Callable[[], object]) -> int:
    @cli_errors
    def command() -> None:
        call()

    with pytest.raises(typer.Exit) as exit_info:
        command()
    return int(exit_info.value.exit_code)


@pytest.mark.parametrize("reader", ["backlog", "outcomes", "bars reader"])
def test_kafka_down_is_one_line_and_exit_1(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str], reader: str) -> None:
    monkeypatch.setattr(client, "Consumer", _NoBroker)
    calls: dict[str, Callable[[], object]] = {
        "backlog": lambda: e2e._backlog(settings),
        "outcomes": lambda: e2e._Outcomes(settings),
        "bars reader": lambda: flink_bars._reader(settings, "bench_copy_x"),
    }
    assert _exit_code(calls[reader]) == 1
    err = capsys.readouterr().err
    assert "Connection refused" in err
    assert len(err.strip().splitlines()) == 1


def test_a_missing_topic_is_named(settings: Settings, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(client, "Consumer", _NoTopic)
    assert _exit_code(lambda: flink_bars._reader(settings, "bench_copy_x")) == 1
    assert "topic bench_copy_x is not on the Kafka cluster" in capsys.readouterr().err
