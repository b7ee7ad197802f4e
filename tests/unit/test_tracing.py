"""The tracer's decisions, with spans kept in a list; their OTLP/JSON encoding; the Jaeger answer's tree."""

from __future__ import annotations

import json
import time

import pytest

from tradesim.adapters.tracing import SpanKind, SpanRecord, StatusCode, Tracing
from tradesim.adapters.tracing.jaeger import _trace
from tradesim.adapters.tracing.otlp import encode as otlp_json
from tradesim.adapters.tracing.sampling import RateCapped
from tradesim.domain.errors import InvalidRecord
from tradesim.domain.events import OrderOutcome, decode, encode
from tradesim.settings import TracingSettings
from tradesim.testing.factories import outcomes

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
ON = TracingSettings(enabled=True)


def _parent(flags: str) -> str:
    return f"00-{TRACE_ID}-{PARENT_SPAN}-{flags}"


def _tracing(*, root: bool = False, ratio: float = 1.0, max_per_s: float = 0, processes: int = 1
             ) -> tuple[Tracing, list[SpanRecord]]:
    spans: list[SpanRecord] = []
    settings = ON.model_copy(update={"sample_ratio": ratio, "max_per_s": max_per_s})
    return Tracing(settings, "test", root=root, processes=processes, sink=spans.append), spans


@pytest.mark.parametrize("flags", ["01", "03"])  # 03: the W3C level-2 "random" bit beside "sampled"
def test_a_span_under_a_sampled_parent_continues_its_trace(flags: str) -> None:
    tracing, spans = _tracing()
    got = tracing.record("settle", _parent(flags), 1_000, 5_000, attributes={"order.id": "o1"})
    (span,) = spans
    assert (span.name, span.start_ns, span.end_ns, span.attributes) == ("settle", 1_000, 5_000, {"order.id": "o1"})
    assert (f"{span.trace_id:032x}", f"{span.parent_id:016x}") == (TRACE_ID, PARENT_SPAN)
    assert span.span_id not in (0, int(PARENT_SPAN, 16))
    assert got == f"00-{TRACE_ID}-{span.span_id:016x}-{flags}"


@pytest.mark.parametrize("parent", [None, _parent("00"), _parent("02")])
def test_no_span_without_a_sampled_parent(parent: str | None) -> None:
    tracing, spans = _tracing()
    assert tracing.record("settle", parent, time.time_ns()) is None
    with tracing.span("settle", parent=parent):
        assert tracing.current() is None
    assert spans == []


def test_a_failing_tracer_never_fails_the_record_it_describes() -> None:
    tracing, spans = _tracing()
    assert tracing.record("settle", "00-not-hex-at-all-01", time.time_ns()) is None  # the parse raises inside
    assert spans == []
    assert tracing.record("settle", _parent("01"), time.time_ns()) is not None  # and it goes on


def test_the_api_samples_by_its_ratio_and_off_means_nothing_at_all() -> None:
    for ratio, traced in ((1.0, True), (0.0, False)):
        tracing, spans = _tracing(root=True, ratio=ratio)
        with tracing.span("POST /orders") as outer, tracing.span("publish"):
            assert (tracing.current() is not None) is traced
        assert len(spans) == (2 if traced else 0)
        if traced:
            inner = spans[0]
            assert (inner.trace_id, inner.parent_id) == (outer.trace_id, outer.span_id)
            assert outer.parent_id == 0
    off = Tracing.off()
    with off.span("POST /orders"):
        assert off.current() is None
    assert off.record("settle", _parent("01"), time.time_ns()) is None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _sampled(sampler: RateCapped, n: int) -> int:
    return sum(sampler.sampled(trace_id) for trace_id in range(1, n + 1))


def test_the_cap_passes_a_second_s_worth_at_once_then_its_rate() -> None:
    clock = Clock()
    sampler = RateCapped(1.0, 5, clock)
    assert _sampled(sampler, 20) == 5  # a burst: one second's worth
    clock.now += 0.5
    assert _sampled(sampler, 20) == 2  # half a second refills 2.5 tokens
    clock.now += 10
    assert _sampled(sampler, 20) == 5  # a quiet spell refills no more than the bucket holds
    assert _sampled(RateCapped(1.0, 0, clock), 20) == 20  # 0: no cap
    halves = RateCapped(0.5, 5, Clock())  # the ratio first: what it drops takes no token
    assert not any(halves.sampled((7 << 64) + (1 << 63) + i) for i in range(20))  # by the id's low 64 bits
    assert _sampled(halves, 5) == 5


def test_a_capped_trace_keeps_its_children_and_the_workers_share_the_cap() -> None:
    tracing, spans = _tracing(root=True, max_per_s=2, processes=2)  # one new trace a second for this one
    traced = 0
    for _ in range(10):  # well within a second: the bucket's one and nothing more
        with tracing.span("POST /orders"), tracing.span("publish"):
            traced += tracing.current() is not None
    assert traced == 1
    assert len(spans) == 2  # the traced request whole (its publish span too), no other


