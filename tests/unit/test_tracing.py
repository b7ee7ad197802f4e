"""The tracing wrapper's decisions (pure: spans go to an exporter that is never reached, or nowhere)."""

from __future__ import annotations

import json
import time

import pytest

from tradesim.adapters.tracing import Tracing
from tradesim.adapters.tracing.jaeger import _trace
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.events import OrderOutcome, OrderPlaced, decode, encode
from tradesim.settings import TracingSettings
from tradesim.testing.factories import outcomes

#: nothing listens there: the batch exporter fails quietly in its own thread
DEAD = TracingSettings(enabled=True, otlp_url="http://127.0.0.1:9")
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def _parent(flags: str) -> str:
    return f"00-{TRACE_ID}-00f067aa0ba902b7-{flags}"


@pytest.mark.parametrize("flags", ["01", "03"])  # 03: the W3C level-2 "random" bit beside "sampled"
def test_a_span_under_a_sampled_parent_continues_its_trace(flags: str) -> None:
    tracing = Tracing(DEAD, "test")
    got = tracing.record("settle", _parent(flags), time.time_ns())
    tracing.shutdown()
    assert got is not None
    assert got.split("-")[1] == TRACE_ID
    assert got.split("-")[2] != "00f067aa0ba902b7"  # a new span of the same trace


@pytest.mark.parametrize("parent", [None, _parent("00"), _parent("02")])
def test_no_span_without_a_sampled_parent(parent: str | None) -> None:
    tracing = Tracing(DEAD, "test")
    assert tracing.record("settle", parent, time.time_ns()) is None
    tracing.shutdown()


def test_the_api_samples_by_its_ratio_and_off_means_nothing_at_all() -> None:
    for ratio, traced in ((1.0, True), (0.0, False)):
        tracing = Tracing(DEAD.model_copy(update={"sample_ratio": ratio}), "api", root=True)
        with tracing.span("POST /orders"):
            assert (tracing.current() is not None) is traced
        tracing.shutdown()
    off = Tracing.off()
    with off.span("POST /orders"):
        assert off.current() is None
    assert off.record("settle", _parent("01"), time.time_ns()) is None


def test_the_events_carry_a_w3c_traceparent_or_none() -> None:
    outcome = outcomes(["u1"], ["AAA"], 1, seed=1)[0]
    traced = outcome.model_copy(update={"traceparent": _parent("01")})
    assert decode(OrderOutcome, encode(traced)).traceparent == _parent("01")
    assert decode(OrderOutcome, encode(outcome)).traceparent is None
    bad = json.loads(encode(traced)) | {"traceparent": "01-not-a-trace"}
    with pytest.raises(InvalidRecord, match="traceparent"):
        decode(OrderOutcome, json.dumps(bad))
    assert "traceparent" in OrderPlaced.model_fields


def test_jaeger_answers_become_one_tree_per_trace() -> None:
    raw = {"traceID": TRACE_ID, "processes": {"p1": {"serviceName": "tradesim-api"},
                                              "p2": {"serviceName": "tradesim-execution"}},
           "spans": [
               {"spanID": "c", "operationName": "settle", "processID": "p2", "startTime": 30, "duration": 5,
                "references": [{"refType": "CHILD_OF", "spanID": "b"}], "tags": [{"key": "status", "value": "x"}]},
               {"spanID": "a", "operationName": "POST /orders", "processID": "p1", "startTime": 10, "duration": 9},
               {"spanID": "b", "operationName": "publish", "processID": "p1", "startTime": 12, "duration": 2,
                "references": [{"refType": "CHILD_OF", "spanID": "a"}]},
               {"spanID": "d", "operationName": "match", "processID": "p2", "startTime": 20, "duration": 1,
                "references": [{"refType": "CHILD_OF", "spanID": "b"}]},
           ]}
    tr = _trace(raw)
    assert tr.spans == 4
    (root,) = tr.roots
    assert (root.operation, root.service, tr.start_us) == ("POST /orders", "tradesim-api", 10)
    (publish,) = root.children
    assert [c.operation for c in publish.children] == ["match", "settle"]  # by start time
    assert publish.children[1].attributes == {"status": "x"}
    assert publish.children[1].service == "tradesim-execution"
