"""The live market as an on-demand stack component (process layer faked), its run ids, and its CLI's bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradesim.cli.app import app
from tradesim.services.market.feed import first_event_time, next_run_id
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


def test_an_unreadable_request_counts_as_none(settings: Settings) -> None:
    path = settings.stack_dir / "market" / "request.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert read_request(settings) is None


def test_run_ids_only_grow_and_event_time_starts_on_a_round_time() -> None:
    assert next_run_id(None, 1_000) == 1_000
    assert next_run_id(999, 1_000) == 1_000
    assert next_run_id(5_000, 1_000) == 5_001  # the clock went back: still newer than the last run
    assert first_event_time(1_700_000_000_001, 1000) == 1_700_000_001_000
    assert first_event_time(1_700_000_000_000, 1000) == 1_700_000_000_000


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
