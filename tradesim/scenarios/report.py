"""What a scenario run hands to CI and to people: JUnit XML (one testsuite per run, one testcase per expectation,
as CI servers read it) and a JSON document. Pure writers over `Check`s and a `RunResult`."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradesim.domain.money import money_text
from tradesim.scenarios.expect import Check, Outcome, RunResult, ordered


@dataclass(frozen=True)
class RunReport:
    """One scenario run for the JUnit file. `error`: the run did not complete (it becomes an <error> test case,
    so CI shows it rather than zero failed expectations); `properties` (seed, speed) go on the testsuite."""

    scenario_id: str
    checks: Sequence[Check]
    time_s: float
    error: str | None = None
    timestamp: datetime | None = None
    properties: Mapping[str, str] = field(default_factory=dict)

    @property
    def failures(self) -> int:
        return sum(not c.passed for c in self.checks)

    @property
    def tests(self) -> int:
        return len(self.checks) + (self.error is not None)


def junit(runs: Sequence[RunReport]) -> ET.ElementTree[ET.Element]:
    """<testsuites> with one <testsuite> per run and one <testcase classname="tradesim.<scenario>" name="<check>">
    per expectation; a failed one holds <failure message="expected …, got …">."""
    root = ET.Element("testsuites", name="tradesim", tests=str(sum(r.tests for r in runs)),
                      failures=str(sum(r.failures for r in runs)),
                      errors=str(sum(r.error is not None for r in runs)), time=_seconds(sum(r.time_s for r in runs)))
    for run in runs:
        suite = ET.SubElement(root, "testsuite", name=run.scenario_id, tests=str(run.tests),
                              failures=str(run.failures), errors=str(int(run.error is not None)), skipped="0",
                              time=_seconds(run.time_s))
        if run.timestamp is not None:
            suite.set("timestamp", run.timestamp.isoformat(timespec="seconds"))
        if run.properties:
            props = ET.SubElement(suite, "properties")
            for key, value in run.properties.items():
                ET.SubElement(props, "property", name=key, value=value)
        classname = f"tradesim.{run.scenario_id}"
        if run.error is not None:
            case = ET.SubElement(suite, "testcase", classname=classname, name="run", time="0")
            ET.SubElement(case, "error", message=run.error, type="RunError").text = run.error
        for check in run.checks:
            case = ET.SubElement(suite, "testcase", classname=classname, name=check.name, time="0")
            if not check.passed:
                ET.SubElement(case, "failure", message=check.message, type="ExpectationFailed").text = check.message
    for element in root.iter():  # messages quote user input: keep the document well-formed XML 1.0
        element.attrib = {k: _xml_text(v) for k, v in element.attrib.items()}
        if element.text:
            element.text = _xml_text(element.text)
    ET.indent(root)
    return ET.ElementTree(root)


#: characters XML 1.0 cannot hold in any form (ElementTree would write them raw, and readers then refuse the file)
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub(lambda m: repr(m.group())[1:-1], text)


def junit_xml(runs: Sequence[RunReport]) -> bytes:
    """The JUnit document as UTF-8 bytes with an XML declaration."""
    data: bytes = ET.tostring(junit(runs).getroot(), encoding="utf-8", xml_declaration=True)
    return data


def write_junit(path: Path, runs: Sequence[RunReport]) -> None:
    _write(path, junit_xml(runs))


def _write(path: Path, data: bytes) -> None:
    """Write a report file; an OSError names the file (a full disk fails at the write, whose error has no name)."""
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None


def json_document(scenario_id: str, seed: int | None, speed: float | None, checks: Sequence[Check], result: RunResult,
                  error: str | None = None) -> dict[str, Any]:
    """The run as JSON-ready data: money as decimal strings, outcomes in script order; `speed` None = as fast as
    possible; `passed` only when every check passed and the run completed; `seed` None: the file did not load."""
    side = result.read_side
    return {
        "scenario": scenario_id,
        "seed": seed,
        "speed": speed,
        "passed": error is None and all(c.passed for c in checks),
        "error": error,
        "checks": [{"name": c.name, "passed": c.passed, "expected": c.expected, "actual": c.actual} for c in checks],
        "accounts": {name: {"cash": str(a.cash), "positions": dict(a.positions),
                            "realized_pnl": money_text(a.realized_pnl), "executions": a.executions}
                     for name, a in result.accounts.items()},
        "market": {"bars": dict(result.bars)},
        "read_side": None if side is None else {"searchable_trades": side.searchable_trades,
                                                "volume": dict(side.volume)},
        "outcomes": [_outcome(o) for o in ordered(result.outcomes)],
        "outcomes_hash": result.outcomes_hash,
    }


#: what a run's reports say from its start until its end replaces them: a run interrupted or killed (a CI job's
#: timeout or cancel) leaves this, not an older run's pass
UNFINISHED = "the run did not finish: stopped by a signal or killed, or still running"


def write_error_json(path: Path, scenario_id: str, seed: int | None, speed: float | None, error: str) -> None:
    """The JSON document of a run that did not complete (no checks, no results, no outcomes hash)."""
    document = json_document(scenario_id, seed, speed, [], RunResult([], {}), error=error)
    document["outcomes_hash"] = None  # the hash of no outcomes would read as a result
    write_json(path, document)


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    # a lone surrogate (a strategy's exception text) becomes its JSON escape rather than an encoding error
    _write(path, (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode(errors="backslashreplace"))


def _outcome(o: Outcome) -> dict[str, Any]:
    def text(value: Decimal | None) -> str | None:
        return None if value is None else str(value)

    return {"order_id": o.order_id, "index": o.index, "at_ms": o.at_ms, "account": o.account, "symbol": o.symbol,
            "side": o.side, "qty": o.qty, "type": o.type, "status": o.status, "reason": o.reason,
            "fill_price": text(o.fill_price), "fee": text(o.fee), "cash_after": text(o.cash_after),
            "position_after": o.position_after}


def _seconds(value: float) -> str:
    return f"{value:.3f}"
