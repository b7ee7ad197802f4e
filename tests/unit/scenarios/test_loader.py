"""Loading scenario files: shipped ones are valid, broken ones are reported at file, line and field."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tradesim.scenarios.errors import Problem, ScenarioError
from tradesim.scenarios.loader import find_scenario, load_scenario, scenario_files

from .conftest import HEADER

Write = Callable[[str, str], Path]
SHIPPED = ("calm", "flash-crash", "earnings-gap", "csv-replay")


def _problems(path: Path) -> list[Problem]:
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    return list(info.value.problems)


def test_every_shipped_scenario_validates(repo_scenarios: Path) -> None:
    files = scenario_files(repo_scenarios)
    assert {p.stem for p in files} >= set(SHIPPED)
    for path in files:
        scenario = load_scenario(path)
        assert scenario.id == path.stem
        assert scenario.start.tzinfo is UTC
        assert 0 < scenario.expected_ticks() <= 5000  # short enough to replay in seconds


def test_calm_has_five_symbols_and_a_few_thousand_ticks(repo_scenarios: Path) -> None:
    calm = load_scenario(repo_scenarios / "calm.yaml")
    assert len(calm.symbol_names()) == 5
    assert 1000 <= calm.expected_ticks() <= 5000
    assert calm.start == datetime(2024, 1, 2, 14, 30, tzinfo=UTC)


def test_find_scenario_by_name_and_by_path(repo_scenarios: Path, write: Write) -> None:
    assert find_scenario("calm", repo_scenarios) == repo_scenarios / "calm.yaml"
    local = write("mine/x.yaml", HEADER)
    assert find_scenario("mine/x.yaml", repo_scenarios) == local
    with pytest.raises(ScenarioError, match=r"unknown scenario .*calm, .*csv-replay, .*earnings-gap, .*flash-crash"):
        find_scenario("nope", repo_scenarios)
    with pytest.raises(ScenarioError, match="file not found"):
        find_scenario("mine/missing.yaml", repo_scenarios)


def test_start_with_an_offset_is_converted_to_utc(write: Write) -> None:
    body = HEADER.replace("14:30:00Z", "16:30:00+02:00") + "symbols:\n  - {symbol: AAA, initial_price: 1}\n"
    scenario = load_scenario(write("s.yaml", body))
    assert scenario.start == datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
    assert scenario.start_ms == 1704205800000


def test_csv_path_is_relative_to_the_scenario_file_not_the_working_directory(
    write: Write, repo_scenarios: Path
) -> None:
    write("elsewhere/data/t.csv", "timestamp,symbol,bid,ask,last,size\n1704205800000,AAA,1,2,1,1\n")
    scenario = load_scenario(write("elsewhere/s.yaml", HEADER + "source: {csv: data/t.csv}\n"))
    assert scenario.source is not None
    assert scenario.source.csv == Path.cwd() / "elsewhere" / "data" / "t.csv"
    assert scenario.symbol_names() == ["AAA"]


@pytest.mark.parametrize(
    ("body", "line", "field", "message"),
    [
        ("colour: red\nsymbols:\n  - {symbol: AAA, initial_price: 1}\n", 6, "colour", "unknown field"),
        ("symbols:\n  - symbol: AAA\n    initial_price: 1\n    volatility: -0.2\n",
         9, "symbols[0].volatility", "must be >= 0"),
        ("symbols:\n  - symbol: AAA\n    initial_price: 1\n    volatilty: 0.2\n",
         9, "symbols[0].volatilty", "unknown field (did you mean 'volatility'?)"),
        ("symbols:\n  - symbol: AAA\n    initial_price: 1\n    volume: {kind: lognormal, mean: 10, sigma: -1}\n",
         9, "symbols[0].volume.sigma", "must be >= 0"),
        ("symbols:\n  - symbol: AAA\n", 7, "symbols[0].initial_price", "required field is missing"),
        ("symbols:\n  - {symbol: AAA, initial_price: 1, spread: {bps: 1, absolute: 1}}\n",
         7, "symbols[0].spread", "set exactly one of bps, absolute"),
        ("symbols:\n  - {symbol: AAA, initial_price: 1}\n  - {symbol: AAA, initial_price: 2}\n",
         8, "symbols[1].symbol", "duplicate symbol AAA"),
        ("symbols:\n  - {symbol: AAA, initial_price: 1}\nevents:\n  - {at_s: 1, symbol: ZZZ, move_pct: 5}\n",
         9, "events[0].symbol", "unknown symbol ZZZ (generated: AAA)"),
        ("symbols:\n  - {symbol: AAA, initial_price: 1}\nexpectations: [{id: a}]\n",
         8, "expectations", "unknown field (did you mean 'expect'?)"),
        ("symbols:\n  - {symbol: AAA, initial_price: 1}\nseed: 2\n", 8, "seed", "duplicate key"),
        ("symbols: [\n", 7, "yaml", "invalid YAML"),
        # prices are bounded where they enter (the schema's cap and 4 decimal places): 1e30 once crashed the job
        ("symbols:\n  - {symbol: AAA, initial_price: 1e30}\n", 7, "symbols[0].initial_price",
         "must be <= 1000000"),
        # before: no line and no field; a Python repr for a field at line 1; a base-60 `1:30` read as 90
        ("symbols:\n  - {symbol: AAA, initial_price: 1}\nevents:\n  - {at_s: 1, symbol: AAA, move_pct: 5, x: "
         "2024-02-30}\n", 9, "events[0].x", "invalid value: day is out of range for month"),
        ("symbols:\n  - {symbol: AAA, initial_price: 1}\n2024-01-01: 1\n", 8, "2024-01-01",
         "a key must be text: quote it ('2024-01-01')"),
        ("symbols:\n  - {symbol: AAA, initial_price: 1}\nexpect:\n  accounts:\n    ~: {cash: {min: 1}}\n", 10,
         "expect.accounts.~", "a key must be text"),
        ("symbols:\n  - {symbol: AAA, initial_price: 1, volatility: 1:30}\n", 7, "symbols[0].volatility",
         "not a number: '1:30'"),
        ("symbols:\n  - {symbol: AAA, initial_price: 1}\nsource: {csv: 5}\n", 8, "source.csv",
         "must be a file path (text)"),
        # a node shared through an alias is named where it is written first, at that line
        ("symbols:\n  - &s {symbol: AAA, initial_price: 1, x: 2024-02-30}\n  - *s\n", 7, "symbols[0].x",
         "invalid value: day is out of range"),
        ("symbols:\n  - {symbol: AAA, initial_price: 1}\n? [a, b]\n: 1\n", 8, "?",
         "a key must be text, not a list or a mapping"),
        ("symbols:\n  - {symbol: AAA, initial_price: 1, tick_size: 1000000}\n", 7, "symbols[0].tick_size",
         "must be < 1000000"),  # no bid below the cap would be a multiple of it
        ("symbols:\n  - {symbol: AAA, initial_price: \"1.00001\"}\n", 7, "symbols[0].initial_price",
         "Decimal input should have no more than 4 decimal places"),
        # before: a NaN failed a bound ("must be >= 0")
        ("symbols:\n  - {symbol: AAA, initial_price: 1, volatility: .nan}\n", 7, "symbols[0].volatility",
         "must be a finite number, not NaN or infinity"),
        # a draw from a lognormal of mean 1e308 overflowed: `scenarios show`, `replay` and `run` gave a traceback
        ("symbols:\n  - {symbol: AAA, initial_price: 1, volume: {kind: lognormal, mean: 1e308}}\n", 7,
         "symbols[0].volume.mean", "must be <= 1000000000"),
        ("symbols:\n  - {symbol: AAA, initial_price: 1, volume: {kind: lognormal, mean: 5, sigma: 900}}\n", 7,
         "symbols[0].volume.sigma", "must be <= 5"),
    ],
)
def test_problem_names_file_line_and_field(write: Write, body: str, line: int, field: str, message: str) -> None:
    path = write("bad.yaml", HEADER + body)
    first = _problems(path)[0]
    assert (first.file, first.line, first.field) == ("bad.yaml", line, field)
    assert first.message.startswith(message)
    assert str(first).startswith(f"bad.yaml:{line}: {field}: {message}")


def test_a_strategys_params_may_have_keys_that_are_not_text(write: Write) -> None:
    """`params` go to the strategy as written: a map keyed by numbers (levels) is the strategy's business."""
    path = write("p.yaml", HEADER + "symbols:\n  - {symbol: AAA, initial_price: 1}\n"
                 "strategy:\n  class: \"x:Y\"\n  params: {levels: {1: 10, 2: 20}}\n")
    try:
        problems: list[Problem] = []
        load_scenario(path)
    except ScenarioError as exc:
        problems = list(exc.problems)
    assert not any("a key must be text" in p.message for p in problems), problems


