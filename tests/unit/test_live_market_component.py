"""The live market as an on-demand stack component (process layer faked), its run ids, and its CLI's bad input."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradesim.cli.app import app
from tradesim.cli.market import _ahead
from tradesim.domain.events import Tick
from tradesim.services.market.feed import (
    RunFile,
    RunRecord,
    first_event_time,
    known_clocks,
    next_run_id,
    read_run,
    start_time,
)
from tradesim.settings import Settings
from tradesim.stack.component import Unhealthy
from tradesim.stack.market import START_HINT, MarketRequest, MarketService, clear_request, read_request, write_request
from tradesim.stack.state import StateFile
from tradesim.stack.supervisor import Supervisor, status_document
from tradesim.testing.fakes import FakeComponent, FakeProcesses


class _Market(MarketService):
    """The real component with a health check that asks the fake process table instead of HTTP."""

    def __init__(self, settings: Settings, processes: FakeProcesses) -> None:
        super().__init__(settings)
        self.processes = processes

    def check_health(self) -> None:
        record = StateFile(self.settings.stack_dir).load().components.get(self.name)
        if record is None or not self.processes.is_alive(record.handle):
            raise Unhealthy("fake: not answering")


@pytest.fixture
def procs() -> FakeProcesses:
    return FakeProcesses()


@pytest.fixture
def sup(settings: Settings, procs: FakeProcesses) -> Supervisor:
    return Supervisor(settings, [FakeComponent(settings, "alpha", 7001, procs), _Market(settings, procs)],
                      processes=procs)


def _row(sup: Supervisor, name: str = "market"):  # type: ignore[no-untyped-def]
    return next(r for r in sup.status() if r.name == name)


def test_a_market_nobody_started_is_stopped_but_does_not_make_the_stack_unhealthy(
        sup: Supervisor, procs: FakeProcesses, settings: Settings) -> None:
    rows = sup.up()
    assert procs.spawned == [["alpha-server"]]
    market = next(r for r in rows if r.name == "market")
    assert (market.state, market.healthy, market.detail) == ("stopped", True, START_HINT)
    assert status_document(settings, "native", sup.status())["healthy"] is True


def test_a_requested_market_is_started_with_its_request_and_comes_back_after_down(
        sup: Supervisor, procs: FakeProcesses, settings: Settings) -> None:
    write_request(settings, MarketRequest("flash-crash", 2.5, False))
    sup.up()
    argv = procs.spawned[-1]
    assert argv[1:3] == ["-m", "tradesim.services.market"]
    assert argv[3:] == ["--scenario", "flash-crash", "--speed", "2.5", "--no-loop",
                        "--run-file", str(settings.stack_dir / "market" / "run.json")]
    assert _row(sup).state == "running"
    sup.down()  # `tradesim down` stops it with the rest but keeps the request...
    assert read_request(settings) == MarketRequest("flash-crash", 2.5, False)
    assert (_row(sup).state, _row(sup).healthy) == ("stopped", False)  # like every server after down
    sup.up()  # ...so the next `tradesim up` brings it back
    assert _row(sup).state == "running"
    assert len([a for a in procs.spawned if "tradesim.services.market" in a]) == 2


def test_a_requested_market_that_died_is_down_until_the_request_is_withdrawn(
        sup: Supervisor, procs: FakeProcesses, settings: Settings) -> None:
    write_request(settings, MarketRequest("calm", 1.0, True))
    sup.up()
    procs.kill(sup.state_file.load().components["market"].pid)
    assert (_row(sup).state, _row(sup).healthy) == ("down", False)
    assert clear_request(settings) is True
    assert (_row(sup).state, _row(sup).healthy) == ("stopped", True)
    assert clear_request(settings) is False


def test_a_request_whose_scenario_can_no_longer_run_leaves_the_market_stopped_and_the_stack_healthy(
        sup: Supervisor, procs: FakeProcesses, settings: Settings, tmp_path: Path) -> None:
    """A probe: `market start mine.yaml`, the file removed, then every `up` failed on the feed's exit (and the
    watchdog kept restarting it) until `market stop`."""
    mine = tmp_path / "mine.yaml"
    mine.write_text((Path(__file__).parents[2] / "scenarios" / "calm.yaml").read_text())
    write_request(settings, MarketRequest(str(mine), 1.0, True))
    sup.up()
    assert _row(sup).state == "running"
    sup.down()
    mine.unlink()
    sup.up()
    assert sum("tradesim.services.market" in argv for argv in procs.spawned) == 1, "the feed was started again"
    row = _row(sup)
    assert (row.state, row.healthy) == ("stopped", True)
    assert "its scenario cannot run" in row.detail
    assert "mine.yaml: file not found" in row.detail
    assert "tradesim market stop" in row.detail
    assert status_document(settings, "native", sup.status())["healthy"] is True
    mine.write_text("id: broken\n")  # back, but not a scenario: the same, with the file's own problem
    assert "its scenario cannot run: " in (_row(sup).detail or "")
    mine.write_text((Path(__file__).parents[2] / "scenarios" / "calm.yaml").read_text())
    sup.up()  # a playable file again: it runs
    assert _row(sup).state == "running"


def test_an_unreadable_request_counts_as_none(settings: Settings) -> None:
    path = settings.stack_dir / "market" / "request.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert read_request(settings) is None
    for speed in (0, -1, "NaN"):  # a probe: the feed refused each, exit 2, and so every `up` failed
        path.write_text(json.dumps({"scenario": "calm", "speed": speed, "loop": True}))
        assert read_request(settings) is None, speed


def test_two_requests_written_at_once_do_not_collide(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: two `market start`s at once shared one temporary file; one's replace found it moved by the other
    and failed with FileNotFoundError. Here a second request is written as the first is about to be put in place."""
    real_replace, first, second = os.replace, MarketRequest("calm", 1.0, True), MarketRequest("flash-crash", 2.0, False)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if not interleaved:
            interleaved.append(True)
            write_request(settings, second)
        real_replace(src, dst)

    interleaved: list[bool] = []
    monkeypatch.setattr(os, "replace", replace)
    write_request(settings, first)
    assert interleaved
    assert read_request(settings) == first  # the last put in place
    assert os.listdir(settings.stack_dir / "market") == ["request.json"]  # no temporary file left


