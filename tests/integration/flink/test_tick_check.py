"""The JVM bars job's record check (TickCheck.java) against the `Tick` schema, without a cluster: a few thousand
generated records, each written some way pydantic's lax mode takes or refuses, through both. The JVM must take
exactly what Python takes, as Python encodes it, and name the same first field for what it refuses."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.flink import tick_records
from tradesim.domain.events import encode
from tradesim.jobs.bars_logic import classify
from tradesim.settings import Settings
from tradesim.stack.flink import Flink
from tradesim.stack.tools import jdk_tool, require_java

pytestmark = pytest.mark.integration
PROBE = Path(__file__).parent / "jvm" / "TickCheckProbe.java"
MISSING = object()

INTS: list[Any] = [
    0, 1, -1, 3, True, False, None, 1.0, 1.5, 5.0, 1e-400, 1.0000000000000001, 0.99999999999999999, 2**63 - 1, 2**63,
    9223372036854775807.0, 9007199254740993.0, 10**30, float("nan"), float("inf"), "", " ", "1", "12", " 12 ",
    "12\u00a0", "\u001f12", "12\u0085", "12\u200b", "12.", "12.0", "12.00", "1_2", "1__2", "_12", "12_", "1_2.0",
    "12.0_0", "+12", "-0", "0x1", "1e3", "0012", "\u0661\u0662", [], {}, MISSING,
]
PRICES: list[Any] = [
    "10", "10.5", "10.25", "1.50000", "1E+1", "1e1", "1e+01", " 10 ", "10\u001f", "10\u00a0", "10\u200b", "1_0",
    "1__0", "_1", "1_.5", ".5", "5.", "+10", "-0", "0", "1000000", "1000000.0001", "1000000.0000", "0.0001",
    "0.00001", "0.000100", "NaN", "nan1", "sNaN", "Inf", "-inf", "abc", "1e-5", "1E+7", "\u0661\u0660", 10, 10.5,
    0, True, None, [], float("nan"), MISSING,
]
POOLS: dict[str, list[Any]] = {
    "schema_version": [1, 1.0, True, "1", 2, 0, 1.0000000000000001, None, MISSING],
    "type": ["tick", "bar", None, 1, MISSING],
    "symbol": ["AB", "ab", "A" * 16, "A" * 17, "A.B-C", "A B", 5, "", "A\ud800", None, MISSING],
    "bid": PRICES, "ask": PRICES, "last": PRICES,
    "size": INTS, "event_time_ms": INTS, "seq": INTS, "run_id": INTS,
    "scenario_id": ["s", "", "x" * 128, "x" * 129, "\u00e9" * 128, "\U0001f600" * 128, "\U0001f600" * 129,
                    "a\ud800", 5, None, MISSING],
    "extra": [1, None],
}
NUMERIC = {"schema_version", "bid", "ask", "last", "size", "event_time_ms", "seq", "run_id", "extra"}


#: number literals as written (json.dumps would write Python's rounding of them): the JVM must read each as the
#: double (or the int, or the refusal) Python's json makes of it
LITERALS = ["1e-400", "1.0000000000000001", "0.99999999999999999", "9007199254740993.0", "9223372036854775807.0",
            "1e999999999999", "-1e999999999999", "1e-99999999999", "5.0" + "0" * 5000, "1" + "0" * 4300,
            "9" * 4300, "NaN", "Infinity", "-Infinity", "1E+2", "-0.0", "0e0", "3.0", "1e2147483648"]


def generated(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    out = []
    for _ in range(n):
        tick: dict[str, Any] = {"schema_version": 1, "type": "tick", "symbol": "AB", "bid": "10", "ask": "10.5",
                                "last": "10.25", "size": 3, "event_time_ms": 1000, "seq": 1, "scenario_id": "s",
                                "run_id": 0}
        literals = {}
        for field in rng.sample(sorted(POOLS), rng.choice([1, 1, 2, 3])):
            value = rng.choice(POOLS[field])
            if value is MISSING:
                tick.pop(field, None)
            elif field in NUMERIC and rng.random() < 0.2:
                tick[field] = marker = f"@literal{len(literals)}@"
                literals[json.dumps(marker)] = rng.choice(LITERALS)
            else:
                tick[field] = value
        text = json.dumps(tick)  # ASCII only (non-ASCII and lone surrogates escaped): one line each
        for marker, literal in literals.items():
            text = text.replace(marker, literal)
        out.append(text)
    return out


@pytest.fixture(scope="module")
def probe(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    flink = Flink(settings)
    flink.provision(lambda _msg: None)  # a no-op once the stack has provisioned Flink
    java = require_java("flink", settings.stack.java_home)
    javac = jdk_tool(java, "javac")
    assert javac, "a JDK compiles the bars job"
    classes = tmp_path_factory.mktemp("probe")
    classpath = ":".join([str(flink.jobs_jar), *map(str, sorted(flink.flink_home.glob("lib/*.jar")))])
    subprocess.run([str(javac), "-nowarn", "-d", str(classes), "-cp", classpath, str(PROBE)], check=True,
                   capture_output=True)
    return [java, "-cp", f"{classes}:{classpath}", "dev.tradesim.jobs.TickCheckProbe"]


def python_verdict(raw: str) -> str:
    tick, letter = classify(raw, "market_data")
    return "OK " + encode(tick).decode() if tick else "ERR " + json.loads(letter or "{}")["reason"].split(":", 1)[0]


def test_the_jvm_takes_and_refuses_what_the_tick_schema_does(probe: list[str]) -> None:
    fixtures = [r.decode() for r in tick_records.records("AB", 1000) if b"\n" not in r and r]
    raws = [*fixtures, "not json", "{} x", "[" * 5000 + "]" * 5000, '{"size": ' + "9" * 5000 + "}",
            *generated(4000, seed=19)]
    done = subprocess.run(probe, input=("\n".join(raws) + "\n").encode(), capture_output=True, timeout=120,
                          check=True)
    lines = done.stdout.decode().split("\n")[:-1]  # the JSON writer leaves U+2028 and the like unescaped
    jvm = [line if line.startswith(("OK ", "CRASH ")) else line.split(":", 1)[0] for line in lines]
    assert len(jvm) == len(raws)
    python = [python_verdict(raw) for raw in raws]
    differ = [(raw, p, j) for raw, p, j in zip(raws, python, jvm, strict=True) if p != j]
    assert differ == [], f"{len(differ)} of {len(raws)} differ, e.g. {differ[:5]}"
    taken = sum(v.startswith("OK ") for v in python)
    assert 0.2 * len(raws) < taken < 0.8 * len(raws), "the records are a mix of both kinds"