def test_a_merge_key_override_is_not_a_duplicate(write: Write) -> None:
    path = write("merge.yaml", HEADER + "symbols:\n  - &base {symbol: AAA, initial_price: 1}\n"
                 "  - <<: *base\n    symbol: BBB\n")
    scenario = load_scenario(path)  # before: symbols[1].symbol: duplicate key
    assert scenario.symbol_names() == ["AAA", "BBB"]
    twice = write("twice.yaml", HEADER + "symbols:\n  - &base {symbol: AAA, initial_price: 1}\n"
                  "  - <<: *base\n    symbol: BBB\n    symbol: CCC\n")
    assert [(p.field, p.message) for p in _problems(twice)] == [("symbols[1].symbol", "duplicate key")]
    wrong = write("wrong.yaml", HEADER + "symbols:\n  - &base {symbol: AAA, initial_price: 1}\n"
                  "  - <<: *base\n    symbol: BBB\n    initial_price: x\n")
    first = _problems(wrong)[0]
    # the override's line, not the anchor's (whose value is fine): the key written after the merge wins
    assert (first.line, first.field) == (HEADER.count("\n") + 5, "symbols[1].initial_price")


def test_naive_start_is_refused_at_its_line(write: Write) -> None:
    path = write("bad.yaml", HEADER.replace("14:30:00Z", "14:30:00") + "symbols:\n  - {symbol: A, initial_price: 1}\n")
    assert [(p.line, p.field) for p in _problems(path)] == [(2, "start")]