def test_run_ids_only_grow_and_event_time_starts_on_a_round_time() -> None:
    assert next_run_id(None, 1_000) == 1_000
    assert next_run_id(999, 1_000) == 1_000
    assert next_run_id(5_000, 1_000) == 5_001  # the clock went back: still newer than the last run
    assert first_event_time(1_700_000_000_001, 1000) == 1_700_000_001_000
    assert first_event_time(1_700_000_000_000, 1000) == 1_700_000_000_000


NOW = 1_700_000_000_000
HOUR = 3_600_000


def _tick(symbol: str, event_time_ms: int, scenario_id: str = "calm") -> Tick:
    return Tick(symbol=symbol, bid=Decimal("9.99"), ask=Decimal("10.01"), last=Decimal("10"), size=1,
                event_time_ms=event_time_ms, seq=1, scenario_id=scenario_id)


def _record(**changes: object) -> RunRecord:
    base = RunRecord(run_id=1, scenario="calm", scenario_id="calm", speed=100.0, loop=True, start_ms=NOW - HOUR,
                     started_at_ms=NOW - HOUR, pid=1, clocks={"AAPL": NOW + 5 * HOUR, "NVDA": NOW + HOUR})
    return RunRecord(**{**asdict(base), **changes})  # type: ignore[arg-type]


def test_a_new_run_starts_after_the_latest_market_time_of_its_symbols_never_behind_it() -> None:
    """A run at --speed 100 took the market's clock hours past the wall clock; the bars job closes each symbol's
    windows on that clock, so a run that started back at the wall clock had every tick dropped as late."""
    cached = {"AAPL": _tick("AAPL", NOW + 5 * HOUR, "volatile"), "JPM": _tick("JPM", NOW + 9 * HOUR)}
    clocks = known_clocks(cached, None)  # any scenario's tick moves its symbol's clock
    assert clocks == {"AAPL": NOW + 5 * HOUR, "JPM": NOW + 9 * HOUR}
    assert start_time(NOW, 1000, ["AAPL", "MSFT"], clocks) == (NOW + 5 * HOUR + 1000, NOW + 5 * HOUR)
    assert start_time(NOW, 1000, ["MSFT"], clocks) == (NOW, None)  # JPM is not one of the symbols
    assert start_time(NOW + 1, 1000, ["AAPL"], {"AAPL": NOW - HOUR}) == (NOW + 1000, None)  # behind the clock
    assert start_time(NOW, 1000, ["AAPL"], {"AAPL": NOW}) == (NOW + 1000, NOW)  # strictly after its last tick


