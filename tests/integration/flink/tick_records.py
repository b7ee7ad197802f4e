"""Records of `market_data` that the JVM bars job must judge as `tradesim.domain.events.Tick` does: valid ones
written in every way pydantic's lax mode takes, and invalid ones, one fault each. `records(symbol, t0)` gives
them for one symbol at event times from t0 on, each on its own second."""

from __future__ import annotations

import json
from typing import Any


def _base(symbol: str, seq: int, t_ms: int) -> dict[str, Any]:
    return {"schema_version": 1, "type": "tick", "symbol": symbol, "bid": "10", "ask": "10.5", "last": "10.25",
            "size": 3, "event_time_ms": t_ms, "seq": seq, "scenario_id": "parity", "run_id": 0}


#: (changes to a valid tick; None deletes the field)
CHANGES: list[dict[str, Any]] = [
    {},
    {"bid": "1.50000", "ask": "2", "last": "1.5000"},  # trailing zeros beyond 4 places are fine, kept as written
    {"last": " 10.2 "},  # spaces around a decimal
    {"last": "+10.2"}, {"last": "1_0.25"}, {"last": ".5"}, {"last": "5."}, {"last": "1E+1"}, {"last": 10},
    {"size": "12"}, {"size": " 12 "}, {"size": "+12"}, {"size": "1_000"}, {"size": "12.0"}, {"size": 5.0},
    {"size": True}, {"size": False}, {"size": "-0"},
    {"schema_version": None}, {"type": None}, {"run_id": None},  # absent: the defaults
    {"schema_version": 1.0}, {"schema_version": True}, {"run_id": 7}, {"event_time_ms": "STR"},
    # invalid from here
    {"bid": "1.00005"}, {"last": 10.5}, {"last": "NaN"}, {"last": "-Infinity"}, {"last": "0"}, {"last": "-0"},
    {"last": "1000000.0001"}, {"last": "abc"}, {"last": True}, {"last": "1e-5"}, {"last": ""},
    {"bid": "11", "ask": "10"}, {"size": "1e3"}, {"size": 5.5}, {"size": ""}, {"size": -1},
    {"size": 1_000_000_001}, {"seq": 0}, {"seq": "0x1"}, {"event_time_ms": -1}, {"scenario_id": ""},
    {"scenario_id": "x" * 129}, {"scenario_id": 5}, {"symbol": "ab"}, {"symbol": 5}, {"schema_version": 2},
    {"schema_version": "1"}, {"type": "bar"}, {"extra": 1}, {"run_id": -1}, {"size": None},
]


def records(symbol: str, t0: int) -> list[bytes]:
    assert len(CHANGES) < 60, "one second each, all in the minute from t0: test_bars expects one 1 min bar"
    out = []
    for i, change in enumerate(CHANGES):
        tick = _base(symbol, i + 1, t0 + i * 1000)
        for field, value in change.items():
            if value is None:
                tick.pop(field)
            elif value == "STR":
                tick[field] = str(tick[field])
            else:
                tick[field] = value
        out.append(json.dumps(tick).encode())
    return [*out, b"not json", b"[1]", b"", b'{"symbol": "AB"} trailing', b"null"]
