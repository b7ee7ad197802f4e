"""Hostile scenario files — huge numbers, alias bombs, oversized files, absurd lengths, random bytes — end in a
ScenarioError naming the file (one line and exit 2 on the command line), never a traceback or a hang."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradesim.domain.errors import InvalidRecord
from tradesim.domain.events import Tick, decode
from tradesim.scenarios.errors import ScenarioError
from tradesim.scenarios.loader import MAX_FILE_BYTES, load_scenario

from .conftest import HEADER

Write = Callable[[str, str], Path]

SYMBOL = "symbols:\n  - {symbol: AAA, initial_price: 1}\n"


def _bomb(levels: int) -> str:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "anchors:\n" + "".join(f"  {line}\n" for line in lines)


@pytest.mark.parametrize(("body", "message"), [
    (HEADER.replace("duration_s: 300", "duration_s: " + "9" * 5000) + SYMBOL,
     "t.yaml:3: duration_s: invalid value: a number has more than 4,300 digits"),  # before: no line, no field
    (HEADER + SYMBOL + _bomb(9), "the document holds more than 100,000 values (counting each value an alias"),
    (HEADER.replace("duration_s: 300", "duration_s: 1e9") + SYMBOL, "at most 10,000,000 per pass"),
    (HEADER + "symbols:\n  - {symbol: AAA, initial_price: 1e400}\n", "symbols[0].initial_price"),
    (HEADER + "symbols:\n  - {symbol: AAA, initial_price: 1}\ndescription: " + "x" * 5000 + "\n", "description"),
    ("x:\n" + "  " * 20 + "- " * 3000 + "1\n", "t.yaml"),
    (HEADER + "symbols:\n  - {symbol: AAA, initial_price: 1, spread: {bps: 1e308}}\n", "symbols[0].spread.bps"),
    # a probe: validated `ok`, then an OverflowError's traceback from `show` and `run` (a float divided by the lot)
    (HEADER + "symbols:\n  - {symbol: AAA, initial_price: 1, volume: {kind: poisson, mean: 100, lot: " + "9" * 400
     + "}}\n", "symbols[0].volume.lot: must be <= 1000000000"),
], ids=["huge-integer", "alias-bomb", "too-many-ticks", "price-overflow", "oversized-field", "deep-nesting",
        "spread-overflow", "lot-overflow"])
def test_a_hostile_file_is_one_problem_not_a_crash(write: Write, body: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(write("t.yaml", body))
    assert message in str(caught.value)


@pytest.mark.parametrize(("csv", "message"), [
    ("bad\\0name.csv", "not a file name (it holds a NUL character)"),  # before: ValueError's traceback
    ("x" * 300 + ".csv", "the file name is too long"),  # before: OSError, exit 1 as if the machine failed
])
def test_a_csv_source_that_cannot_name_a_file_is_one_problem(write: Write, csv: str, message: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(write("t.yaml", HEADER + SYMBOL + f'source: {{csv: "{csv}"}}\n'))
    assert message in str(caught.value)


def test_an_oversized_file_is_refused_before_it_is_read(write: Write) -> None:
    path = write("t.yaml", HEADER + SYMBOL + "# " + "x" * MAX_FILE_BYTES + "\n")
    with pytest.raises(ScenarioError, match="scenario files are at most 1,048,576"):
        load_scenario(path)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400))
def test_random_text_is_a_scenario_or_a_scenario_error(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path: Path = tmp_path_factory.mktemp("fuzz") / "f.yaml"
    path.write_text(HEADER + text, encoding="utf-8")
    try:
        load_scenario(path)
    except ScenarioError:
        pass


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode)
       | st.dictionaries(st.sampled_from(["symbol", "bid", "ask", "last", "size", "seq", "event_time_ms", "type",
                                          "scenario_id", "run_id", "schema_version"]),
                         st.one_of(st.integers(), st.floats(), st.text(max_size=20), st.none(),
                                   st.sampled_from(["1e30", "1e-30", "NaN", "Infinity", "100.00001", "-1"])))
       .map(lambda d: __import__("json").dumps(d).encode()))
def test_the_tick_decoder_takes_any_bytes_and_refuses_with_invalid_record(raw: bytes) -> None:
    try:
        tick = decode(Tick, raw)
    except InvalidRecord:
        return
    assert 0 < tick.bid <= tick.ask  # whatever it accepts is a valid, bounded tick
    assert tick.last <= 1_000_000


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=300)
       | st.dictionaries(st.sampled_from(["type", "order_id", "user_id", "symbol", "side", "qty", "order_type",
                                          "limit_price", "stop_price", "time_in_force", "placed_at_ms", "at_ms",
                                          "cancel_at_ms", "client_order_id"]),
                         st.one_of(st.integers(), st.floats(), st.text(max_size=20), st.none(),
                                   st.sampled_from(["1e30", "order_placed", "limit", "buy", "AAA", "0.00001"])))
       .map(lambda d: __import__("json").dumps(d).encode()))
def test_the_order_decoder_takes_any_bytes_and_refuses_with_invalid_record(raw: bytes) -> None:
    from tradesim.domain.events import MAX_PRICE, OrderPlaced

    try:
        order = decode(OrderPlaced, raw)
    except InvalidRecord:
        return
    assert all(p is None or 0 < p <= MAX_PRICE for p in (order.limit_price, order.stop_price))