def test_clocks_carry_forward_through_runs_of_other_symbols_and_replays_that_took_the_cache() -> None:
    """A review: the run file knew only the previous run, so fast calm → replay calm (the cache back in 2024) →
    earnings-gap → calm started calm back at the wall clock."""
    fast_calm = _record(clocks={"AAPL": NOW + 5 * HOUR})
    replayed = {"AAPL": _tick("AAPL", NOW - 900 * 24 * HOUR)}
    other = known_clocks({"NVDA": _tick("NVDA", NOW)}, fast_calm)  # the earnings-gap run's start
    assert other == {"AAPL": NOW + 5 * HOUR, "NVDA": NOW}
    assert known_clocks(replayed, _record(clocks=other))["AAPL"] == NOW + 5 * HOUR
    assert known_clocks({"AAPL": _tick("AAPL", NOW + 6 * HOUR)}, fast_calm)["AAPL"] == NOW + 6 * HOUR
    assert known_clocks({}, None) == {}


def test_a_run_file_of_an_older_shape_is_read_and_a_broken_one_is_none(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    old = {k: v for k, v in asdict(_record()).items() if k not in ("clocks", "continued_ms", "cache_answered")}
    path.write_text(json.dumps({**old, "gone": 1}))  # an unknown field (another version's) is left out
    assert read_run(path) == _record(clocks={})
    path.write_text(json.dumps(asdict(_record(continued_ms=NOW, cache_answered=False))))
    assert read_run(path) == _record(continued_ms=NOW, cache_answered=False)
    for broken in ({"clocks": [1]}, {"clocks": {"AAPL": "soon"}}, {"clocks": {"AAPL": 1.5}},
                   # a probe: the feed died at every start (run_id), `market status` gave a traceback (start_ms)
                   {"run_id": "x"}, {"start_ms": "x"}, {"speed": "fast"}, {"continued_ms": "later"},
                   {"run_id": True}, {"loop": 1}, {"scenario": None}, {"pid": 1.0}):
        path.write_text(json.dumps({**asdict(_record()), **broken}))
        assert read_run(path) is None, broken
    path.write_text(json.dumps({**asdict(_record()), "speed": 100}))  # JSON from elsewhere: an int speed
    assert read_run(path) == _record(speed=100.0)
    path.write_text("[" * 100_000 + "]" * 100_000)  # nested past json's depth: was a RecursionError
    assert read_run(path) is None


def test_the_run_file_keeps_clocks_ahead_of_the_last_tick_while_running_and_exact_when_stopped(
        tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    first = _record(speed=100.0, clocks={"JPM": NOW})
    lazy = RunFile(path, first, every_s=1)
    assert read_run(path) == first
    lazy.advance("AAPL", NOW + 7)
    assert read_run(path) == first  # not yet: at most once a second
    lazy.flush()  # a stop: the exact clock, the earlier runs' kept
    assert read_run(path) == _record(speed=100.0, clocks={"JPM": NOW, "AAPL": NOW + 7})
    running = RunFile(path, _record(speed=100.0, clocks={}), every_s=0.5)
    running._written_at -= 1  # a second went by since the last write
    running.advance("AAPL", NOW + 9)
    assert read_run(path) == _record(speed=100.0, clocks={"AAPL": NOW + 9 + 2 * 500 * 100})


def test_a_burst_after_a_pause_never_leaves_the_run_file_behind_the_last_tick(tmp_path: Path) -> None:
    """After a stall (the process stopped, a slow poll) the clock releases the missed ticks at once: a minute of
    market time within the same second. The run file was rewritten at most once a second, 2 s ahead, so a kill
    in that second left it 58 s behind ticks already sent, and the next run started where its bars were late."""
    path = tmp_path / "run.json"
    feed = RunFile(path, _record(speed=1.0, clocks={}), every_s=1)
    feed._written_at -= 1
    feed.advance("AAPL", NOW)  # written: NOW + 2 s
    for second in range(1, 61):  # the burst, all within the same second of wall time
        feed.advance("AAPL", NOW + second * 1000)
        written = read_run(path)
        assert written is not None
        assert written.clocks["AAPL"] >= NOW + second * 1000  # a kill now would leave it past this tick
    assert written.clocks["AAPL"] <= NOW + 60_000 + 2_000  # still no further ahead than the usual margin


def test_market_start_says_when_market_time_starts_ahead_of_the_wall_clock_and_when_redis_was_not_read() -> None:
    assert _ahead(_record(start_ms=NOW + 2 * HOUR, started_at_ms=NOW)) == ""  # not continued: not its doing
    assert _ahead(_record(start_ms=NOW + 59_000, started_at_ms=NOW, continued_ms=NOW + 58_000)) == ""
    continued = _ahead(_record(start_ms=NOW + 5 * HOUR + 1_800_000, started_at_ms=NOW, continued_ms=NOW))
    assert "5 h 30 min ahead of the wall clock" in continued
    assert "2 min ahead" in _ahead(_record(start_ms=NOW + 150_000, started_at_ms=NOW, continued_ms=NOW))
    assert "3 d 4 h ahead" in _ahead(_record(start_ms=NOW + 76 * HOUR, started_at_ms=NOW, continued_ms=NOW))
    assert "Redis did not answer" in _ahead(_record(start_ms=NOW, started_at_ms=NOW, cache_answered=False))


# --- CLI: bad input is exit 2 with one line, before anything is touched -----------------------------------

runner = CliRunner()


@pytest.fixture
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))


