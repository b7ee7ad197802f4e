"""`tradesim run` and `tradesim smoke` on the real stack, as CI calls them (a subprocess each): the shipped
scenarios pass, a wrong expectation fails readably (exit 1), a broken file exits 2 with its line, a stack that
cannot be used exits 3, and the outcomes hash is the same at --speed 10 and --fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tradesim.cli.run import SMOKE
from tradesim.jobs.bars_logic import INTERVALS_MS
from tradesim.scenarios.generators import generate
from tradesim.scenarios.loader import load_scenario
from tradesim.settings import Settings
from tradesim.stack.supervisor import Supervisor

pytestmark = pytest.mark.integration
TRADESIM = str(Path(sys.executable).parent / "tradesim")
SCENARIOS = Path(__file__).resolve().parents[3] / "scenarios"


def _tradesim(*args: str, env: dict[str, str] | None = None, timeout_s: float = 300,
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TRADESIM, *args], capture_output=True, text=True, timeout=timeout_s,  # noqa: S603
                          env={**os.environ, **(env or {})}, check=False)


def _junit(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()  # noqa: S314 - our own file
    assert root.tag == "testsuites"
    return root


def _orders_shown(stdout: str) -> dict[str, int]:
    """How many rows each run's `orders` table has in the output of `tradesim run` or `smoke`, by scenario."""
    shown: dict[str, int] = {}
    run, rows = "", None
    for line in stdout.splitlines():
        if line.endswith(" · as fast as possible"):
            run = line.split(" · ")[0]
        elif line == "orders":
            rows = 0
        elif line == "accounts" and rows is not None:
            shown[run], rows = rows, None
        elif rows is not None and line.startswith(("│", "|")):  # a body row (the header's start with ┃)
            rows += 1
    return shown


