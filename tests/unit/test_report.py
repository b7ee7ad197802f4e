"""Run reports: the JUnit XML has the testsuite/testcase/failure shape CI servers read (parsed back here), and the
JSON document carries the checks, accounts and ordered outcomes with money as strings."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tradesim.scenarios.expect import AccountResult, Check, Outcome, ReadSide, RunResult
from tradesim.scenarios.report import RunReport, json_document, junit_xml, write_json, write_junit

OK = Check("order buy status", True, "executed", "executed")
BAD = Check("account trader cash", False, "at least 100000", "99982.70")
TRICKY = Check('order <b&"q"> status', False, "executed", "rejected (insufficient_funds) <&>")


def _parse(data: bytes) -> ET.Element:
    return ET.fromstring(data)  # noqa: S314 - our own output, parsed back to check its shape


def test_one_testsuite_per_run_one_testcase_per_expectation_with_counts() -> None:
    runs = [RunReport("round-trip-fees", [OK, BAD], 12.3456, properties={"seed": "42", "speed": "fast"},
                      timestamp=datetime(2024, 1, 2, 14, 30, tzinfo=UTC)),
            RunReport("cancel-before-fill", [OK], 1.5)]
    data = junit_xml(runs)
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = _parse(data)
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("time")) == ("3", "1", "0", "13.846")
    first, second = root.findall("testsuite")
    assert first.attrib == {"name": "round-trip-fees", "tests": "2", "failures": "1", "errors": "0", "skipped": "0",
                            "time": "12.346", "timestamp": "2024-01-02T14:30:00+00:00"}
    assert {p.get("name"): p.get("value") for p in first.iter("property")} == {"seed": "42", "speed": "fast"}
    cases = first.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("tradesim.round-trip-fees", "order buy status"), ("tradesim.round-trip-fees", "account trader cash")]
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.get("message") == "expected at least 100000, got 99982.70"
    assert failure.text == "expected at least 100000, got 99982.70"
    assert (second.get("name"), second.get("tests"), second.get("failures")) == ("cancel-before-fill", "1", "0")
    assert [c.get("classname") for c in second.findall("testcase")] == ["tradesim.cancel-before-fill"]


def test_a_run_that_did_not_complete_is_an_error_case() -> None:
    root = _parse(junit_xml([RunReport("overdraw-refused", [], 0.2, error="stack not usable: kafka is down")]))
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "1")
    (case,) = suite.findall("testcase")
    error = case.find("error")
    assert case.get("name") == "run"
    assert error is not None
    assert error.get("message") == "stack not usable: kafka is down"
    assert root.get("errors") == "1"


def test_markup_in_names_and_values_survives_the_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    write_junit(path, [RunReport("t", [TRICKY], 0.0)])
    case = _parse(path.read_bytes()).find("testsuite/testcase")
    assert case is not None
    assert case.get("name") == 'order <b&"q"> status'
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message") == 'expected executed, got rejected (insufficient_funds) <&>'


def test_characters_xml_cannot_hold_are_escaped_not_written_raw() -> None:
    """Before: a control character in a message (a scenario's own key, a strategy's error) made the file one CI
    servers refuse to read (not well-formed)."""
    check = Check("order o\x01 status", False, "executed", "rejected \x1b[31m\ufffe")
    root = _parse(junit_xml([RunReport("t", [check], 0.0, error="strategy raised: bad\x00 value\nsecond line")]))
    case, error_case = root.findall("testsuite/testcase")[1], root.find("testsuite/testcase")
    assert case.get("name") == "order o\\x01 status"
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message") == "expected executed, got rejected \\x1b[31m\\ufffe"
    assert error_case is not None
    error = error_case.find("error")
    assert error is not None
    assert error.text == "strategy raised: bad\\x00 value\nsecond line"  # a newline is XML's own


def test_no_runs_is_an_empty_but_valid_document() -> None:
    root = _parse(junit_xml([]))
    assert (root.tag, root.get("tests"), root.findall("testsuite")) == ("testsuites", "0", [])


def _result() -> RunResult:
    sell = Outcome("sell", 1, 60_500, "trader", "AAPL", "sell", 100, "market", "executed", None, Decimal("185.4340"),
                   Decimal("2.35"), Decimal("99982.70"), 0)
    buy = Outcome("buy", 0, 10_500, "trader", "AAPL", "buy", 100, "market", "executed", None, Decimal("185.5599"),
                  Decimal("2.36"), Decimal("81441.65"), 100)
    return RunResult(outcomes=[sell, buy],
                     accounts={"trader": AccountResult(Decimal("99982.70"), {"AAPL": 0}, Decimal("-17.30"), 2)},
                     bars={"1m": 2}, read_side=ReadSide(2, {"AAPL": 200}))


def test_a_lone_surrogate_in_an_error_is_written_as_its_json_escape(tmp_path: Path) -> None:
    """A strategy's exception text may hold one (before: UnicodeEncodeError, a traceback)."""
    write_json(tmp_path / "run.json", json_document("s", 1, None, [], _result(), error="bad \ud800 text"))
    assert json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))["error"] == "bad \ud800 text"


def test_json_document_has_the_run_checks_accounts_and_ordered_outcomes(tmp_path: Path) -> None:
    result = _result()
    doc = json_document("round-trip-fees", 42, 10.0, [OK, BAD], result)
    path = tmp_path / "run.json"
    write_json(path, doc)
    back = json.loads(path.read_text(encoding="utf-8"))
    assert back["scenario"] == "round-trip-fees"
    assert (back["seed"], back["speed"], back["passed"], back["error"]) == (42, 10.0, False, None)
    assert back["checks"][1] == {"name": "account trader cash", "passed": False, "expected": "at least 100000",
                                 "actual": "99982.70"}
    assert back["accounts"] == {"trader": {"cash": "99982.70", "positions": {"AAPL": 0}, "realized_pnl": "-17.30",
                                           "executions": 2}}
    assert back["market"] == {"bars": {"1m": 2}}
    assert back["read_side"] == {"searchable_trades": 2, "volume": {"AAPL": 200}}
    assert [o["order_id"] for o in back["outcomes"]] == ["buy", "sell"]  # script order, not arrival order
    assert back["outcomes"][0] == {
        "order_id": "buy", "index": 0, "at_ms": 10_500, "account": "trader", "symbol": "AAPL", "side": "buy",
        "qty": 100, "type": "market", "status": "executed", "reason": None, "fill_price": "185.5599", "fee": "2.36",
        "cash_after": "81441.65", "position_after": 100}
    assert back["outcomes_hash"] == result.outcomes_hash


def test_json_passes_only_when_every_check_passed_and_the_run_completed() -> None:
    result = _result()
    assert json_document("x", 1, None, [OK], result)["passed"] is True
    assert json_document("x", 1, None, [OK, BAD], result)["passed"] is False
    failed_run = json_document("x", 1, None, [], result, error="deadline passed")
    assert (failed_run["passed"], failed_run["error"], failed_run["speed"]) == (False, "deadline passed", None)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_a_report_that_cannot_be_written_names_its_file() -> None:
    """Before: `run --json /dev/full` said only "No space left on device" (the write's error has no file name)."""
    for write in (lambda p: write_json(p, {"a": 1}), lambda p: write_junit(p, [])):
        with pytest.raises(OSError, match="No space left") as caught:
            write(Path("/dev/full"))
        assert caught.value.filename == "/dev/full"
