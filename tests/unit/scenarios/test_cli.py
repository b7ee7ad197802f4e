"""`tradesim scenarios list|show|validate` through typer's CliRunner."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradesim.cli.app import app

from .conftest import HEADER

runner = CliRunner()


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TRADESIM_SCENARIOS_DIR", raising=False)


def _lines(output: str) -> list[str]:
    assert "Traceback" not in output
    return [ln for ln in output.strip().splitlines() if ln.strip()]


def test_list_shows_the_shipped_scenarios() -> None:
    result = runner.invoke(app, ["scenarios", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("calm", "flash-crash", "earnings-gap", "csv-replay"):
        assert name in result.output
    assert "AAPL, MSFT, GOOG, AMZN, JPM" in result.output
    assert "3,000" in result.output


def test_list_reads_the_configured_folder(tmp_path: Path) -> None:
    (tmp_path / "sc").mkdir()
    (tmp_path / "sc" / "solo.yaml").write_text(HEADER + "description: only one\nsymbols:\n  - {symbol: ONE, "
                                               "initial_price: 1}\n")
    result = runner.invoke(app, ["scenarios", "list"], env={"COLUMNS": "200", "TRADESIM_SCENARIOS_DIR": "sc"})
    assert result.exit_code == 0, result.output
    assert "solo" in result.output
    assert "only one" in result.output
    assert "calm" not in result.output


def test_show_prints_details_and_first_ticks() -> None:
    result = runner.invoke(app, ["scenarios", "show", "earnings-gap", "--ticks", "4"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "NVDA" in result.output
    assert "+8 %" in result.output
    assert "2024-02-21 21:00:00.000" in result.output
    assert result.output.count("674.70") >= 2  # initial price in the symbol table and the first tick


@pytest.mark.parametrize("command", [["scenarios", "show"], ["run"]])
def test_an_empty_scenario_name_says_so(command: list[str]) -> None:
    result = runner.invoke(app, [*command, ""])
    assert result.exit_code == 2
    (line,) = _lines(result.output)
    assert line == "scenario: empty: give a scenario's name (`tradesim scenarios list`) or a file's path"  # was ".:"


def test_run_with_both_a_speed_and_fast_exits_2_instead_of_one_winning() -> None:
    result = runner.invoke(app, ["run", "calm", "--speed", "10", "--fast"])
    assert result.exit_code == 2
    assert _lines(result.output) == ["error: give --speed N or --fast, not both"]


def test_show_unknown_name_exits_2_listing_what_exists() -> None:
    result = runner.invoke(app, ["scenarios", "show", "nope"])
    assert result.exit_code == 2
    (line,) = _lines(result.output)
    assert line.startswith("nope: unknown scenario")
    listed = line.rsplit(": ", 1)[1].rstrip(")").split(", ")
    assert {"calm", "csv-replay", "earnings-gap", "flash-crash"} <= set(listed)


def test_validate_accepts_the_shipped_files() -> None:
    shipped = sorted(str(p) for p in (Path(__file__).resolve().parents[3] / "scenarios").glob("*.yaml"))
    result = runner.invoke(app, ["scenarios", "validate", *shipped])
    assert result.exit_code == 0, result.output
    assert len([ln for ln in _lines(result.output) if ln.startswith("ok ")]) == len(shipped) >= 4


def _write(name: str, text: str) -> str:
    Path(name).parent.mkdir(parents=True, exist_ok=True)
    Path(name).write_text(textwrap.dedent(text))
    return name


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"unknown.yaml": HEADER + "symbols:\n  - {symbol: AAA, initial_price: 1, colour: red}\n"},
         "unknown.yaml:7: symbols[0].colour: unknown field"),
        ({"negvol.yaml": HEADER + "symbols:\n  - symbol: AAA\n    initial_price: 1\n    volatility: -0.3\n"},
         "negvol.yaml:9: symbols[0].volatility: must be >= 0"),
        ({"data/nolast.csv": "timestamp,symbol,bid,ask,size\n1704205800000,AAA,1,2,5\n",
          "nocol.yaml": HEADER + "source: {csv: data/nolast.csv}\n"},
         "data/nolast.csv:1: last: missing column (header has: timestamp, symbol, bid, ask, size)"),
        ({"data/badts.csv": "timestamp,symbol,bid,ask,last,size\n1704205800000,AAA,1,2,1,5\n"
                            "2024-02-30T10:00:00Z,AAA,1,2,1,5\n",
          "badts.yaml": HEADER + "source: {csv: data/badts.csv}\n"},
         "data/badts.csv:3: timestamp: unparsable timestamp '2024-02-30T10:00:00Z'"),
    ],
)
def test_validate_bad_file_exits_2_naming_file_line_and_field(files: dict[str, str], expected: str) -> None:
    names = [_write(name, text) for name, text in files.items()]
    result = runner.invoke(app, ["scenarios", "validate", names[-1]])
    assert result.exit_code == 2
    (line,) = _lines(result.output)
    assert line.startswith(expected)


@pytest.mark.parametrize(("price", "says"), [
    ("1e1000000000000000000", "must be <= 1000000"),
    ("1e-99999999999999999999", "Decimal input should have no more than 4 decimal places")])
def test_validate_an_exponent_past_decimals_range_exits_2_as_the_number_it_is(price: str, says: str) -> None:
    """A probe: a decimal.InvalidOperation traceback (exit 1), where 1e999999999999999999 said `must be <= 1000000`."""
    name = _write("huge.yaml", HEADER + f'symbols:\n  - {{symbol: AAA, initial_price: "{price}"}}\n')
    result = runner.invoke(app, ["scenarios", "validate", name])
    assert result.exit_code == 2, result.output
    assert _lines(result.output) == [f"huge.yaml:7: symbols[0].initial_price: {says}"]


def test_validate_reports_every_file_and_problem() -> None:
    good = _write("good.yaml", HEADER + "symbols:\n  - {symbol: AAA, initial_price: 1}\n")
    bad = _write("bad.yaml", HEADER + "colour: red\nsymbols:\n  - {symbol: AAA, initial_price: -1}\n")
    result = runner.invoke(app, ["scenarios", "validate", good, bad, "missing.yaml"])
    assert result.exit_code == 2
    assert _lines(result.output) == [
        "ok good.yaml: t, 1 symbols, 300 ticks",
        "bad.yaml:6: colour: unknown field",
        "bad.yaml:8: symbols[0].initial_price: must be > 0",
        "missing.yaml: file not found",
    ]


def test_validate_checks_what_a_run_needs_a_strategy_it_can_build_and_symbols_it_can_alias() -> None:
    strategy = _write("strategy.yaml", HEADER + "symbols:\n  - {symbol: AAA, initial_price: 1}\n"
                      "accounts:\n  - {name: q, cash: \"1000\"}\n"
                      "strategy:\n  class: \"no_such_module.sub:Thing\"\n  account: q\n  symbols: [AAA]\n")
    result = runner.invoke(app, ["scenarios", "validate", strategy])
    assert result.exit_code == 2
    (line,) = _lines(result.output)
    assert line.startswith("strategy.yaml:11: strategy.class:")
    assert "no_such_module" in line
    long = _write("long.yaml", HEADER + "symbols:\n  - {symbol: ABCDEFGHIJKLM, initial_price: 1}\n"
                  "accounts:\n  - {name: q, cash: \"1000\"}\n"
                  "orders:\n  - {at: 1s, account: q, symbol: ABCDEFGHIJKLM, side: buy, qty: 1}\n")
    result = runner.invoke(app, ["scenarios", "validate", long])
    assert result.exit_code == 2
    assert _lines(result.output)[0].startswith("long.yaml:6: symbols:")


def test_validate_refuses_a_trading_file_without_expect_as_run_does() -> None:
    """`validate` said ok to a file with accounts and orders but no `expect`, which `run` then refused (exit 2);
    a file only to replay needs no `expect`."""
    script = ("accounts:\n  - {name: q, cash: \"1000\"}\n"
              "orders:\n  - {at: 1s, account: q, symbol: AAA, side: buy, qty: 1}\n")
    symbols = "symbols:\n  - {symbol: AAA, initial_price: 1}\n"
    trading = _write("trading.yaml", HEADER + symbols + script)
    replay = _write("replay.yaml", HEADER + symbols)
    result = runner.invoke(app, ["scenarios", "validate", trading, replay])
    assert result.exit_code == 2, result.output
    assert _lines(result.output) == [
        "ok replay.yaml: t, 1 symbols, 300 ticks",
        "trading.yaml: expect: the file has no `expect` section, so a run would pass with nothing checked; add what "
        "must come out (scenarios/README.md)",
    ]
    ran = runner.invoke(app, ["run", trading])
    assert ran.exit_code == 2
    assert "trading.yaml: expect: the file has no `expect` section" in ran.output


def test_list_shows_brackets_as_written(tmp_path: Path) -> None:
    (tmp_path / "sc").mkdir()
    (tmp_path / "sc" / "x[red]y.yaml").write_text(HEADER + "description: \"[bold]x[/] [/nope] [red\"\nsymbols:\n"
                                                  "  - {symbol: ONE, initial_price: 1}\n")
    (tmp_path / "sc" / "bad.yaml").write_text(HEADER.replace("id: t", "id: BAD") + "symbols:\n"
                                              "  - {symbol: ONE, initial_price: 1}\n")
    result = runner.invoke(app, ["scenarios", "list"], env={"COLUMNS": "300", "TRADESIM_SCENARIOS_DIR": "sc"})
    assert result.exit_code == 0, result.output  # before: a MarkupError traceback
    for shown in ("x[red]y", "[bold]x[/] [/nope] [red", "[a-z0-9"):
        assert shown in result.output  # before: dropped as markup


@pytest.mark.parametrize("folder", ["a[/]b", "[old]"])
def test_list_shows_a_folder_with_brackets_as_written(tmp_path: Path, folder: str) -> None:
    """A review found `a[/]b` ending in a MarkupError traceback and `[old]` dropped from the title."""
    (tmp_path / folder).mkdir(parents=True)
    (tmp_path / folder / "one.yaml").write_text(HEADER + "symbols:\n  - {symbol: ONE, initial_price: 1}\n")
    result = runner.invoke(app, ["scenarios", "list"], env={"COLUMNS": "300", "TRADESIM_SCENARIOS_DIR": folder})
    assert result.exit_code == 0, result.output
    assert f"scenarios in {folder}" in result.output


def test_a_description_shows_control_characters_as_escapes(tmp_path: Path) -> None:
    """Before: `list` and `show` wrote a description's ESC sequences to the terminal (restyling it)."""
    (tmp_path / "sc").mkdir()
    (tmp_path / "sc" / "esc.yaml").write_text(HEADER + "description: \"a\\e[31mred\\nnext\"\nsymbols:\n"
                                              "  - {symbol: ONE, initial_price: 1}\n")
    env = {"COLUMNS": "300", "TRADESIM_SCENARIOS_DIR": "sc"}
    for argv in (["scenarios", "list"], ["scenarios", "show", "esc", "-n", "0"]):
        result = runner.invoke(app, argv, env=env)
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output
        assert "a\\x1b[31mred" in result.output
        assert "next" in result.output