def test_all_problems_are_reported_in_line_order(write: Write) -> None:
    body = "colour: red\nsymbols:\n  - symbol: AAA\n    initial_price: -1\n    volatility: -1\n"
    problems = _problems(write("bad.yaml", HEADER + body))
    assert [(p.line, p.field) for p in problems] == [
        (6, "colour"), (9, "symbols[0].initial_price"), (10, "symbols[0].volatility")]


@pytest.mark.parametrize(
    ("csv_text", "line", "field", "message"),
    [
        ("timestamp,symbol,bid,ask,size\n1,AAA,1,2,3\n", 1, "last", "missing column"),
        # which copy holds the bid would be a guess (the csv module takes the last)
        ("timestamp,symbol,bid,ask,last,size,bid\n1704205800000,AAA,1,2,1,1,3\n", 1, "bid",
         "column named 2 times in the header"),
        ("timestamp,symbol,bid,ask,last,size\n1704205800000,AAA,1,2,1,1\nyesterday,AAA,1,2,1,1\n",
         3, "timestamp", "unparsable timestamp 'yesterday'"),
        ("timestamp,symbol,bid,ask,last,size\n2024-01-02T14:30:00,AAA,1,2,1,1\n",
         2, "timestamp", "timestamp '2024-01-02T14:30:00' has no UTC offset"),
        ("timestamp,symbol,bid,ask,last,size\n1704205800000,AAA,1,2,1,1\n1704205799999,AAA,1,2,1,1\n",
         3, "timestamp", "earlier than the row on line 2"),
        ("timestamp,symbol,bid,ask,last,size\n1704205800000,AAA,3,2,1,1\n", 2, "bid", "bid 3 is above ask 2"),
        # a bid at the cap filled the runner's own barrier sells (limit at the cap): `run` reported wrong positions
        ("timestamp,symbol,bid,ask,last,size\n1704205800000,AAA,1000000,1000000,1000000,1\n", 2, "bid",
         "bid 1000000 is not below the price cap 1000000"),
        ("timestamp,symbol,bid,ask,last,size\n1704205800000,AAA,1,two,1,1\n", 2, "ask", "not a decimal number"),
        ("timestamp,symbol,bid,ask,last,size\n1704205800000,AAA,1,2,1,1.5\n", 2, "size", "not a non-negative"),
        ("timestamp,symbol,bid,ask,last,size\n1704205800000,aaa,1,2,1,1\n", 2, "symbol", "must be a symbol like AAPL"),
        ("timestamp,symbol,bid,ask,last,size\n1704205800000,AAA,1,1e30,1,1\n", 2, "ask",
         "less than or equal to 1000000"),
        ("timestamp,symbol,bid,ask,last,size\n1704205800000,AAA,1,2,1.00001,1\n", 2, "last", "decimal places"),
        ("timestamp,symbol,bid,ask,last,size\n1704205800000,AAA,1,2,1,9999999999999\n", 2, "size",
         "less than or equal to 1000000000"),
    ],
)
def test_csv_problem_names_csv_file_row_line_and_column(
    write: Write, csv_text: str, line: int, field: str, message: str
) -> None:
    write("data/t.csv", csv_text)
    first = _problems(write("s.yaml", HEADER + "source: {csv: data/t.csv}\n"))[0]
    assert (first.file, first.line, first.field) == ("data/t.csv", line, field)
    assert message in first.message


