"""`tradesim replay` and `tradesim prices` against the running stack."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tradesim.adapters.redis.prices import PriceCache
from tradesim.cli.app import app
from tradesim.scenarios.generators import generate
from tradesim.scenarios.loader import find_scenario, load_scenario
from tradesim.settings import Settings

from .conftest import wait_for

pytestmark = pytest.mark.integration
runner = CliRunner()


def test_replay_leaves_exactly_the_last_tick_of_each_symbol(settings: Settings, cache: PriceCache) -> None:
    sc = load_scenario(find_scenario("csv-replay", settings.scenarios_dir))
    last = {}
    for t in generate(sc):
        last[t.symbol] = t
    result = runner.invoke(app, ["replay", "csv-replay"])
    assert result.exit_code == 0, result.output
    assert f"published {sum(1 for _ in generate(sc)):,} ticks" in result.output
    for symbol, expected in last.items():
        wait_for(lambda s=symbol, e=expected: (got := cache.latest(s)) is not None and got[0].seq == e.seq
                 and got[0].run_id > 0, what=f"{symbol} last tick")
        got, _ = cache.latest(symbol)  # type: ignore[misc]
        assert got.model_copy(update={"run_id": 0}) == expected  # same tick, stamped with this run's id

    shown = runner.invoke(app, ["prices", *sorted(last)])
    assert shown.exit_code == 0, shown.output
    for symbol, expected in last.items():
        assert symbol in shown.output
        assert str(expected.last) in shown.output


def test_prices_of_an_unknown_symbol_exit_2_after_the_table(settings: Settings, cache: PriceCache) -> None:
    known = sorted(cache.symbols())[0] if cache.symbols() else None
    if known is None:
        runner.invoke(app, ["replay", "csv-replay"])
        wait_for(lambda: bool(cache.symbols()), what="a price in the cache")
        known = sorted(cache.symbols())[0]
    shown = runner.invoke(app, ["prices", known, "NOPE"])
    assert shown.exit_code == 2, shown.output  # before: 0, "unknown symbol" only in the table
    assert known in shown.output
    assert shown.output.strip().splitlines()[-1] == (
        "error: unknown symbol NOPE: no price was ever published for it (see `tradesim scenarios`)")


def test_replay_of_unknown_scenario_exits_2(settings: Settings) -> None:
    result = runner.invoke(app, ["replay", "no-such-scenario"])
    assert result.exit_code == 2
    assert "no-such-scenario" in result.output
    assert "Traceback" not in result.output


def test_replay_with_unknown_symbol_exits_2(settings: Settings) -> None:
    result = runner.invoke(app, ["replay", "calm", "--symbols", "NOPE"])
    assert result.exit_code == 2, result.output
    assert "NOPE" in result.output


def test_replay_with_bad_speed_exits_2() -> None:
    result = runner.invoke(app, ["replay", "calm", "--speed", "-1"])
    assert result.exit_code == 2
    assert "--speed" in result.output