def test_validate_checks_what_a_run_needs_also_without_orders() -> None:
    long = _write("long.yaml", HEADER + "symbols:\n  - {symbol: ABCDEFGHIJKLM, initial_price: 1}\n"
                  "accounts:\n  - {name: q, cash: \"1000\"}\n")
    result = runner.invoke(app, ["scenarios", "validate", long])
    assert result.exit_code == 2, result.output  # before: ok, and `tradesim run` refused it
    assert _lines(result.output)[0].startswith("long.yaml:6: symbols:")


def test_a_csv_symbol_too_long_to_alias_is_named_at_the_csv_source() -> None:
    """A probe: it was reported as `symbols:` on line 1, a key the file does not have."""
    _write("long.csv", "timestamp,symbol,bid,ask,last,size\n2024-01-02T14:30:00Z,ABCDEFGHIJKLM,1,1.02,1.01,5\n")
    path = _write("longcsv.yaml", HEADER + "source:\n  csv: long.csv\naccounts:\n  - {name: q, cash: \"1000\"}\n")
    result = runner.invoke(app, ["scenarios", "validate", path])
    assert result.exit_code == 2, result.output
    assert _lines(result.output)[0].startswith("longcsv.yaml:7: source.csv: symbol ABCDEFGHIJKLM is too long")


