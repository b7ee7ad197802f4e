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


class _Fetches:
    """A consumer whose every fetch takes `step_s` (one second) of a fake clock and returns the next batch of
    records."""

    def __init__(self, batches: list[int], step_s: float = 1.0) -> None:
        self.batches = batches
        self.step_s = step_s
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        self.now += self.step_s
        count = self.batches.pop(0) if self.batches else 0
        return [SimpleNamespace(error=lambda: None, value=lambda: b"{}")] * min(count, num_messages)

    def subscribe(self, _topics: list[str]) -> None:
        pass

    def close(self) -> None:
        self.now += 0.5  # leaving the group takes a while


def test_a_rate_over_fetches_leaves_out_what_the_first_fetch_brought(settings: Settings,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Three fetches of 1,000 records a second apart are 1,000 records/s: the first fetch's records came before it
    was timed. Before, all 3,000 were over the 2 s between the first and the last fetch: 1,500/s (the fewer the
    fetches, the higher: a quick `bench all` reads its 10,020 pass-through records in about ten)."""
    fetches = _Fetches([0, 1000, 1000, 1000])
    monkeypatch.setattr(flink_bars, "_reader", lambda *_args: fetches)
    monkeypatch.setattr(flink_bars, "time", SimpleNamespace(monotonic=fetches.clock))
    rate, seen = flink_bars._count_until(settings, "bench_copy_x", 3000, lambda v: 1, 60)
    assert seen == 3000
    assert rate == pytest.approx(1000.0)


def test_the_bare_consume_rate_leaves_out_the_first_fetch_and_the_close(settings: Settings,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench persistence`'s bare consume, the sinks' yardstick: before, its 3,000 events were over the time from
    the first fetch to after the consumer's close, 2.5 s here: 1,200/s for what arrived at 1,000/s."""
    from benchmarks import persistence

    fetches = _Fetches([0, 1000, 1000, 1000])
    monkeypatch.setattr(persistence, "consumer", lambda *_args: fetches)
    monkeypatch.setattr(persistence, "time", SimpleNamespace(monotonic=fetches.clock))
    assert persistence._bare(settings, "bench_executed_x", 3000) == pytest.approx(1000.0)


def test_the_bare_consume_rate_of_fetches_too_close_to_time_is_not_measured(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: the bare consume divided by its own span, without `benchmarks.stats.rate`'s floor, so fetches
    10 ms apart read as 100,000 events/s."""
    import math

    from benchmarks import persistence

    fetches = _Fetches([1000, 1000], step_s=0.01)
    monkeypatch.setattr(persistence, "consumer", lambda *_args: fetches)
    monkeypatch.setattr(persistence, "time", SimpleNamespace(monotonic=fetches.clock))
    assert math.isnan(persistence._bare(settings, "bench_executed_x", 2000))
