"""Helpers for the live-market tests: a tiny scenario of symbols no other test uses, a market that is always
stopped again (the stack is shared), and reading ticks back from `market_data`."""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from typer.testing import CliRunner

from tradesim.adapters.kafka.client import consumer
from tradesim.adapters.redis.client import connect as redis_connect
from tradesim.adapters.redis.prices import PriceCache
from tradesim.cli.app import app
from tradesim.cli.market import start_market
from tradesim.domain.events import Tick, decode
from tradesim.services.market.feed import RunRecord, read_run
from tradesim.settings import Settings
from tradesim.stack.market import RUN_FILE, MarketService, clear_request, market_dir, read_request
from tradesim.stack.supervisor import Supervisor
from tradesim.testing.factories import unique_symbol
from tradesim.testing.waiting import wait_for  # noqa: F401 - re-exported to the tests

runner = CliRunner()


def cli(*args: str) -> Any:
    """Run `tradesim ARGS` in-process; returns the typer Result."""
    return runner.invoke(app, list(args))


@dataclass(frozen=True)
class TinyScenario:
    path: Path
    symbols: tuple[str, str]  # (random walk, flat with a -10 % gap at 1 s)


@pytest.fixture
def tiny(tmp_path: Path) -> Callable[..., TinyScenario]:
    """Write a 2 s scenario with 100 ms ticks: symbol A walks randomly, symbol B is flat at 100 and gaps -10 %
    at t=1 s, so each pass moves B down 10 % and a reset at the loop point would show as a jump back up."""

    def make(duration_s: float = 2, interval_ms: int = 100) -> TinyScenario:
        a, b = unique_symbol("LA"), unique_symbol("LB")
        path = tmp_path / f"tiny-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(textwrap.dedent(f"""\
            id: live-test
            start: 2024-01-02T14:30:00Z
            duration_s: {duration_s}
            tick_interval_ms: {interval_ms}
            seed: 11
            symbols:
              - {{symbol: {a}, initial_price: "50.00", volatility: 0.5}}
              - {{symbol: {b}, initial_price: "100.00", volatility: 0, spread: {{absolute: "0.02"}}}}
            events:
              - {{at_s: {duration_s / 2}, symbol: {b}, move_pct: -10}}
            """))
        return TinyScenario(path, (a, b))

    return make


@pytest.fixture
def cache(settings: Settings) -> PriceCache:
    return PriceCache(redis_connect(settings.redis))


def market_row(settings: Settings) -> Any:
    return Supervisor(settings, [MarketService(settings)]).status()[0]


def current_run(settings: Settings) -> RunRecord:
    run = read_run(market_dir(settings) / RUN_FILE)
    assert run is not None, "the feed wrote no run file"
    assert run.pid == market_row(settings).pid, "the run file is not the running feed's"
    return run


def status_json(*only: str) -> dict[str, Any]:
    args = ["status", "--json"] + (["--only", ",".join(only)] if only else [])
    result = cli(*args)
    doc: dict[str, Any] = json.loads(result.stdout)
    doc["exit_code"] = result.exit_code
    return doc


@pytest.fixture
def market(settings: Settings) -> Iterator[None]:
    """The test starts with no market (one someone else had started is stopped first and put back after), and
    the market the test started is stopped at its end."""
    before = read_request(settings)
    if before is not None:
        clear_request(settings)
        Supervisor(settings, [MarketService(settings)]).down()
    yield
    clear_request(settings)
    Supervisor(settings, [MarketService(settings)]).down()
    if before is not None:
        start_market(settings, before.scenario, before.speed, before.loop)


@dataclass
class TickReader:
    """Every tick on `market_data` from the moment the reader was opened."""

    c: Consumer
    seen: list[Tick] = field(default_factory=list)

    def poll(self) -> None:
        for m in self.c.consume(1000, timeout=0.2):
            if m.error() is None:
                self.seen.append(decode(Tick, m.value()))

    def of(self, symbol: str, run_id: int) -> list[Tick]:
        return [t for t in self.seen if t.symbol == symbol and t.run_id == run_id]


@pytest.fixture
def ticks(settings: Settings) -> Iterator[TickReader]:
    topic = settings.topics.market_data
    c = consumer(settings.kafka, group_id="probe-" + uuid.uuid4().hex[:8])
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
              for p in parts])
    yield TickReader(c)
    c.close()