def test_a_run_ending_too_near_the_last_market_time_is_a_file_problem() -> None:
    """A probe: a file starting 9999-12-31T23:58 validated, then the run's closing orders were refused (their
    cancel time past the API's last market time) and the run exited 3, "stack not usable", after making accounts."""
    late = _write("late.yaml", HEADER.replace("2024-01-02T14:30:00Z", "9999-12-31T23:58:00Z").replace("300", "60")
                  + "symbols:\n  - {symbol: AAA, initial_price: 1}\naccounts:\n  - {name: q, cash: \"1000\"}\n")
    result = runner.invoke(app, ["scenarios", "validate", late])
    assert result.exit_code == 2, result.output
    assert _lines(result.output)[0].startswith("late.yaml:2: start: a run needs a day of market time after its end")


def test_a_replayed_csv_ending_too_near_the_last_market_time_is_a_file_problem_for_a_run() -> None:
    """The run ends after the CSV's last tick, not only after `duration_s`: a CSV running up to 9999-12-31 validated,
    and the run's closing ticks came after the last market time (exit 3, after making accounts)."""
    _write("late.csv", "timestamp,symbol,bid,ask,last,size\n2024-01-02T14:30:00Z,AAA,1,1.02,1.01,5\n"
           "9999-12-31T23:59:00Z,AAA,1,1.02,1.01,5\n")
    late = _write("late.yaml", HEADER + "source:\n  csv: late.csv\naccounts:\n  - {name: q, cash: \"1000\"}\n"
                  "expect:\n  accounts:\n    q: {executions: 0}\n")
    result = runner.invoke(app, ["scenarios", "validate", late])
    assert result.exit_code == 2, result.output
    assert _lines(result.output) == ["late.yaml:7: source.csv: its last tick (9999-12-31T23:59:00.000Z) leaves a run "
                                     "no day of market time after it, before 9999-12-31T23:59:59.999Z"]
    replay = _write("replay.yaml", HEADER + "source:\n  csv: late.csv\n")
    assert runner.invoke(app, ["scenarios", "validate", replay]).exit_code == 0  # a replay alone plays it as written


