"""Evaluating a run against `expect`: every kind of expectation passes and fails with a readable actual vs expected;
the outcomes hash is stable under Decimal spelling and input order and changes with any decided field."""

from __future__ import annotations

import dataclasses
import hashlib
from decimal import Decimal
from typing import Any

import pytest

from tradesim.scenarios.expect import (
    AccountResult,
    Check,
    Outcome,
    ReadSide,
    RunResult,
    account_result,
    canonical_outcomes,
    evaluate,
    outcomes_hash,
)
from tradesim.scenarios.model import Expect
from tradesim.scenarios.report import json_document

D = Decimal


def _outcome(order_id: str = "buy", index: int = 0, at_ms: int = 10_000, **changes: Any) -> Outcome:
    base = Outcome(order_id=order_id, index=index, at_ms=at_ms, account="trader", symbol="AAPL", side="buy", qty=100,
                   type="market", status="executed", fill_price=D("185.5599"), fee=D("2.36"),
                   cash_after=D("81441.65"), position_after=100)
    return dataclasses.replace(base, **changes)


BUY = _outcome()
SELL = _outcome("sell", 1, 60_000, side="sell", fill_price=D("185.434"), fee=D("2.35"), cash_after=D("99982.70"),
                position_after=0)
REFUSED = _outcome("greedy", 2, 70_000, qty=1000, status="rejected", reason="insufficient_funds", fill_price=None,
                   fee=None, cash_after=None, position_after=None)
RESULT = RunResult(
    outcomes=[BUY, SELL, REFUSED],
    accounts={"trader": AccountResult(cash=D("99982.70"), positions={"AAPL": 0, "MSFT": 5},
                                      realized_pnl=D("-17.30"), executions=2)},
    bars={"1s": 120, "1m": 2},
    read_side=ReadSide(searchable_trades=3, volume={"AAPL": 200}),
)


def _checks(expect: dict[str, Any], result: RunResult = RESULT) -> list[Check]:
    return evaluate(Expect.model_validate(expect), result)


def _one(expect: dict[str, Any], result: RunResult = RESULT) -> Check:
    (check,) = _checks(expect, result)
    return check


@pytest.mark.parametrize(("expect", "name", "expected", "actual_if_passing", "failing", "actual_if_failing"), [
    ({"orders": {"buy": {"status": "executed"}}}, "order buy status", "executed", "executed",
     {"orders": {"buy": {"status": "cancelled"}}}, "executed"),
    ({"orders": {"greedy": {"status": "rejected"}}}, "order greedy status", "rejected",
     "rejected (insufficient_funds)", {"orders": {"greedy": {"status": "executed"}}}, "rejected (insufficient_funds)"),
    ({"orders": {"greedy": {"reason": "insufficient_funds"}}}, "order greedy reason", "insufficient_funds",
     "insufficient_funds", {"orders": {"buy": {"reason": "expired"}}}, "no reason"),
    ({"orders": {"buy": {"fill_price": {"min": "185", "max": "186"}}}}, "order buy fill price",
     "between 185 and 186", "185.5599", {"orders": {"buy": {"fill_price": {"max": "185.5"}}}}, "185.5599"),
    ({"orders": {"buy": {"fill_price": {"min": "185.5599"}}}}, "order buy fill price", "at least 185.5599",
     "185.5599", {"orders": {"greedy": {"fill_price": {"min": "1"}}}}, "no fill (rejected)"),
    ({"accounts": {"trader": {"cash": {"min": "99982.70", "max": "99982.70"}}}}, "account trader cash",
     "between 99982.70 and 99982.70", "99982.70", {"accounts": {"trader": {"cash": {"min": "100000"}}}},
     "99982.70"),
    ({"accounts": {"trader": {"positions": {"AAPL": 0}}}}, "account trader position AAPL", "0", "0",
     {"accounts": {"trader": {"positions": {"AAPL": 100}}}}, "0"),
    ({"accounts": {"trader": {"positions": {"NVDA": 0}}}}, "account trader position NVDA", "0", "0",
     {"accounts": {"trader": {"positions": {"NVDA": 1}}}}, "0"),
    ({"accounts": {"trader": {"realized_pnl": {"max": "0"}}}}, "account trader realized P&L", "at most 0",
     "-17.30", {"accounts": {"trader": {"realized_pnl": {"min": "0"}}}}, "-17.30"),
    ({"accounts": {"trader": {"executions": 2}}}, "account trader executions", "2", "2",
     {"accounts": {"trader": {"executions": 3}}}, "2"),
    ({"market": {"bars": {"1s": 120}}}, "market bars 1s", "120", "120", {"market": {"bars": {"1s": 119}}}, "120"),
    ({"market": {"bars": {"1m": {"min": 1, "max": 2}}}}, "market bars 1m", "between 1 and 2", "2",
     {"market": {"bars": {"1m": {"min": 3}}}}, "2"),
    ({"read_side": {"searchable_trades": 3}}, "read side searchable trades", "3", "3",
     {"read_side": {"searchable_trades": 2}}, "3"),
    ({"read_side": {"volume": {"AAPL": 200}}}, "read side volume AAPL", "200", "200",
     {"read_side": {"volume": {"AAPL": 100}}}, "200"),
    ({"read_side": {"volume": {"MSFT": 0}}}, "read side volume MSFT", "0", "0",
     {"read_side": {"volume": {"MSFT": 5}}}, "0"),
])
def test_each_kind_of_expectation_passes_and_fails_readably(
    expect: dict[str, Any], name: str, expected: str, actual_if_passing: str, failing: dict[str, Any],
    actual_if_failing: str,
) -> None:
    ok = _one(expect)
    assert (ok.name, ok.passed, ok.expected, ok.actual) == (name, True, expected, actual_if_passing)
    bad = _one(failing)
    assert not bad.passed
    assert bad.actual == actual_if_failing
    assert bad.message == f"expected {bad.expected}, got {actual_if_failing}"