def _one_line_error(output: str) -> str:
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


@pytest.mark.usefixtures("_isolated")
@pytest.mark.parametrize(("args", "expected"), [
    (["market", "start", "no-such-scenario"], "unknown scenario"),
    (["market", "start", "--speed", "0"], "--speed must be a number of at least 0.001"),
    (["market", "start", "--speed", "fast"], "--speed must be a number of at least 0.001, got 'fast'"),
    (["market", "start", "--speed", "5e-324"], "at least 0.001"),  # a review: accepted, the market never moved
    (["market", "start", "--speed", "1e6"], "--speed is at most 1000 for the live market"),  # loops: it would flood
    (["market", "start", "--speed", "nan"], "--speed must be a number of at least 0.001"),
    (["market", "start", "csv-replay"], "recorded CSV cannot continue"),
    (["up", "--demo", "--only", "kafka"], "--demo brings up the whole stack"),
    (["up", "--demo", "--demo-user", ""], "'' is not a user id"),  # a probe: checked once the stack was up
    (["up", "--demo-user", "carol"], "--demo-user names the account of --demo; add --demo"),  # was ignored
])
def test_bad_market_input_exits_2_with_one_line(args: list[str], expected: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert expected in _one_line_error(result.output)
    assert not (Path("home") / "stack" / "market" / "request.json").exists()


@pytest.mark.usefixtures("_isolated")
def test_market_stop_when_nothing_runs_says_so() -> None:
    result = runner.invoke(app, ["market", "stop"])
    assert result.exit_code == 0, result.output
    assert "market was not running" in result.output


def test_a_request_stored_before_the_speed_bound_runs_at_the_bound(settings: Settings) -> None:
    """Before: a stored speed of 5,000 made the feed exit at every `up`, which then stopped there."""
    write_request(settings, MarketRequest("calm", 5000.0, True))
    assert read_request(settings) == MarketRequest("calm", 1000.0, True)
    assert "--speed 1000" in " ".join(MarketService(settings).argv())


@pytest.mark.usefixtures("_isolated")
def test_market_status_tells_not_started_from_stopped_with_the_stack() -> None:
    """A probe: after `down` it printed "market stopped: -", and after `market stop` "nobody started it"."""
    from tradesim.settings import load_settings

    idle = runner.invoke(app, ["market", "status"])
    assert (idle.exit_code, idle.output.strip()) == (0, f"market stopped: {START_HINT}")
    write_request(load_settings(), MarketRequest("calm", 1.0, True))  # started, then `tradesim down`
    down = runner.invoke(app, ["market", "status"])
    assert down.exit_code == 1
    assert down.output.strip() == "market stopped, but started (`tradesim down`?): `tradesim up` brings it back"