def test_validate_refuses_a_replayed_csv_that_begins_before_start_for_a_run() -> None:
    """Before: accepted; the run then blamed the strategy ("market time went back"), exit 1."""
    _write("early.csv", "timestamp,symbol,bid,ask,last,size\n2020-01-02T14:30:00Z,AAA,1,1.02,1.01,5\n"
           "2024-01-02T14:30:01Z,AAA,1,1.02,1.01,5\n")
    early = _write("early.yaml", HEADER + "source:\n  csv: early.csv\naccounts:\n  - {name: q, cash: \"1000\"}\n")
    result = runner.invoke(app, ["scenarios", "validate", early])
    assert result.exit_code == 2, result.output
    assert _lines(result.output) == ["early.yaml:7: source.csv: its first tick (2020-01-02T14:30:00.000Z) is before "
                                     "start (2024-01-02T14:30:00.000Z); a run begins at start"]
    replay = _write("replay.yaml", HEADER + "source:\n  csv: early.csv\n")
    assert runner.invoke(app, ["scenarios", "validate", replay]).exit_code == 0  # a replay alone plays it as written


def test_a_problem_shows_control_characters_in_the_files_keys_as_escapes() -> None:
    """Before: an ESC in a key restyled the terminal, and a newline made a second line that looked like another
    file's problem."""
    path = _write("ctl.yaml", HEADER + "symbols:\n  - {symbol: AAA, initial_price: 1}\n"
                  "\"a\\x01\\e[31mRED\\nfake.yaml:1: all good\": 1\n")
    result = runner.invoke(app, ["scenarios", "validate", path])
    assert result.exit_code == 2, result.output
    assert _lines(result.output) == ["ctl.yaml:8: a\\x01\\x1b[31mRED\\nfake.yaml:1: all good: unknown field"]


def test_a_strategy_constructor_that_exits_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "quitter.py").write_text("from tradesim.strategies import Strategy\n\n"
                                         "class Q(Strategy):\n    def __init__(self, params):\n"
                                         "        raise SystemExit(4)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _write("q.yaml", HEADER + "symbols:\n  - {symbol: AAA, initial_price: 1}\n"
                  "accounts:\n  - {name: q, cash: \"1000\"}\n"
                  "strategy:\n  class: \"quitter:Q\"\n  account: q\n  symbols: [AAA]\n")
    result = runner.invoke(app, ["scenarios", "validate", path])
    assert result.exit_code == 2, result.output  # before: exit 4 and no word
    (line,) = _lines(result.output)
    assert "failed to start: SystemExit: 4" in line