def test_an_exception_leaving_a_span_is_not_marked_as_its_error() -> None:
    tracing, spans = _tracing(root=True)
    with pytest.raises(LookupError), tracing.span("POST /orders"):
        raise LookupError("a 404 is an answer")
    (span,) = spans
    assert (span.status, span.events) == (StatusCode.UNSET, [])


def test_the_events_carry_a_w3c_traceparent_or_none() -> None:
    outcome = outcomes(["u1"], ["AAA"], 1, seed=1)[0]
    traced = outcome.model_copy(update={"traceparent": _parent("01")})
    assert decode(OrderOutcome, encode(traced)).traceparent == _parent("01")
    assert decode(OrderOutcome, encode(outcome)).traceparent is None
    for unreadable in ("01-not-a-trace", _parent("01").upper(), 42):  # the trace is dropped, never the event
        bad = json.loads(encode(traced)) | {"traceparent": unreadable}
        assert decode(OrderOutcome, json.dumps(bad)) == outcome
    with pytest.raises(InvalidRecord, match="qty"):  # the rest is as strict as ever
        decode(OrderOutcome, json.dumps(json.loads(encode(traced)) | {"qty": 0}))


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


def test_spans_encode_as_one_otlp_json_request_with_hex_ids_and_typed_attributes() -> None:
    tracing, spans = _tracing(root=True)
    odd = 'a "quoted" \\ name, ü\n'
    with tracing.span("POST /orders", kind=SpanKind.SERVER, attributes={"symbol": odd}) as root:
        with tracing.span("publish", kind=SpanKind.PRODUCER):
            pass
        root.set_attribute("http.response.status_code", 503)
        root.set_attribute("price", 101.25)
        root.set_attribute("retried", False)
        root.set_status(StatusCode.ERROR, "kafka")
        root.record_exception(TimeoutError("no ack"))
    body = json.loads(otlp_json("tradesim-api", spans))
    (resource,) = body["resourceSpans"]
    assert resource["resource"]["attributes"] == [{"key": "service.name", "value": {"stringValue": "tradesim-api"}}]
    (scope,) = resource["scopeSpans"]
    child, parent = scope["spans"]
    assert (parent["traceId"], parent["spanId"]) == (f"{root.trace_id:032x}", f"{root.span_id:016x}")
    assert "parentSpanId" not in parent
    assert (child["traceId"], child["parentSpanId"], child["kind"]) == (parent["traceId"], parent["spanId"], 4)
    assert (parent["name"], parent["kind"], parent["flags"]) == ("POST /orders", 2, 1)
    assert int(parent["startTimeUnixNano"]) == root.start_ns <= int(parent["endTimeUnixNano"]) == root.end_ns
    assert parent["attributes"] == [
        {"key": "symbol", "value": {"stringValue": odd}},
        {"key": "http.response.status_code", "value": {"intValue": "503"}},
        {"key": "price", "value": {"doubleValue": 101.25}},
        {"key": "retried", "value": {"boolValue": False}}]
    assert parent["status"] == {"code": 2, "message": "kafka"}
    assert not {"status", "events"} & child.keys()
    (event,) = parent["events"]
    assert event["name"] == "exception"
    told = {a["key"]: a["value"]["stringValue"] for a in event["attributes"]}
    assert (told["exception.type"], told["exception.message"]) == ("TimeoutError", "no ack")
    assert "TimeoutError: no ack" in told["exception.stacktrace"]


def _strict(body: bytes) -> object:
    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")
    return json.loads(body, parse_constant=refuse)  # Python's parser would take NaN and Infinity


def test_values_json_cannot_hold_still_make_a_valid_request_and_ended_spans_keep_nothing() -> None:
    tracing, spans = _tracing(root=True)
    with tracing.span("odd", attributes={"nan": float("nan"), "inf": float("inf"), "big": 1 << 64}) as span:
        pass
    span.set_attribute("late", 1)  # after the end: the exporter may be writing it already
    span.set_status(StatusCode.ERROR, "late")
    (encoded,) = _strict(otlp_json("svc", spans))["resourceSpans"][0]["scopeSpans"][0]["spans"]  # type: ignore[index]
    assert encoded["attributes"] == [{"key": "nan", "value": {"doubleValue": "NaN"}},
                                     {"key": "inf", "value": {"doubleValue": "Infinity"}},
                                     {"key": "big", "value": {"stringValue": str(1 << 64)}}]
    assert "status" not in encoded


def test_unknown_flag_bits_are_not_passed_on_and_zero_ids_are_no_parent() -> None:
    tracing, spans = _tracing()
    assert tracing.record("settle", _parent("ff"), 1, 2) == f"00-{TRACE_ID}-{spans[0].span_id:016x}-03"
    assert tracing.record("settle", f"00-{'0' * 32}-{PARENT_SPAN}-01", 1, 2) is None
    assert tracing.record("settle", f"00-{TRACE_ID}-{'0' * 16}-01", 1, 2) is None
    assert len(spans) == 1


def test_tracing_off_hands_out_one_shared_no_op_span() -> None:
    off = Tracing.off()
    assert off.span("a") is off.span("b", parent=_parent("01"))  # nothing made per call
    with off.span("a") as span:
        span.set_attribute("k", "v")
    assert span.attributes == {}