def test_an_explicit_idempotency_key_is_never_taken_for_another_orders_id(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text("""\
id: keys
start: 2024-01-02T14:30:00Z
duration_s: 20
tick_interval_ms: 1000
seed: 7
symbols:
  - {symbol: AAPL, initial_price: "100"}
accounts:
  - {name: k, cash: "10000.00"}
orders:
  - {id: a, at: 2s, account: k, symbol: AAPL, side: buy, qty: 1}
  - {id: b, at: 3s, account: k, symbol: AAPL, side: buy, qty: 2, idempotency_key: a}
expect:
  orders:
    a: {status: executed}
    b: {status: executed}
  accounts:
    k: {positions: {AAPL: 3}}
""")
    done = _tradesim("run", str(path), "--fast")
    # before: b's key `a` was order a's default key too, so b was refused as a retry with another body (409)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("start", ["1995-01-03T14:30:00Z", "2090-01-03T14:30:00Z"])
def test_the_read_sides_volume_is_found_whatever_year_the_scenario_plays_in(tmp_path: Path, start: str) -> None:
    """A probe: the runner asked analytics for volume from the scenario's start (market time) while it buckets by
    decision time (the wall clock): a 1995 run asked for 11,661 days (refused, read as 0 shares after a 60 s
    wait), a 2090 one missed today."""
    path = tmp_path / "years.yaml"
    path.write_text(f"""\
id: years
start: {start}
duration_s: 10
tick_interval_ms: 1000
seed: 3
symbols:
  - {{symbol: IBM, initial_price: "100"}}
accounts:
  - {{name: y, cash: "10000.00"}}
orders:
  - {{id: a, at: 2s, account: y, symbol: IBM, side: buy, qty: 10}}
expect:
  orders:
    a: {{status: executed}}
  read_side: {{searchable_trades: 1, volume: {{IBM: 10}}}}
""")
    done = _tradesim("run", str(path), "--fast")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "did not catch up" not in done.stdout + done.stderr


def test_a_market_only_scenario_counts_no_searchable_trades(tmp_path: Path) -> None:
    """A review: with no account of the scenario's, the runner's own barrier orders were taken off a count that
    never held them, so `searchable_trades: 0` failed with "got -1"."""
    path = tmp_path / "quiet.yaml"
    path.write_text("""\
id: quiet
start: 2024-01-02T14:30:00Z
duration_s: 5
tick_interval_ms: 500
seed: 1
symbols:
  - {symbol: QQ, initial_price: "10"}
expect:
  read_side: {searchable_trades: 0}
""")
    done = _tradesim("run", str(path), "--fast", "--json", str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((tmp_path / "r.json").read_text())["read_side"]["searchable_trades"] == 0


def test_a_symbol_whose_feed_stops_early_does_not_hold_the_run(tmp_path: Path) -> None:
    """A probe: the runner waited, for every symbol, for the bar of the run's last tick; a CSV symbol that stopped
    at 20 s of 60 never has one, so every such run stalled 60 s and said the bars were incomplete."""
    rows = "".join(f"2024-03-15T13:30:{s:02d}.250Z,XOM,100,100.04,100.02,100\n" for s in range(20))
    (tmp_path / "halt.csv").write_text("timestamp,symbol,bid,ask,last,size\n" + rows)
    path = tmp_path / "halt.yaml"
    path.write_text("""\
id: halt
start: 2024-03-15T13:30:00Z
duration_s: 60
tick_interval_ms: 1000
seed: 11
symbols:
  - {symbol: GEN, initial_price: "20", volatility: 0.3}
source: {csv: halt.csv}
accounts:
  - {name: a, cash: "100000"}
orders:
  - {id: x, at: 5s, account: a, symbol: XOM, side: buy, qty: 10}
expect:
  orders:
    x: {status: executed}
  market:
    bars: {"1s": 80}
""")
    done = _tradesim("run", str(path), "--fast")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "did not show every symbol's last bars" not in done.stdout + done.stderr


def test_a_market_quoted_at_the_price_cap_trades_only_what_the_script_places(tmp_path: Path) -> None:
    """The runner's own barrier orders are sells at the price cap, which no bid may reach. Before, a scenario at
    the cap without a spread quoted bid = 1,000,000, a barrier sold the account's share and the run failed with a
    position of 0 (its table still said one execution)."""
    path = tmp_path / "cap.yaml"
    path.write_text("""\
id: cap
start: 2024-01-02T14:30:00Z
duration_s: 5
tick_interval_ms: 500
seed: 1
symbols:
  - {symbol: BIG, initial_price: "1000000", volatility: 0, spread: {absolute: "0"}}
accounts:
  - {name: trader, cash: "2000000"}
orders:
  - {id: one, at: 2s, account: trader, symbol: BIG, side: buy, qty: 1}
expect:
  orders:
    one: {status: executed}
  accounts:
    trader: {positions: {BIG: 1}}
""")
    done = _tradesim("run", str(path), "--fast", "--json", str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    outcomes = json.loads((tmp_path / "r.json").read_text())["outcomes"]
    assert [o["status"] for o in outcomes] == ["executed"], outcomes


def test_bars_are_counted_past_what_the_bar_cache_keeps(tmp_path: Path) -> None:
    """The bar cache keeps each symbol's newest 300 bars: before, a run longer than 300 s counted only those, so a
    correct `bars` expectation failed. Expected: one bar per window the generated ticks fall in."""
    path = tmp_path / "long.yaml"
    text = """\
id: long
start: 2024-01-02T14:30:00Z
duration_s: 330
tick_interval_ms: 1000
seed: 3
symbols:
  - {symbol: AAPL, initial_price: "100"}
accounts:
  - {name: k, cash: "1000.00"}
"""
    path.write_text(text)
    scenario = load_scenario(path)
    windows = {interval: len({t.event_time_ms - t.event_time_ms % size for t in generate(scenario)})
               for interval, size in INTERVALS_MS.items()}
    assert windows["1s"] > 300
    path.write_text(text + f'expect:\n  market:\n    bars: {{"1s": {windows["1s"]}, "1m": {windows["1m"]}}}\n')
    done = _tradesim("run", str(path), "--fast", "--json", str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((tmp_path / "r.json").read_text())["market"]["bars"] == windows


def test_a_run_starting_off_the_minute_counts_its_first_minute_bar(tmp_path: Path) -> None:
    """A probe: the bars counted were those whose window began inside the scenario, so a run from 14:30:30 never
    counted the 14:30 bar its ticks made (and waited out the settle timeout for it)."""
    path = tmp_path / "off.yaml"
    path.write_text("""\
id: off-minute
start: 2024-01-02T14:30:30Z
duration_s: 20
tick_interval_ms: 1000
seed: 3
symbols:
  - {symbol: AAPL, initial_price: "100"}
accounts:
  - {name: k, cash: "1000.00"}
expect:
  market:
    bars: {"1s": 20, "1m": 1}
""")
    done = _tradesim("run", str(path), "--fast", "--json", str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((tmp_path / "r.json").read_text())["market"]["bars"] == {"1s": 20, "1m": 1}
    assert "did not show every symbol's last bars" not in done.stdout + done.stderr


def test_a_wrong_expectation_fails_with_expected_and_actual(tmp_path: Path) -> None:
    text = (SCENARIOS / "cancel-before-fill.yaml").read_text()
    wrong = text.replace("resting: {status: cancelled}", "resting: {status: executed}")
    assert wrong != text
    path = tmp_path / "wrong.yaml"
    path.write_text(wrong)
    done = _tradesim("run", str(path), "--fast", "--junit", str(tmp_path / "j.xml"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "✗ order resting status: expected executed, got cancelled" in done.stdout
    assert "✓ order filled status" in done.stdout
    suite = _junit(tmp_path / "j.xml").find("testsuite")
    assert suite is not None
    assert suite.get("failures") == "1"
    failure = suite.find("testcase[@name='order resting status']/failure")
    assert failure is not None
    assert failure.get("message") == "expected executed, got cancelled"


def test_a_broken_file_exits_2_with_its_line(tmp_path: Path) -> None:
    text = (SCENARIOS / "round-trip-fees.yaml").read_text()
    path = tmp_path / "broken.yaml"
    path.write_text(text.replace("side: sell, qty: 100", "side: sideways, qty: 100"))
    line = next(i for i, row in enumerate(path.read_text().splitlines(), 1) if "sideways" in row)
    done = _tradesim("run", str(path), "--fast", "--junit", str(tmp_path / "j.xml"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"broken.yaml:{line}: orders[1].side" in done.stderr
    assert "Traceback" not in done.stderr
    (suite,) = _junit(tmp_path / "j.xml").findall("testsuite")  # the CI server is told why, not left without a file
    assert (suite.get("name"), suite.get("errors")) == ("broken", "1")
    assert f"broken.yaml:{line}: orders[1].side" in suite.findall("testcase/error")[0].get("message", "")

    strategy = tmp_path / "no-such-strategy.yaml"
    strategy.write_text((SCENARIOS / "strategy-ma-cross.yaml").read_text().replace(
        "tradesim.strategies.examples:MovingAverageCross", "tradesim.strategies.nowhere:Nothing"))
    line = next(i for i, row in enumerate(strategy.read_text().splitlines(), 1) if "nowhere" in row)
    done = _tradesim("run", str(strategy), "--fast")
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"no-such-strategy.yaml:{line}: strategy.class: no module 'tradesim.strategies.nowhere'" in done.stderr


def test_a_stack_that_cannot_be_used_exits_3(tmp_path: Path) -> None:
    done = _tradesim("run", str(SCENARIOS / "round-trip-fees.yaml"), "--fast", "--junit", str(tmp_path / "j.xml"),
                     env={"TRADESIM_API__URL": "http://127.0.0.1:9"})
    assert done.returncode == 3, done.stdout + done.stderr
    assert "stack not usable" in done.stderr
    assert _junit(tmp_path / "j.xml").find("testsuite/testcase/error") is not None


@pytest.mark.parametrize("name", ["round-trip-fees", "strategy-stop-ladder"])  # a script; a strategy with stops
def test_the_outcomes_hash_is_the_same_at_speed_10_and_as_fast_as_possible(name: str, tmp_path: Path) -> None:
    hashes = []
    for speed in (["--speed", "10"], ["--fast"]):
        out = tmp_path / f"{speed[-1]}.json"
        done = _tradesim("run", str(SCENARIOS / f"{name}.yaml"), *speed, "--json", str(out))
        assert done.returncode == 0, done.stdout + done.stderr
        hashes.append(json.loads(out.read_text())["outcomes_hash"])
    assert hashes[0] == hashes[1]
    # and the hash the file records (its `expect.outcomes_hash` check passed above, so they are equal)
    assert hashes[0] in (SCENARIOS / f"{name}.yaml").read_text()


def test_smoke_runs_every_shipped_scenario_and_stops_only_what_it_started(tmp_path: Path, settings: Settings,
                                                                          supervisor: Supervisor) -> None:
    if "exporter" not in {c.name for c in supervisor.components}:
        pytest.skip("needs the exporter in the test stack: smoke starts it and stops it again")
    alone = Supervisor(settings, [c for c in supervisor.components if c.name == "exporter"])
    alone.down()
    junit = tmp_path / "smoke.xml"
    try:
        done = _tradesim("smoke", "--junit", str(junit), timeout_s=600)
        states = {s.name: s.state for s in supervisor.status()}
    finally:
        alone.up()
    assert done.returncode == 0, done.stdout + done.stderr
    assert states["exporter"] == "stopped"
    # before: the whole stack stopped, though only the exporter was down when smoke began
    assert states["api"] == states["kafka"] == "running"
    assert done.stdout.strip().splitlines()[-1] == f"{len(SMOKE)} passed, 0 failed"
    suites = _junit(junit).findall("testsuite")
    assert [s.get("name") for s in suites] == list(SMOKE)
    assert all(s.get("failures") == "0" and s.get("errors") == "0" for s in suites)
    assert not _junit(junit).findall("testsuite/testcase/failure")
    # a testcase per expectation, and each shipped scenario has some
    assert all(int(s.get("tests", "0")) == len(s.findall("testcase")) > 0 for s in suites)
    shown = _orders_shown(done.stdout)
    assert list(shown) == list(SMOKE), done.stdout
    assert all(rows > 0 for rows in shown.values()), f"a smoke scenario decides orders: {shown}"


CRASHY = '''
from tradesim.strategies.sdk import Strategy


class Crashy(Strategy):
    """Buys on its tenth tick, then fails on the next one."""

    def __init__(self, params=None):
        super().__init__(params)
        self.seen = 0

    def on_tick(self, ctx, tick):
        self.seen += 1
        if self.seen == 10:
            ctx.buy(tick.symbol, 1)
        if self.seen == 11:
            raise RuntimeError("boom")
'''


@pytest.mark.parametrize(("raised", "says"), [
    ('RuntimeError("boom")', "RuntimeError: boom"),
    ("SystemExit(0)", "SystemExit: 0"),  # before: the run ended at once with exit 0, nothing checked, no report
])
def test_a_strategy_that_raises_ends_the_run_with_one_line(tmp_path: Path, raised: str, says: str) -> None:
    (tmp_path / "crashy.py").write_text(CRASHY.replace('RuntimeError("boom")', raised))
    path = tmp_path / "crashy.yaml"
    path.write_text((SCENARIOS / "strategy-ma-cross.yaml").read_text()
                    .replace("tradesim.strategies.examples:MovingAverageCross", "crashy:Crashy")
                    .replace("params: {fast: 5, slow: 20, qty: 50, interval: 1s}", "params: {}"))
    done = _tradesim("run", str(path), "--fast", "--junit", str(tmp_path / "j.xml"),
                     env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"strategy crashy:Crashy raised at market time 10000 ms: {says}" in done.stderr
    assert "Traceback" not in done.stderr
    assert _junit(tmp_path / "j.xml").find("testsuite/testcase/error") is not None


NAMED = '''
from tradesim.strategies.sdk import Strategy


class Named(Strategy):
    """Buys one share of the symbol its params name at the start, and one on the first tick that names it."""

    def __init__(self, params=None):
        super().__init__(params)
        self.ticked = False

    def on_start(self, ctx):
        ctx.buy(self.params["symbol"], 1)

    def on_tick(self, ctx, tick):
        if tick.symbol == self.params["symbol"] and not self.ticked:
            self.ticked = True
            ctx.buy(tick.symbol, 1)
'''


def test_a_strategy_names_the_scenarios_symbols(tmp_path: Path) -> None:
    """A probe: strategies were shown the run's symbol names (`AAPL.L2XQP`, new every run), so `ctx.buy("AAPL")`
    raised and a strategy whose params named a symbol never traded."""
    (tmp_path / "named.py").write_text(NAMED)
    path = tmp_path / "named.yaml"
    path.write_text((SCENARIOS / "strategy-ma-cross.yaml").read_text()
                    .replace("tradesim.strategies.examples:MovingAverageCross", "named:Named")
                    .replace("params: {fast: 5, slow: 20, qty: 50, interval: 1s}", "params: {symbol: AAPL}")
                    .split("expect:")[0] + "expect:\n  accounts:\n    quant: {positions: {AAPL: 2}, executions: 2}\n")
    done = _tradesim("run", str(path), "--fast", env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr


REFUSED = '''
from tradesim.strategies.sdk import OrderRefused, Strategy


class Refused(Strategy):
    """Asks for more shares than an order may hold (refused, caught), then buys one share."""

    def on_start(self, ctx):
        try:
            ctx.buy("AAPL", 1_000_000_001)
        except OrderRefused:
            pass
        ctx.buy("AAPL", 1)
'''


def test_a_strategys_order_the_api_refused_is_in_the_report_under_its_name(tmp_path: Path) -> None:
    """A probe: an order the API refused (4xx) that the strategy caught was missing from the report and the hash,
    so `s1: {status: refused}` could never be expected; it takes its name like a placed one."""
    (tmp_path / "refused.py").write_text(REFUSED)
    path = tmp_path / "refused.yaml"
    path.write_text((SCENARIOS / "strategy-ma-cross.yaml").read_text()
                    .replace("tradesim.strategies.examples:MovingAverageCross", "refused:Refused")
                    .replace("params: {fast: 5, slow: 20, qty: 50, interval: 1s}", "params: {}")
                    .split("expect:")[0] + "expect:\n  orders:\n    s1: {status: refused, reason: invalid_request}\n"
                    "    s2: {status: executed}\n  accounts:\n    quant: {positions: {AAPL: 1}, executions: 1}\n")
    report = tmp_path / "report.json"
    done = _tradesim("run", str(path), "--fast", "--json", str(report), env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [(o["order_id"], o["qty"], o["status"], o["reason"]) for o in json.loads(report.read_text())["outcomes"]]
    assert rows == [("s1", 1_000_000_001, "refused", "invalid_request"), ("s2", 1, "executed", None)]


IN_ORDER = '''
from tradesim.strategies.sdk import Strategy


class InOrder(Strategy):
    """Fails the run on a tick or a bar's close older than what came before; buys a share of each symbol on its
    first tick."""

    def __init__(self, params=None):
        super().__init__(params)
        self.last_ms = 0
        self.bought = set()

    def _seen(self, ms):
        if ms < self.last_ms:
            raise RuntimeError(f"out of order: {ms} after {self.last_ms}")
        self.last_ms = ms

    def on_tick(self, ctx, tick):
        self._seen(tick.event_time_ms)
        if tick.symbol not in self.bought:
            self.bought.add(tick.symbol)
            ctx.buy(tick.symbol, 1)

    def on_bar(self, ctx, bar):
        self._seen(bar.window_end_ms)  # a bar comes once its window closed
'''


def test_a_strategy_sees_a_symbol_that_starts_later_at_its_own_time(tmp_path: Path) -> None:
    """A review: each symbol's first tick went to the strategy before every other tick, so a CSV symbol starting at
    5 s moved market time past the other's 0.5 s tick: a traceback ("market time went back"), or, with a bar closing
    first, the strategy blamed for it (exit 1)."""
    rows = [f"{1710509400000 + ms},AAA,10,10.02,10.01,100\n" for ms in range(0, 10_000, 500)]
    rows += [f"{1710509400000 + ms},BBB,20,20.02,20.01,100\n" for ms in range(5_000, 10_000, 500)]
    rows.sort(key=lambda r: int(r.split(",")[0]))
    (tmp_path / "late.csv").write_text("timestamp,symbol,bid,ask,last,size\n" + "".join(rows))
    (tmp_path / "in_order.py").write_text(IN_ORDER)
    path = tmp_path / "late.yaml"
    path.write_text("""\
id: late
start: 2024-03-15T13:30:00Z
duration_s: 10
tick_interval_ms: 1000
seed: 1
symbols: []
source: {csv: late.csv}
accounts:
  - {name: q, cash: "100000"}
strategy:
  class: in_order:InOrder
  account: q
  symbols: [AAA, BBB]
  params: {}
expect:
  accounts:
    q: {positions: {AAA: 1, BBB: 1}, executions: 2}
""")
    done = _tradesim("run", str(path), "--fast", env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_strategy_callback_that_never_returns_ends_the_run_with_one_line(tmp_path: Path) -> None:
    """Before: the run waited for ever."""
    (tmp_path / "loopy.py").write_text(CRASHY.replace('raise RuntimeError("boom")', "while True:\n                pass")
                                       .replace("class Crashy", "class Loopy"))
    path = tmp_path / "loopy.yaml"
    path.write_text((SCENARIOS / "strategy-ma-cross.yaml").read_text()
                    .replace("tradesim.strategies.examples:MovingAverageCross", "loopy:Loopy")
                    .replace("params: {fast: 5, slow: 20, qty: 50, interval: 1s}", "params: {}\n  time_limit_s: 2"))
    done = _tradesim("run", str(path), "--fast", env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert ("strategy loopy:Loopy at market time 10000 ms: a callback did not return within 2 s (a loop that never "
            "ends?)") in done.stderr
    assert "Traceback" not in done.stderr


def test_a_runs_own_symbols_leave_the_price_and_bar_caches_an_hour_after_it(tmp_path: Path,
                                                                            settings: Settings) -> None:
    """A probe: every run's renamed symbols stayed in Redis for good (up to 600 bars each) and in `prices`."""
    from tradesim.adapters.redis.client import connect
    from tradesim.runner.engine import RUN_CACHE_TTL_S
    from tradesim.testing.factories import unique_symbol
    from tradesim.testing.waiting import wait_for

    symbol = unique_symbol("ZT")[:8]
    path = tmp_path / "short.yaml"
    path.write_text(f"""\
id: short
start: 2024-01-02T14:30:00Z
duration_s: 5
tick_interval_ms: 500
seed: 3
symbols:
  - {{symbol: {symbol}, initial_price: "100"}}
accounts:
  - {{name: k, cash: "1000.00"}}
expect:
  accounts:
    k: {{cash: {{min: "1000.00", max: "1000.00"}}}}
""")
    done = _tradesim("run", str(path), "--fast")
    assert done.returncode == 0, done.stdout + done.stderr
    r = connect(settings.redis)
    prices = list(r.scan_iter(match=f"price:{symbol}.*"))
    assert len(prices) == 1, prices
    # the run read its last bars from Kafka: the market-data service may write them to Redis just after it
    wait_for(lambda: len(list(r.scan_iter(match=f"bars:{symbol}.*"))) == 2, 30, "the 1 s and 1 min bars cached")
    for key in prices + list(r.scan_iter(match=f"bars:{symbol}.*")):
        assert 0 < r.ttl(key) <= RUN_CACHE_TTL_S, key