def test_a_strategy_module_beside_its_scenario_file_is_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: `class: mystrat:Mine` with mystrat.py beside the file was "no module" unless PYTHONPATH named it (the
    console script does not put the working folder on the path)."""
    import sys

    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "beside_mine", raising=False)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the folder, not the working one, is searched
    (tmp_path / "beside_mine.py").write_text("from tradesim.strategies import Strategy\n\n"
                                             "class Mine(Strategy):\n    pass\n")
    path = tmp_path / "mine.yaml"
    path.write_text(HEADER + "symbols:\n  - {symbol: AAA, initial_price: 1}\n"
                    "accounts:\n  - {name: q, cash: \"1000\"}\n"
                    "strategy:\n  class: \"beside_mine:Mine\"\n  account: q\n  symbols: [AAA]\n"
                    "expect:\n  accounts:\n    q: {executions: 0}\n")
    result = runner.invoke(app, ["scenarios", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert sys.path[-1] == str(tmp_path)  # after what is installed: a module there cannot shadow one


def test_each_scenario_files_strategy_is_the_module_beside_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A probe: `validate a/s.yaml b/s.yaml`, each with its own package `twin` (and the `twin_helper.py` it imports)
    beside it, checked b's strategy with a's modules, cached under the same names: b failed to start."""
    import sys

    monkeypatch.setattr(sys, "path", list(sys.path))
    for folder in ("a", "b"):
        (tmp_path / folder / "twin").mkdir(parents=True)
        (tmp_path / folder / "twin" / "__init__.py").write_text("")
        (tmp_path / folder / "twin" / "strat.py").write_text(
            "from twin_helper import WHO\nfrom tradesim.strategies import Strategy\n\n"
            "class Twin(Strategy):\n    def __init__(self, params):\n        super().__init__(params)\n"
            "        if params['who'] != WHO:\n            raise ValueError(f'built from {WHO}/twin/strat.py')\n")
        (tmp_path / folder / "twin_helper.py").write_text(f"WHO = {folder!r}\n")
        (tmp_path / folder / "s.yaml").write_text(
            HEADER + "symbols:\n  - {symbol: AAA, initial_price: 1}\naccounts:\n  - {name: q, cash: \"1000\"}\n"
            f"strategy:\n  class: \"twin.strat:Twin\"\n  account: q\n  symbols: [AAA]\n  params: {{who: {folder}}}\n"
            "expect:\n  accounts:\n    q: {executions: 0}\n")
    result = runner.invoke(app, ["scenarios", "validate", "a/s.yaml", "b/s.yaml", "a/s.yaml"])
    assert result.exit_code == 0, result.output
    assert len(_lines(result.output)) == 3
    assert sys.path[-1] == str(tmp_path / "a")  # last, as before: a module installed cannot be shadowed
    assert str(tmp_path / "b") not in sys.path  # one file's folder at a time, so a's twin is found, not b's


def test_the_format_example_of_the_scenarios_readme_is_a_valid_file(tmp_path: Path) -> None:
    """Its two YAML blocks (the market, then trading and expectations) are one file users copy; the strategy's
    `params` lacked MovingAverageCross's required `qty`, so the example failed `validate` as documented."""
    import re
    import shutil

    folder = Path(__file__).resolve().parents[3] / "scenarios"
    blocks = re.findall(r"```yaml\n(.*?)```", (folder / "README.md").read_text(), re.S)
    assert len(blocks) == 2
    text = "".join(blocks).replace("outcomes_hash: 3f1c…", "outcomes_hash: " + "3f1c" + "0" * 60)
    (tmp_path / "data").mkdir()
    shutil.copy(folder / "data" / "sample.csv", tmp_path / "data" / "sample.csv")  # `source.csv` of the example
    (tmp_path / "example.yaml").write_text(text)
    result = runner.invoke(app, ["scenarios", "validate", str(tmp_path / "example.yaml")])
    assert result.exit_code == 0, result.output
    assert "1 order, strategy, 11 expectations" in result.output
