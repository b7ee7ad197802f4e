"""Scripted trading in scenario files: accounts, orders, strategy and expect load, and every broken reference is
reported at its file, line and field."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import get_args

import pytest
from typer.testing import CliRunner

from tradesim.cli.app import app
from tradesim.domain.events import OrderStatus
from tradesim.scenarios.errors import Problem, ScenarioError
from tradesim.scenarios.loader import load_scenario
from tradesim.scenarios.model import ExpectedStatus
from tradesim.settings import REPO_SCENARIOS

HEADER = """\
id: t
start: 2024-01-02T14:30:00Z
duration_s: 300
tick_interval_ms: 1000
seed: 1
symbols:
  - {symbol: AAA, initial_price: 1}
  - {symbol: BBB, initial_price: 2}
accounts:
  - {name: alice, cash: "1000.00"}
"""
# HEADER is 10 lines: whatever a case appends starts on line 11
ORDER = "orders:\n  - {at: 10s, account: alice, symbol: AAA, side: buy, qty: 1}\n"

GOOD = HEADER + """\
  - {name: bob, cash: 250}
orders:
  - {at: 60s, account: alice, symbol: AAA, side: buy, qty: 100}
  - id: protect
    at: 1.5s
    account: alice
    symbol: AAA
    side: sell
    qty: 100
    type: stop_limit
    stop_price: "0.95"
    limit_price: "0.9"
    time_in_force: gtc
    cancel_at: 2m
    idempotency_key: protect-1
  - {at: 90, account: alice, symbol: BBB, side: buy, qty: 5, type: limit, limit_price: "1.9999", time_in_force: ioc}
strategy:
  class: tradesim.strategies.examples:MovingAverageCross
  account: bob
  symbols: [AAA, BBB]
  params: {fast: 5, slow: 20, nested: {a: [1, 2]}}
expect:
  orders:
    o0: {status: executed, fill_price: {min: "0.5", max: "1.5"}}
    protect: {status: cancelled}
    o2: {status: expired, reason: expired}
  accounts:
    alice: {cash: {min: "900"}, positions: {AAA: 100, BBB: 0}, realized_pnl: {max: "0"}, executions: 1}
  market:
    bars: {"1s": 300, "1m": {min: 4, max: 5}}
  read_side:
    searchable_trades: 3
    volume: {AAA: 100}
  outcomes_hash: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