def test_missing_csv_file_points_at_the_source_line(write: Write) -> None:
    problems = _problems(write("s.yaml", HEADER + "source:\n  csv: data/none.csv\n"))
    assert [(p.file, p.line, p.field) for p in problems] == [("s.yaml", 7, "source.csv")]
    assert "data/none.csv" in problems[0].message


def test_a_folder_or_fifo_named_as_a_file_is_not_called_missing(write: Write, repo_scenarios: Path) -> None:
    Path("data/folder.csv").mkdir(parents=True)
    os.mkfifo("pipe.yaml")
    problems = _problems(write("s.yaml", HEADER + "source:\n  csv: data/folder.csv\n"))
    assert [(p.field, p.message) for p in problems] == [
        ("source.csv", "not a regular file (a folder, a FIFO or a device): data/folder.csv")]  # before: not found
    with pytest.raises(ScenarioError, match=r"^pipe\.yaml: not a regular file"):
        find_scenario("pipe.yaml", repo_scenarios)
    with pytest.raises(ScenarioError, match=r"^gone\.yaml: file not found$"):
        find_scenario("gone.yaml", repo_scenarios)


@pytest.mark.parametrize(("start", "duration", "field", "message"), [
    ("1900-01-01T00:00:00Z", "300", "start", "must be from 1970-01-01T00:00:00Z on"),
    ("0001-01-01T00:00:00+01:00", "300", "start", "out of range once converted to UTC"),
    ("9999-12-31T23:59:00Z", "300", "duration_s", "the run would end after 9999-12-31"),
    ("2024-01-02T14:30:00Z", "1e308", "duration_s", "must be <= 3155760000"),
])
def test_times_outside_what_ticks_can_carry_are_refused_at_their_line(
        write: Write, start: str, duration: str, field: str, message: str) -> None:
    body = (HEADER.replace("2024-01-02T14:30:00Z", start).replace("duration_s: 300", f"duration_s: {duration}")
            + "symbols:\n  - {symbol: AAA, initial_price: 1}\n")
    first = _problems(write("bad.yaml", body))[0]
    assert (first.field, first.line) == (field, 2 if field == "start" else 3)
    assert first.message.startswith(message)


@pytest.mark.parametrize(("raw", "line", "message"), [
    (b"timestamp,symbol,bid,ask,last,size\n1704205800000,AAA,1,2,1,1\n1704205800001,A\xff,1,2,1,1\n", None,
     "not UTF-8 text"),
    (b"timestamp,symbol,bid,ask,last,size\n1704205800000,AAA,1,2,1," + b"9" * 200_000 + b"\n", 2,
     "not readable as CSV"),
], ids=["not-utf8", "field-over-the-csv-limit"])
def test_a_csv_file_that_is_not_text_or_not_csv_is_a_problem_of_its_own(
        write: Write, raw: bytes, line: int | None, message: str) -> None:
    write("data/t.csv", "")
    Path("data/t.csv").write_bytes(raw)
    first = _problems(write("s.yaml", HEADER + "source: {csv: data/t.csv}\n"))[0]
    assert (first.file, first.line, first.field) == ("data/t.csv", line, "csv")
    assert message in first.message


def test_a_fractional_duration_is_counted_in_whole_milliseconds(write: Write) -> None:
    """1.001 * 1000 is 1000.999… as a float: the last millisecond's tick, and an order at it, were lost."""
    body = HEADER.replace("duration_s: 300", "duration_s: 1.001").replace("tick_interval_ms: 1000",
                                                                         "tick_interval_ms: 1")
    scenario = load_scenario(write("s.yaml", body + "symbols:\n  - {symbol: AAA, initial_price: 1}\n"))
    assert scenario.duration_ms == 1001
    assert scenario.steps == 1001
    finer = write("f.yaml", body.replace("1.001", "1.0005") + "symbols:\n  - {symbol: AAA, initial_price: 1}\n")
    assert [(p.field, p.message) for p in _problems(finer)] == [
        ("duration_s", "whole milliseconds only (at most 3 decimal places)")]