def test_missing_things_fail_and_say_what_is_missing() -> None:
    empty = RunResult(outcomes=[], accounts={})
    checks = _checks({
        "orders": {"buy": {"status": "executed", "fill_price": {"min": "1"}}, "sell": {"reason": "expired"}},
        "accounts": {"ghost": {"cash": {"min": "1"}, "positions": {"AAPL": 0}, "realized_pnl": {"max": "0"},
                               "executions": 0}},
        "market": {"bars": {"1s": 0}},
        "read_side": {"searchable_trades": 0, "volume": {"AAPL": 0}},
    }, empty)
    assert [(c.name, c.passed, c.actual) for c in checks] == [
        ("order buy status", False, "no outcome"),
        ("order buy fill price", False, "no outcome"),
        ("order sell reason", False, "no outcome"),
        ("account ghost cash", False, "no such account in the run"),
        ("account ghost position AAPL", False, "no such account in the run"),
        ("account ghost realized P&L", False, "no such account in the run"),
        ("account ghost executions", False, "no such account in the run"),
        ("market bars 1s", False, "not counted"),
        ("read side searchable trades", False, "read side unavailable"),
        ("read side volume AAPL", False, "read side unavailable"),
    ]


def test_outcomes_hash_expectation_compares_with_the_runs_hash() -> None:
    right = _one({"outcomes_hash": outcomes_hash(RESULT.outcomes)})
    assert (right.name, right.passed, right.actual) == ("outcomes hash", True, RESULT.outcomes_hash)
    wrong = _one({"outcomes_hash": "0" * 64})
    assert not wrong.passed
    assert wrong.message == f"expected {'0' * 64}, got {RESULT.outcomes_hash}"


def test_no_expect_section_makes_no_checks_and_count_matches_evaluate() -> None:
    assert evaluate(None, RESULT) == []
    expect = Expect.model_validate({
        "orders": {"buy": {"status": "executed", "fill_price": {"max": "200"}}, "greedy": {"reason": "expired"}},
        "accounts": {"trader": {"positions": {"AAPL": 0, "MSFT": 5}, "executions": 2}},
        "market": {"bars": {"1s": 1, "1m": 2}},
        "read_side": {"searchable_trades": 3, "volume": {"AAPL": 200}},
        "outcomes_hash": "a" * 64,
    })
    checks = evaluate(expect, RESULT)
    assert len(checks) == expect.count() == 11
    assert len({c.name for c in checks}) == len(checks)  # names are unique: one JUnit test case each


def test_account_result_realizes_pnl_by_average_cost_with_fees() -> None:
    fills = [
        _outcome("a", 0, 1, side="buy", qty=100, fill_price=D("10"), fee=D("1")),
        _outcome("b", 1, 2, side="buy", qty=100, fill_price=D("12"), fee=D("1")),
        _outcome("c", 2, 3, side="sell", qty=100, fill_price=D("15"), fee=D("1")),
        _outcome("d", 3, 4, side="sell", qty=500, status="rejected", reason="insufficient_shares", fill_price=None,
                 fee=None),
    ]
    result = account_result(D("8797"), {"AAPL": 100}, fills)
    # cost basis 1,000 + 1 + 1,200 + 1 = 2,202 for 200 shares; selling 100 removes 1,101, proceeds 1,500 − 1
    assert result.realized_pnl == D("398")
    assert (result.cash, result.positions, result.executions) == (D("8797"), {"AAPL": 100}, 3)