"""


@pytest.fixture(autouse=True)
def _cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # files are shown relative to the working directory, as a user types them
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TRADESIM_SCENARIOS_DIR", raising=False)


def _write(text: str, name: str = "s.yaml") -> Path:
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _problems(text: str) -> list[Problem]:
    with pytest.raises(ScenarioError) as info:
        load_scenario(_write(text, "bad.yaml"))
    return list(info.value.problems)


def test_a_file_with_every_trading_section_loads() -> None:
    s = load_scenario(_write(GOOD))
    assert [(a.name, a.cash) for a in s.accounts] == [("alice", Decimal("1000.00")), ("bob", Decimal(250))]
    first, protect, third = s.orders
    assert (first.id, first.at_ms, first.type, first.time_in_force) == ("o0", 60_000, "market", "day")
    assert (protect.id, protect.at_ms, protect.cancel_at_ms) == ("protect", 1_500, 120_000)
    assert (protect.stop_price, protect.limit_price, protect.idempotency_key) == (
        Decimal("0.95"), Decimal("0.9"), "protect-1")
    assert (third.id, third.at_ms, third.limit_price) == ("o2", 90_000, Decimal("1.9999"))
    assert s.strategy is not None
    assert s.strategy.class_path == "tradesim.strategies.examples:MovingAverageCross"
    assert s.strategy.params == {"fast": 5, "slow": 20, "nested": {"a": [1, 2]}}
    assert s.expect is not None
    assert s.expect.orders["o0"].fill_price is not None
    assert Decimal("1.5") in s.expect.orders["o0"].fill_price
    assert s.expect.accounts["alice"].positions == {"AAA": 100, "BBB": 0}
    assert s.expect.count() == 3 + 1 + 1 + 5 + 2 + 2 + 1


def test_a_file_without_trading_sections_has_none() -> None:
    s = load_scenario(_write(HEADER.split("accounts:")[0]))
    assert (s.accounts, s.orders, s.strategy, s.expect) == ([], [], None, None)


@pytest.mark.parametrize(("at", "ms"), [
    ("60s", 60_000), ("1.5s", 1_500), ("2m", 120_000), ("250ms", 250), ("1h", 3_600_000), ("0", 0),
    ("90", 90_000), ("0.25", 250), ('"45"', 45_000), ('" 3 s "', 3_000),
])
def test_order_times_accept_units_and_plain_seconds(at: str, ms: int) -> None:
    body = HEADER.replace("duration_s: 300", "duration_s: 4000") + f"orders:\n  - {{at: {at}, account: alice, " \
        "symbol: AAA, side: buy, qty: 1}\n"
    assert load_scenario(_write(body)).orders[0].at_ms == ms


@pytest.mark.parametrize(("body", "line", "field", "message"), [
    # times
    (ORDER.replace("10s", "soon"), 12, "orders[0].at", "not a time offset: 'soon' (write e.g. 60s, 1.5s, 2m"),
    (ORDER.replace("10s", "-5"), 12, "orders[0].at", "must be >= 0"),
    (ORDER.replace("10s", "1.0005s"), 12, "orders[0].at", "'1.0005s' is finer than a millisecond"),
    (ORDER.replace("10s", "5m"), 12, "orders[0].at", "must be before the end (duration_s 300)"),
    # before: an OverflowError traceback
    (ORDER.replace("10s", "1" + "0" * 400 + "s"), 12, "orders[0].at",
     "must be before the end, and no scenario lasts longer than 100 years"),
    (ORDER.replace("qty: 1", "qty: 1, cancel_at: 1e400"), 12, "orders[0].cancel_at", "not a time offset"),
    (ORDER.replace("qty: 1", "qty: 1, cancel_at: 5s"), 12, "orders[0].cancel_at", "must be after at (10s)"),
    (ORDER.replace("qty: 1", "qty: 1, cancel_at: 300s"), 12, "orders[0].cancel_at", "must be before the end"),
    # references and names
    (ORDER.replace("alice", "carol"), 12, "orders[0].account", "unknown account carol (accounts: alice)"),
    (ORDER.replace("AAA", "ZZZ"), 12, "orders[0].symbol", "unknown symbol ZZZ (scenario has: AAA, BBB)"),
    ("  - {name: alice, cash: \"5\"}\n", 11, "accounts[1].name", "duplicate account alice"),
    ("  - {name: Bob, cash: \"5\"}\n", 11, "accounts[1].name", "String should match pattern"),
    # the runner's own account (before: validated, then the run ended "stack not usable" on the API's 409)
    ("  - {name: barrier, cash: \"5\"}\n", 11, "accounts[1].name", "'barrier' is the runner's own"),
    (ORDER + "  - {id: o0, at: 1s, account: alice, symbol: AAA, side: sell, qty: 1}\n",
     13, "orders[1].id", "duplicate order id o0"),
    # order body, as the API takes it
    (ORDER.replace("qty: 1", "qty: 1, type: limit"), 12, "orders[0].limit_price", "required for a limit order"),
    (ORDER.replace("qty: 1", "qty: 1, type: limit, limit_price: \"1\", stop_price: \"1\""),
     12, "orders[0].stop_price", "not allowed for a limit order"),
    (ORDER.replace("qty: 1", "qty: 1, type: stop_limit, stop_price: \"1\""),
     12, "orders[0].limit_price", "required for a stop_limit order"),
    (ORDER.replace("qty: 1", "qty: 1, stop_price: \"1\""), 12, "orders[0].stop_price", "not allowed for a market"),
    (ORDER.replace("qty: 1", "qty: 1, type: limit, limit_price: \"1.00001\""),
     12, "orders[0].limit_price", "Decimal input should have no more than 4 decimal places"),
    (ORDER.replace("qty: 1", "qty: 1, type: limit, limit_price: 1.5"),
     12, "orders[0].limit_price", 'write money as a quoted decimal string, e.g. "1.5"'),
    (ORDER.replace("qty: 1", "qty: \"1\""), 12, "orders[0].qty", "Input should be a valid integer"),
    (ORDER.replace("qty: 1", "qty: 0"), 12, "orders[0].qty", "must be > 0"),
    (ORDER.replace("qty: 1", "qty: 1, time_in_force: fok"), 12, "orders[0].time_in_force", "Input should be"),
    ("  - {name: bob, cash: 10.5}\n", 11, "accounts[1].cash", "write money as a quoted decimal string"),
    ("  - {name: bob, cash: \"10.505\"}\n", 11, "accounts[1].cash", "Decimal input should have no more than 2"),
    # more than an account takes (before: validated, then the run ended "stack not usable" on the API's 422)
    ("  - {name: bob, cash: \"1000000000000000.00\"}\n", 11, "accounts[1].cash", "must be < 1000000000000000"),
    # strategy
    ("strategy: {class: examples.MovingAverageCross, account: alice, symbols: [AAA]}\n",
     11, "strategy.class", "String should match pattern"),
    ("strategy:\n  class: a.b:C\n  account: zed\n  symbols: [AAA]\n",
     13, "strategy.account", "unknown account zed (accounts: alice)"),
    ("strategy:\n  class: a.b:C\n  account: alice\n  symbols:\n    - AAA\n    - QQQ\n",
     16, "strategy.symbols[1]", "unknown symbol QQQ (scenario has: AAA, BBB)"),
    ("strategy:\n  class: a.b:C\n  account: alice\n  symbols: [AAA, AAA]\n",
     14, "strategy.symbols[1]", "duplicate symbol AAA"),
    ("strategy:\n  class: a.b:C\n  account: alice\n  symbols: []\n",
     14, "strategy.symbols", "List should have at least 1 item"),
    # an account both scripted and the strategy's (before: the strategy's cash and positions left out the script's
    # fills, so it decided on wrong ones)
    (ORDER + "strategy:\n  class: a.b:C\n  account: alice\n  symbols: [AAA]\n",
     15, "strategy.account", "alice also places orders[0]; give the strategy an account of its own"),
    # a scripted id the strategy's orders would also carry (before: expectations read the strategy's order)
    (ORDER.replace("{at:", "{id: s1, at:") + "strategy:\n  class: a.b:C\n  account: alice\n  symbols: [AAA]\n",
     12, "orders[0].id", "s1 names one of the strategy's orders"),
    # expect
    (ORDER + "expect:\n  orders:\n    o7: {status: executed}\n",
     15, "expect.orders.o7", "unknown order o7 (orders: o0)"),
    (ORDER + "expect:\n  accounts:\n    bob: {executions: 1}\n",
     15, "expect.accounts.bob", "unknown account bob (accounts: alice)"),
    ("expect:\n  accounts:\n    alice:\n      positions: {AAA: 1, XYZ: 2}\n",
     14, "expect.accounts.alice.positions.XYZ", "unknown symbol XYZ (scenario has: AAA, BBB)"),
    ("expect:\n  read_side:\n    volume:\n      NOPE: 5\n",
     14, "expect.read_side.volume.NOPE", "unknown symbol NOPE"),
    ("expect:\n  market:\n    bars: {\"5m\": 3}\n",
     13, "expect.market.bars.5m", "unknown interval '5m' (one of 1s, 1m)"),
    (ORDER + "expect:\n  orders:\n    o0:\n      fill_price: {min: \"2\", max: \"1\"}\n",
     16, "expect.orders.o0.fill_price.max", "must be >= min (2)"),
    (ORDER + "expect:\n  orders:\n    o0:\n      fill_price: {}\n",
     16, "expect.orders.o0.fill_price", "set min, max or both"),
    ("expect:\n  accounts:\n    alice: {cash: \"1000.00\"}\n",  # a probe: pydantic's "valid dictionary or instance"
     13, "expect.accounts.alice.cash", "a range is written {min: ..., max: ...} (either or both), not '1000.00'"),
    (ORDER + "expect:\n  orders:\n    o0: {status: rejected, reason: stale_price}\n",
     15, "expect.orders.o0.reason", "unknown reason 'stale_price'"),
    (ORDER + "expect:\n  orders:\n    o0: {status: rejected, fill_price: {max: \"1\"}}\n",
     15, "expect.orders.o0.fill_price", "a rejected order has no fill price"),
    (ORDER + "expect:\n  orders:\n    o0: {}\n", 15, "expect.orders.o0", "set status, reason or fill_price"),
    (ORDER + "expect:\n  orders:\n    o0: {status: filled}\n", 15, "expect.orders.o0.status", "Input should be"),
    # a reason no such outcome carries, and a count range no count is in (a probe: each validated, then failed
    # every run)
    (ORDER + "expect:\n  orders:\n    o0: {status: executed, reason: insufficient_funds}\n",
     15, "expect.orders.o0.reason", "an executed order has no reason"),
    (ORDER + "expect:\n  orders:\n    o0: {status: open, reason: expired}\n",
     15, "expect.orders.o0.reason", "an open order has no reason"),
    (ORDER + "expect:\n  orders:\n    o0: {reason: insufficient_funds, fill_price: {min: \"1\"}}\n",
     15, "expect.orders.o0.reason", "an order with a reason has no fill price"),
    (ORDER + "expect:\n  orders:\n    o0: {status: expired, fill_price: {max: \"1\"}}\n",
     15, "expect.orders.o0.fill_price", "an expired order has no fill price"),
    ("expect:\n  market:\n    bars: {\"1s\": {max: -5}}\n", 13, "expect.market.bars.1s.max", "must be >= 0"),
    ("expect:\n  market:\n    bars: {\"1s\": {min: 0.5}}\n", 13, "expect.market.bars.1s.min",
     "Input should be a valid integer"),
    # a limit too short for any import: it blamed the class, and passed or failed by the machine's speed
    ("strategy:\n  class: a.b:C\n  account: alice\n  symbols: [AAA]\n  time_limit_s: 0.001\n",
     15, "strategy.time_limit_s", "must be >= 1"),
    ("expect:\n  accounts:\n    alice: {}\n", 13, "expect.accounts.alice", "set cash, positions, realized_pnl"),
    ("expect:\n  accounts:\n    alice: {executions: -1}\n", 13, "expect.accounts.alice.executions", "must be >= 0"),
    ("expect:\n  outcomes_hash: ABC\n", 12, "expect.outcomes_hash", "String should match pattern"),
    ("expect:\n  outcome_hash: abc\n", 12, "expect.outcome_hash", "unknown field (did you mean 'outcomes_hash'?)"),
    ("expectations:\n  orders: {}\n", 11, "expectations", "unknown field (did you mean 'expect'?)"),
    # a field of another part: was "unknown field (did you mean 'name'?)" for `name`
    ("name: x\n", 11, "name", "unknown field here (it belongs to another part of a scenario)"),
    # an expect that states nothing (before: the run passed with no check at all)
    ("expect: {}\n", 11, "expect", "set orders, accounts, market, read_side or outcomes_hash"),
    ("expect:\n#  orders:\n#    o0: {status: executed}\n", 11, "expect", "set orders, accounts, market"),
    ("expect:\n  orders: {}\n  accounts: {}\n", 11, "expect", "set orders, accounts, market"),
])
def test_problem_names_file_line_and_field(body: str, line: int, field: str, message: str) -> None:
    first = _problems(HEADER + body)[0]
    assert (first.file, first.line, first.field) == ("bad.yaml", line, field), str(first)
    assert first.message.startswith(message), first.message
    assert str(first).startswith(f"bad.yaml:{line}: {field}: {message}")


def test_a_bar_count_or_range_written_wrong_is_one_problem_in_the_files_terms() -> None:
    """Before: one line per form the value could have had, named by pydantic's union tags
    (`bars.1s.constrained-int`, `bars.1s.function-after[_bounds(), Range]`)."""
    problems = _problems(HEADER + 'expect:\n  market:\n    bars: {"1s": "120", "1m": {min: 1, mx: 2}}\n')
    assert [(p.field, p.message) for p in problems] == [
        ("expect.market.bars.1s", "Input should be a valid integer"),
        ("expect.market.bars.1m.mx", "unknown field (did you mean 'max'?)")]
    ok = load_scenario(_write(HEADER + 'expect:\n  market:\n    bars: {"1s": 120, "1m": {min: 1, max: 2}}\n'))
    assert ok.expect is not None
    assert ok.expect.market is not None
    assert ok.expect.market.bars["1s"] == 120


def test_expectations_may_name_the_strategys_orders() -> None:
    text = HEADER + ("strategy:\n  class: a.b:C\n  account: alice\n  symbols: [AAA]\n"
                     "expect:\n  orders:\n    s2: {status: executed}\n")
    assert list(load_scenario(_write(text)).expect.orders) == ["s2"]  # type: ignore[union-attr]  # before: unknown


def test_every_broken_reference_is_reported_at_once_in_line_order() -> None:
    body = ("  - {name: alice, cash: \"1\"}\n"
            "orders:\n"
            "  - {at: 1s, account: carol, symbol: ZZZ, side: buy, qty: 1}\n"
            "expect:\n"
            "  orders:\n"
            "    nope: {status: executed}\n")
    assert [(p.line, p.field) for p in _problems(HEADER + body)] == [
        (11, "accounts[1].name"), (13, "orders[0].account"), (13, "orders[0].symbol"), (16, "expect.orders.nope")]


def test_symbols_of_a_replayed_csv_count_once_the_file_is_scanned() -> None:
    _write("timestamp,symbol,bid,ask,last,size\n1704205800000,CSVX,1,2,1,1\n", "data/t.csv")
    base = HEADER.replace("symbols:\n  - {symbol: AAA, initial_price: 1}\n  - {symbol: BBB, initial_price: 2}\n",
                          "source: {csv: data/t.csv}\n")
    s = load_scenario(_write(base + "orders:\n  - {at: 1s, account: alice, symbol: CSVX, side: buy, qty: 1}\n"))
    assert s.orders[0].symbol == "CSVX"
    bad = _write(base + "orders:\n  - {at: 1s, account: alice, symbol: NOPE, side: buy, qty: 1}\n", "bad.yaml")
    with pytest.raises(ScenarioError) as info:
        load_scenario(bad)
    assert [str(p) for p in info.value.problems] == [
        "bad.yaml:10: orders[0].symbol: unknown symbol NOPE (scenario has: CSVX)"]
    assert load_scenario(bad, check_data=False).orders[0].symbol == "NOPE"  # the CSV is not read then


def test_numbers_in_strings_are_plain_ascii_decimals() -> None:
    """A probe: `initial_price: "1_85.50"` validated as 185.50, and Arabic-Indic digits as a fill price bound."""
    text = HEADER.replace("initial_price: 2}", "initial_price: \"1_85.50\"}").replace(
        'cash: "1000.00"', 'cash: "１０００"')
    assert [(p.line, p.field) for p in _problems(text)] == [(8, "symbols[1].initial_price"), (10, "accounts[0].cash")]
    assert all(p.message.startswith("not a number:") for p in _problems(text))
    # unquoted, YAML 1.1 reads an underscore as a digit separator; in a CSV, Decimal() read both forms
    unquoted = HEADER.replace("initial_price: 2}", "initial_price: 1_85.50, volatility: '0.1_5'}")
    assert [(p.field, p.message) for p in _problems(unquoted)] == [
        ("symbols[1].initial_price", "not a number: '1_85.50' (write digits and a point, e.g. \"185.50\")"),
        ("symbols[1].volatility", "not a number: '0.1_5'")]
    _write("timestamp,symbol,bid,ask,last,size\n1704205800000,CSVX,1_04.18,105,١٠٤.٢٠,1\n", "data/t.csv")
    csv = _write(HEADER.replace("accounts:", "source: {csv: data/t.csv}\naccounts:"), "bad.yaml")
    with pytest.raises(ScenarioError, match="not a decimal number: '1_04.18'"):
        load_scenario(csv)


def test_times_are_shown_to_the_millisecond_as_written() -> None:
    """A probe: times were printed with `:g` (six digits): an order at 1234.567 s showed as 1234.57s in its error,
    in `scenarios show` and in a run's table, and one at a million seconds as 1e+06s, which is no time offset."""
    order = ORDER.replace("at: 10s", "at: 1234.567s, cancel_at: 1234.5s")
    assert [p.message for p in _problems(HEADER.replace("duration_s: 300", "duration_s: 2000000") + order)] == [
        "must be after at (1234.567s)"]
    shown = HEADER.replace("duration_s: 300", "duration_s: 2000000") + ORDER.replace(
        "at: 10s", "at: 1234.567s, cancel_at: 1000000s")
    result = runner.invoke(app, ["scenarios", "show", str(_write(shown)), "-n", "0"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "1234.567s" in result.output
    assert "1000000s" in result.output


def test_a_runs_table_shows_each_orders_time_to_the_millisecond(capsys: pytest.CaptureFixture[str]) -> None:
    from tradesim.cli.run import _print
    from tradesim.runner.engine import Run
    from tradesim.scenarios.expect import Outcome, RunResult

    late = Outcome(order_id="late", index=0, at_ms=1_234_567, account="alice", symbol="AAA", side="buy", qty=1,
                   type="market", status="open")
    _print(Run(RunResult([late], {}), "k3x9a", [], {}), [], 1.0)
    assert "1234.567s" in capsys.readouterr().out  # before: 1234.57s


def test_a_number_with_a_leading_zero_is_never_octal() -> None:
    """A probe: YAML 1.1 reads `0100` as octal: `cash: 0100` was 64, `at: 030` 24 s, `qty: 0100` 64 shares, without
    a word (and `090`, no octal, stayed text). Now it stays text, as `1:30` does: read as written where a number
    may be text (times, money), refused where a whole number is due."""
    text = HEADER.replace('cash: "1000.00"', "cash: 0100") + ORDER.replace("at: 10s", "at: 030")
    s = load_scenario(_write(text))
    assert (s.accounts[0].cash, s.orders[0].at_ms) == (Decimal(100), 30_000)
    assert [(p.field, p.message) for p in _problems(HEADER + ORDER.replace("qty: 1", "qty: 0100"))] == [
        ("orders[0].qty", "Input should be a valid integer")]


def test_a_volatility_so_large_its_path_would_be_nan_is_refused() -> None:
    """Before: validated, then a traceback (`cannot convert float NaN to integer`) from `scenarios show`,
    `replay` and `run`."""
    (problem,) = _problems(HEADER.replace("initial_price: 2}", "initial_price: 2, volatility: 1e308}"))
    assert (problem.line, problem.field, problem.message) == (8, "symbols[1].volatility", "must be <= 1000")


@pytest.mark.parametrize("start", ["1704205800", "1704205800000", "'1704205800'", "0", "'1704205800.5'",
                                   "'+1704205800'", "1.7e9"])
def test_a_start_written_as_a_number_is_refused(start: str) -> None:
    """Pydantic reads a number as epoch seconds or milliseconds by its size; the format asks for ISO-8601."""
    (problem,) = _problems(HEADER.replace("2024-01-02T14:30:00Z", start))
    assert (problem.line, problem.field) == (2, "start")
    assert problem.message.startswith("write a time as ISO-8601 with a UTC offset")


@pytest.mark.parametrize(("csv", "message"), [
    # a run of it created its accounts, then ended "stack not usable" (exit 3)
    ("timestamp,symbol,bid,ask,last,size\n", "data/t.csv holds no rows"),
    # each source numbered AAA's ticks from 1: the price cache and the book dropped the CSV's as repeats
    ("timestamp,symbol,bid,ask,last,size\n1704205800500,AAA,1,2,1,1\n",
     "AAA also under symbols: a symbol is either generated or replayed, not both"),
])
def test_a_csv_source_without_rows_or_with_a_generated_symbol_is_refused(csv: str, message: str) -> None:
    _write(csv, "data/t.csv")
    bad = _write(HEADER.replace("accounts:", "source: {csv: data/t.csv}\naccounts:"), "bad.yaml")
    with pytest.raises(ScenarioError) as info:
        load_scenario(bad)
    (problem,) = info.value.problems
    assert (problem.line, problem.field) == (9, "source.csv")
    assert problem.message.endswith(message)


SMOKE = ("round-trip-fees", "flash-crash-ladder", "earnings-gap-stop", "overdraw-refused", "cancel-before-fill",
         "strategy-ma-cross")


@pytest.mark.parametrize("name", SMOKE)
def test_the_canonical_smoke_scenarios_validate_and_say_what_they_must_produce(name: str) -> None:
    s = load_scenario(REPO_SCENARIOS / f"{name}.yaml")
    assert s.id == name
    assert s.accounts
    assert s.expect is not None
    assert s.expect.count() >= 3
    # every smoke scenario records one from real runs (tests/integration/runs checks them, two at two speeds)
    assert s.expect.outcomes_hash is not None
    assert len(s.expect.outcomes_hash) == 64
    assert s.orders or s.strategy is not None
    for order_id, want in s.expect.orders.items():
        assert want.status is not None, order_id


def test_the_strategy_scenario_names_the_example_class() -> None:
    s = load_scenario(REPO_SCENARIOS / "strategy-ma-cross.yaml")
    assert s.strategy is not None
    assert s.strategy.class_path == "tradesim.strategies.examples:MovingAverageCross"


runner = CliRunner()


def test_validate_counts_accounts_orders_and_expectations() -> None:
    # validate also builds the strategy, so its params must be ones the class takes
    path = _write(GOOD.replace("params: {fast: 5, slow: 20, nested: {a: [1, 2]}}",
                               "params: {fast: 5, slow: 20, qty: 10}"))
    result = runner.invoke(app, ["scenarios", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ("ok s.yaml: t, 2 symbols, 600 ticks, 2 accounts, 3 orders, strategy, "
                                     "15 expectations")


def test_validate_reports_a_broken_reference_with_exit_2() -> None:
    path = _write(HEADER + ORDER.replace("alice", "carol"), "bad.yaml")
    result = runner.invoke(app, ["scenarios", "validate", str(path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.output.strip() == "bad.yaml:12: orders[0].account: unknown account carol (accounts: alice)"


def test_show_lists_accounts_orders_strategy_and_the_number_of_expectations() -> None:
    result = runner.invoke(app, ["scenarios", "show", str(_write(GOOD)), "-n", "0"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "trading: 2 accounts, 3 orders, strategy, 15 expectations" in out
    assert "accounts: alice (1000.00), bob (250)" in out
    assert "sell 100 AAA stop_limit" in out
    assert "limit 0.9 · stop 0.95" in out
    assert "120s" in out  # protect's cancel_at
    assert "strategy: tradesim.strategies.examples:MovingAverageCross as bob on AAA, BBB" in out


def test_show_writes_control_characters_of_a_strategys_params_as_escapes() -> None:
    """Params are the file's free text, as a description is: an ESC in one restyled (or cleared) the terminal, a
    newline started a line of its own."""
    path = _write(GOOD.replace("nested: {a: [1, 2]}", '"\\e[2J": "\\e[31mred\\nline"'))
    result = runner.invoke(app, ["scenarios", "show", str(path), "-n", "0"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output
    line = next(line for line in result.output.splitlines() if line.startswith("strategy: "))
    assert line.endswith("(fast=5, slow=20, \\x1b[2J=\\x1b[31mred\\nline)")


def test_expected_statuses_are_the_terminal_ones_plus_refused_and_open() -> None:
    """`open`: what the report says of an order still in the book at the end (before: it could not be expected)."""
    assert set(get_args(ExpectedStatus)) == {*get_args(OrderStatus), "refused", "open"}


@pytest.mark.parametrize(("field", "line"), [("duration_s: 300", 3), ("tick_interval_ms: 1000", 4), ("seed: 1", 5)])
def test_yaml_true_is_no_number(field: str, line: int) -> None:
    name = field.split(":")[0]
    first = _problems(HEADER.replace(field, f"{name}: true"))[0]  # before: read as 1
    assert (first.line, first.field) == (line, name)
    assert "must be a number, not true/false" in first.message
