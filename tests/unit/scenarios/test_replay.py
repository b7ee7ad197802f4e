"""CSV replay: every row becomes exactly one tick with the same values, per-symbol seq 1..n."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from tradesim.domain.events import encode
from tradesim.scenarios.errors import ScenarioError
from tradesim.scenarios.generators import generate
from tradesim.scenarios.loader import load_scenario

from .conftest import HEADER


def test_sample_csv_replays_row_for_row(repo_scenarios: Path) -> None:
    scenario = load_scenario(repo_scenarios / "csv-replay.yaml")
    with open(repo_scenarios / "data" / "sample.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ticks = list(generate(scenario))
    assert len(rows) >= 300
    assert len(ticks) == len(rows) == scenario.expected_ticks()
    assert len({r["symbol"] for r in rows}) == 3
    seqs: Counter[str] = Counter()
    for row, tick in zip(rows, ticks, strict=True):
        seqs[row["symbol"]] += 1
        when = datetime.fromisoformat(row["timestamp"])
        assert tick.event_time_ms == round(when.timestamp() * 1000)
        assert (tick.symbol, str(tick.bid), str(tick.ask), str(tick.last), tick.size) == (
            row["symbol"], row["bid"], row["ask"], row["last"], int(row["size"]))
        assert tick.seq == seqs[row["symbol"]]
        assert tick.scenario_id == "csv-replay"
    for symbol, count in seqs.items():
        assert [t.seq for t in ticks if t.symbol == symbol] == list(range(1, count + 1))


def test_values_keep_their_written_precision_and_timestamps_accept_offsets_and_epoch_ms(
    write: Callable[[str, str], Path],
) -> None:
    write("data/t.csv", """\
        timestamp,symbol,bid,ask,last,size,venue
        2024-01-02T15:30:00.250+01:00,AAA,10.10,10.2000,10.15,0,X
        1704205800300,AAA,10.1,10.2,10.1,5,Y
        2024-01-02T14:30:00.300Z,BBB,1,1,1,7,Z
        """)
    scenario = load_scenario(write("s.yaml", HEADER + "source: {csv: data/t.csv}\n"))
    ticks = list(generate(scenario))
    assert [t.event_time_ms for t in ticks] == [1704205800250, 1704205800300, 1704205800300]
    assert b'"ask":"10.2000"' in encode(ticks[0])  # written precision survives onto the wire
    assert [(t.symbol, t.seq, t.size) for t in ticks] == [("AAA", 1, 0), ("AAA", 2, 5), ("BBB", 1, 7)]


def test_csv_is_merged_with_generated_symbols_in_time_order(write: Callable[[str, str], Path]) -> None:
    write("t.csv", """\
        timestamp,symbol,bid,ask,last,size
        1704205800500,REC,1,2,1.5,1
        1704205802500,REC,1,2,1.5,1
        """)
    body = 'symbols:\n  - {symbol: GEN, initial_price: "5.00"}\nsource: {csv: t.csv}\n'
    scenario = load_scenario(write("s.yaml", HEADER + body))
    ticks = list(generate(scenario))
    assert len(ticks) == scenario.expected_ticks() == 302
    assert [t.symbol for t in ticks[:5]] == ["GEN", "REC", "GEN", "GEN", "REC"]
    assert [t.event_time_ms for t in ticks] == sorted(t.event_time_ms for t in ticks)
    assert [t.symbol for t in generate(scenario, ["REC"])] == ["REC", "REC"]


def test_a_csv_a_spreadsheet_saved_with_a_byte_order_mark_reads_like_any_other(
        write: Callable[[str, str], Path]) -> None:
    write("t.csv", "\ufefftimestamp,symbol,bid,ask,last,size\n1704205800500,REC,1,2,1.5,1\n")
    scenario = load_scenario(write("s.yaml", HEADER + "source: {csv: t.csv}\n"))  # before: "missing column"
    assert [(t.symbol, t.size) for t in generate(scenario)] == [("REC", 1)]


@pytest.mark.parametrize("column", ["timestamp", "size"])
def test_an_integer_too_long_to_read_is_a_row_problem(write: Callable[[str, str], Path], column: str) -> None:
    row = {"timestamp": "1704205800500", "size": "1"} | {column: "9" * 5000}
    write("t.csv", f"timestamp,symbol,bid,ask,last,size\n{row['timestamp']},REC,1,2,1.5,{row['size']}\n")
    with pytest.raises(ScenarioError) as caught:  # before: ValueError "Exceeds the limit (4300 digits)"
        load_scenario(write("s.yaml", HEADER + "source: {csv: t.csv}\n"))
    assert f"t.csv:2: {column}:" in str(caught.value)
