"""`tradesim market start|stop` on the real stack: a supervised feed whose prices reach Redis with a new run id,
stop for good when stopped, and continue across the loop point without a jump."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from itertools import islice

import pytest
from confluent_kafka import TopicPartition

from tradesim.adapters.kafka.client import consumer
from tradesim.adapters.redis.prices import PriceCache
from tradesim.domain.events import Bar, decode
from tradesim.scenarios.generators import generate_live
from tradesim.scenarios.loader import load_scenario
from tradesim.settings import Settings
from tradesim.stack.jobs import submit_job
from tradesim.stack.market import START_HINT

from .conftest import TickReader, TinyScenario, cli, current_run, market_row, status_json, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("market")]


def _latest(cache: PriceCache, symbol: str):  # type: ignore[no-untyped-def]
    got = cache.latest(symbol)
    return got[0] if got else None


def test_start_runs_a_component_whose_prices_advance_in_redis_and_stop_ends_them(
        settings: Settings, cache: PriceCache, ticks: TickReader, tiny: Callable[..., TinyScenario]) -> None:
    sc = tiny()
    a, b = sc.symbols
    started = cli("market", "start", str(sc.path), "--speed", "1")
    assert started.exit_code == 0, started.output
    assert "market running" in started.output

    doc = status_json("market")
    (row,) = doc["components"]
    assert (row["name"], row["state"], row["healthy"], doc["exit_code"]) == ("market", "running", True, 0)
    run = current_run(settings)
    assert abs(run.start_ms - time.time() * 1000) < 60_000  # a live market: event time is now, not the file's 2024

    wait_for(lambda: (t := _latest(cache, a)) is not None and t.run_id == run.run_id and t.seq >= 3, 30,
             f"{a} from run {run.run_id} in the price cache")
    first = _latest(cache, a)
    wait_for(lambda: _latest(cache, a).event_time_ms > first.event_time_ms, 10, "event time advancing")
    wait_for(lambda: _latest(cache, b).last < Decimal("100"), 30, f"{b} past its gap")

    # a second start with another choice restarts the feed with a newer run id that takes over the cache and
    # goes on from the last cached prices (B stays down, it does not jump back to the file's 100)
    again = cli("market", "start", str(sc.path), "--speed", "2")
    assert again.exit_code == 0, again.output
    rerun = current_run(settings)
    assert rerun.run_id > run.run_id
    wait_for(lambda: _latest(cache, a).run_id == rerun.run_id, 30, "the newer run taking over the cache")

    def both_runs() -> bool:
        ticks.poll()
        return bool(ticks.of(b, rerun.run_id))

    wait_for(both_runs, 30, f"{b} ticks of the newer run on market_data")
    last_old, first_new = ticks.of(b, run.run_id)[-1], ticks.of(b, rerun.run_id)[0]
    assert first_new.seq == 1
    assert first_new.last == last_old.last < Decimal("100")

    same = cli("market", "start", str(sc.path), "--speed", "2")
    assert same.exit_code == 0, same.output
    assert "already running" in same.output
    assert current_run(settings).run_id == rerun.run_id

    stopped = cli("market", "stop")
    assert stopped.exit_code == 0, stopped.output
    doc = status_json("market")
    (row,) = doc["components"]
    assert (row["state"], row["healthy"], row["detail"], doc["exit_code"]) == ("stopped", True, START_HINT, 0)
    table = cli("status", "--only", "market")
    assert table.exit_code == 0, table.output
    assert "not started" in table.output  # the hint, wrapped to the table's width
    last = _latest(cache, a)
    time.sleep(1.0)  # absence of ticks needs a window: 20 tick intervals at speed 2
    assert _latest(cache, a) == last


def test_a_looped_scenario_continues_across_the_loop_without_a_jump(
        settings: Settings, ticks: TickReader, tiny: Callable[..., TinyScenario]) -> None:
    sc = tiny()
    a, b = sc.symbols
    scenario = load_scenario(sc.path)
    steps = scenario.steps
    started = cli("market", "start", str(sc.path), "--speed", "10", "--loop")
    assert started.exit_code == 0, started.output
    run = current_run(settings)

    def three_passes() -> bool:
        ticks.poll()
        return len(ticks.of(a, run.run_id)) >= 3 * steps and len(ticks.of(b, run.run_id)) >= 3 * steps

    wait_for(three_passes, 60, "three passes of the scenario on market_data")
    for symbol in (a, b):
        got = ticks.of(symbol, run.run_id)[: 3 * steps]
        assert [t.seq for t in got] == list(range(1, 3 * steps + 1))
        assert all(y.event_time_ms - x.event_time_ms == scenario.tick_interval_ms
                   for x, y in zip(got, got[1:], strict=False))
        assert got[0].event_time_ms == run.start_ms
    # B is flat and gaps -10 % mid-pass: each pass starts where the last ended, never back at 100
    b_last = [t.last for t in ticks.of(b, run.run_id)]
    assert b_last[0] == Decimal("100.00")
    assert b_last[steps - 1] == b_last[steps] == Decimal("90.00")
    assert b_last[2 * steps - 1] == b_last[2 * steps] == Decimal("81.00")
    # and the whole stream is exactly the live generator's, stamped with the run id
    expected = [t.model_copy(update={"run_id": run.run_id})
                for t in islice(generate_live(scenario, run.start_ms), 3 * steps * 2)]
    for symbol in (a, b):
        assert ticks.of(symbol, run.run_id)[: 3 * steps] == [t for t in expected if t.symbol == symbol]

    status = cli("market", "status", "--json")
    assert status.exit_code == 0, status.output
    assert '"loops_completed": ' in status.output
    wait_for(lambda: market_row(settings).healthy, 5, "the feed still healthy")


def test_a_replay_says_it_takes_the_market_s_symbols_and_market_start_takes_them_back(
        settings: Settings, cache: PriceCache, tiny: Callable[..., TinyScenario]) -> None:
    """A probe: after `tradesim replay` of the market's symbols, `market start` (the same choice) answered
    "already running" and the symbols stayed frozen at the replay's last price until orders were refused as
    stale; and the replay said nothing of taking over the prices that open orders are matched against."""
    sc = tiny(duration_s=10, interval_ms=500)
    a, b = sc.symbols
    started = cli("market", "start", str(sc.path), "--speed", "1")
    assert started.exit_code == 0, started.output
    run = current_run(settings)
    wait_for(lambda: (t := _latest(cache, a)) is not None and t.run_id == run.run_id, 30, f"{a} from the market")

    replayed = cli("replay", str(sc.path), "--symbols", a)
    assert replayed.exit_code == 0, replayed.output
    assert f"note: {a} already have prices" in replayed.output
    assert "books that match open orders" in replayed.output
    wait_for(lambda: _latest(cache, a).run_id > run.run_id, 30, f"the replay owning {a}")
    replay_run = _latest(cache, a).run_id

    again = cli("market", "start", str(sc.path), "--speed", "1")
    assert again.exit_code == 0, again.output
    assert f"restarted to take back {a} from a later replay" in again.output
    rerun = current_run(settings)
    assert rerun.run_id > replay_run
    wait_for(lambda: _latest(cache, a).run_id == rerun.run_id, 30, f"the market owning {a} again")
    same = cli("market", "start", str(sc.path), "--speed", "1")
    assert "already running" in same.output  # nothing taken over: kept as it is
    assert current_run(settings).run_id == rerun.run_id


def test_a_run_after_a_faster_one_goes_on_from_its_market_time_and_its_ticks_still_make_bars(
        settings: Settings, cache: PriceCache, ticks: TickReader, tiny: Callable[..., TinyScenario]) -> None:
    """Found live: after `market start calm --speed 100` for a few minutes, `market start calm` began back at the
    wall clock, hours behind where the bars job's clock for those symbols stood: it dropped every tick as late,
    and no bar came for hours, without a word. Here a replay on the file's 2024 clock takes the price cache over
    in between, so only the run file still knows where the market's clock stood."""
    submit_job(settings, "bars")  # a no-op when the stack's jobs run
    sc = tiny(duration_s=10, interval_ms=1000)
    a, b = sc.symbols
    fast = cli("market", "start", str(sc.path), "--speed", "1000")
    assert fast.exit_code == 0, fast.output
    run = current_run(settings)
    ahead_ms = 10 * 60_000
    wait_for(lambda: (t := _latest(cache, a)) is not None and t.run_id == run.run_id
             and t.event_time_ms > time.time() * 1000 + ahead_ms, 60, f"{a}'s market time 10 minutes ahead")

    replayed = cli("replay", str(sc.path))
    assert replayed.exit_code == 0, replayed.output
    assert f"note: {a}, {b} already ticked at later market times" in replayed.output
    wait_for(lambda: _latest(cache, a).event_time_ms < time.time() * 1000 - 365 * 86_400_000, 30,
             "the replay's 2024 ticks in the price cache")

    topic = settings.topics.market_bars
    bars = consumer(settings.kafka, group_id="probe-" + uuid.uuid4().hex[:8])
    try:
        parts = bars.list_topics(topic, timeout=10).topics[topic].partitions
        bars.assign([TopicPartition(topic, p, bars.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
                     for p in parts])
        real_time = cli("market", "start", str(sc.path), "--speed", "1")
        assert real_time.exit_code == 0, real_time.output
        assert "ahead of the wall clock" in real_time.output
        rerun = current_run(settings)
        assert rerun.start_ms > time.time() * 1000 + ahead_ms

        def new_run_ticks() -> bool:
            ticks.poll()
            return bool(ticks.of(a, rerun.run_id))

        wait_for(new_run_ticks, 30, f"{a} ticks of the real-time run")
        fast_end = ticks.of(a, run.run_id)[-1].event_time_ms
        assert ticks.of(a, rerun.run_id)[0].event_time_ms > fast_end

        seen: list[Bar] = []

        def a_bar_of_the_new_run() -> bool:
            """A 1 s bar of a window only the real-time run's ticks fall in (the fast run's bars keep coming
            for a while: the job closes its last windows on the new ticks' clock)."""
            ticks.poll()
            for m in bars.consume(100, timeout=0.2):
                if m.error() is None and m.key() == a.encode():
                    seen.append(decode(Bar, m.value()))
            windows = {t.event_time_ms // 1000 * 1000 for t in ticks.of(a, rerun.run_id)}
            return any(b.interval == "1s" and b.window_start_ms in windows and b.window_start_ms > fast_end
                       for b in seen)

        wait_for(a_bar_of_the_new_run, 60, f"a 1 s bar of {a} from the real-time run's ticks")
    finally:
        bars.close()