def test_account_result_folds_fills_in_the_order_they_were_decided_not_placed() -> None:
    """Before: a limit buy placed first but filled after a later buy and sell was folded first, so the sell
    realized against its lower price (a probe's run: 917.49 realized where the account made -11.22)."""
    dip = _outcome("dip", 0, 5_000, qty=100, fill_price=D("166.96"), fee=D("2.14"), decided_ms=1_040)
    buy = _outcome("buy", 1, 10_000, qty=100, fill_price=D("185.5324"), fee=D("2.36"), decided_ms=1_010)
    sell = _outcome("sell", 2, 20_000, side="sell", qty=100, fill_price=D("185.4673"), fee=D("2.35"),
                    decided_ms=1_020)
    result = account_result(D(0), {"AAPL": 100}, [dip, buy, sell])
    # buy 18,553.24 + 2.36; sell 18,546.73 − 2.35: −11.22 (the dip's shares are still held)
    assert result.realized_pnl == D("-11.22")


def test_a_round_trip_realized_pnl_reads_as_money_in_checks_and_reports() -> None:
    """Before: the fold's 8-place cost made an even round trip `0E-8` ("got 0E-8" in the check, in `tradesim
    run`'s table and the JSON report), a loss `-2.00000000`."""
    even = [_outcome("a", 0, 1, qty=1, fill_price=D("10"), fee=D("1.00")),
            _outcome("b", 1, 2, side="sell", qty=1, fill_price=D("12"), fee=D("1.00"))]
    result = account_result(D(100), {}, even)
    assert result.realized_pnl == 0
    check = _one({"accounts": {"trader": {"realized_pnl": {"min": "0"}}}}, RunResult(even, {"trader": result}))
    assert (check.passed, check.actual) == (True, "0.00")
    assert json_document("s", 1, None, [check], RunResult(even, {"trader": result}))["accounts"]["trader"][
        "realized_pnl"] == "0.00"


def test_account_result_without_fills_has_nothing_realized() -> None:
    assert account_result(D("5"), {}, []) == AccountResult(D("5"), {}, D(0), 0)


def test_canonical_outcomes_is_the_documented_text() -> None:
    text = canonical_outcomes([SELL, BUY])
    assert text == (
        "tradesim-outcomes-v1\n"
        '["buy","AAPL","buy",100,"market","executed",null,"185.5599","2.36","81441.65",100]\n'
        '["sell","AAPL","sell",100,"market","executed",null,"185.434","2.35","99982.7",0]'
    )
    assert outcomes_hash([SELL, BUY]) == hashlib.sha256(text.encode()).hexdigest()


@pytest.mark.parametrize(("field", "a", "b"), [
    ("fill_price", D("100.0"), D("100.00")),
    ("fill_price", D("100"), D("1E+2")),
    ("fee", D("0"), D("0.00")),
    ("fee", D("-0.00"), D("0")),
    ("cash_after", D("99982.7"), D("99982.7000")),
])
def test_hash_is_the_same_however_a_decimal_is_spelled(field: str, a: Decimal, b: Decimal) -> None:
    assert outcomes_hash([dataclasses.replace(BUY, **{field: a})]) == outcomes_hash([dataclasses.replace(BUY,
                                                                                                        **{field: b})])


def test_hash_ignores_the_order_outcomes_arrive_in_and_the_account_name() -> None:
    assert outcomes_hash([BUY, SELL, REFUSED]) == outcomes_hash([REFUSED, SELL, BUY])
    assert outcomes_hash([BUY]) == outcomes_hash([dataclasses.replace(BUY, account="someone-else")])


@pytest.mark.parametrize(("field", "value"), [
    ("order_id", "buy2"), ("symbol", "MSFT"), ("side", "sell"), ("qty", 101), ("type", "limit"),
    ("status", "cancelled"), ("reason", "expired"), ("fill_price", D("185.56")), ("fee", D("2.37")),
    ("cash_after", D("81441.66")), ("position_after", 99), ("fill_price", None), ("position_after", None),
])
def test_hash_changes_with_any_decided_field(field: str, value: object) -> None:
    changed = dataclasses.replace(BUY, **{field: value})
    assert outcomes_hash([changed, SELL]) != outcomes_hash([BUY, SELL])


def test_hash_changes_when_the_script_order_changes() -> None:
    swapped_times = [dataclasses.replace(BUY, at_ms=SELL.at_ms), dataclasses.replace(SELL, at_ms=BUY.at_ms)]
    assert outcomes_hash(swapped_times) != outcomes_hash([BUY, SELL])
    same_time = [dataclasses.replace(BUY, at_ms=5, index=1), dataclasses.replace(SELL, at_ms=5, index=0)]
    assert outcomes_hash(same_time) != outcomes_hash([dataclasses.replace(o, at_ms=5) for o in (BUY, SELL)])


def test_hash_is_a_sha256_hex_digest() -> None:
    digest = outcomes_hash([])
    assert len(digest) == 64
    assert digest == hashlib.sha256(b"tradesim-outcomes-v1").hexdigest()
