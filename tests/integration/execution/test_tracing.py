"""An order's trace on the real stack: the API's request, its publish to Kafka, the execution job's match and
settle, and the read side's writes arrive in Jaeger as one tree, which `tradesim trace` prints; the exporter
outlives a connection that died between its batches."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator

import httpx
import pytest
from typer.testing import CliRunner

from tests.integration.execution.conftest import Exchange, wait_for
from tradesim.adapters.tracing import API_SERVICE, ORDER_ATTRIBUTE, Tracing
from tradesim.adapters.tracing.jaeger import JaegerQuery, Span, Trace
from tradesim.adapters.tracing.otlp import OtlpExporter
from tradesim.cli.app import app
from tradesim.ports import Unavailable
from tradesim.services.admin_key import load_admin_key
from tradesim.settings import Settings

#: the spans an executed order's trace holds once the read side wrote it, as (service, operation)
EXECUTED = {("tradesim-api", "POST /orders"), ("tradesim-api", "publish trade_orders"),
            ("tradesim-execution", "settle"),
            ("tradesim-persistence", "write search"), ("tradesim-persistence", "write analytics")}


def _named(tr: Trace) -> dict[tuple[str, str], list[Span]]:
    named: dict[tuple[str, str], list[Span]] = {}
    for span in tr.walk():
        named.setdefault((span.service, span.operation), []).append(span)
    return named


@pytest.fixture
def jaeger(settings: Settings) -> Iterator[JaegerQuery]:
    assert settings.tracing.enabled, "the test stack runs with tracing on (tests/integration/conftest.py)"
    query = JaegerQuery(settings.tracing.client_query_url)
    try:
        query.services()
    except Unavailable as exc:
        pytest.fail(f"{exc}: a stack found running must have been started with tracing.enabled")
    yield query
    query.close()


@pytest.fixture
def trader(settings: Settings) -> Iterator[httpx.Client]:
    admin = {"Authorization": f"Bearer {load_admin_key(settings, create=False)}"}
    with httpx.Client(base_url=settings.api.client_url, timeout=30) as http:
        made = http.post("/accounts", json={"name": "tr" + secrets.token_hex(6), "cash": "10000"}, headers=admin)
        assert made.status_code == 201, made.text
        http.headers["Authorization"] = f"Bearer {made.json()['api_key']}"
        yield http


def _complete(jaeger: JaegerQuery, order_id: str, want: set[tuple[str, str]]) -> Trace:
    """The order's one trace, once it holds every span in `want`."""
    found: list[Trace] = []

    def arrived() -> bool:
        found[:] = jaeger.order_traces(order_id)
        return len(found) == 1 and want <= set(_named(found[0]))

    wait_for(arrived, 90, f"the trace of {order_id} with {sorted(want)}")
    return found[0]


def test_an_executed_order_is_one_trace_from_the_request_to_the_read_models(
        ex: Exchange, symbol: str, trader: httpx.Client, jaeger: JaegerQuery) -> None:
    ex.price(symbol, 1, "50.00")
    placed = trader.post("/orders", json={"symbol": symbol, "side": "buy", "qty": 3})
    assert placed.status_code == 202, placed.text
    order_id = placed.json()["order_id"]

    tr = _complete(jaeger, order_id, EXECUTED | {("tradesim-execution", "match fill")})
    named = _named(tr)
    (request,) = tr.roots
    assert (request.service, request.operation) == ("tradesim-api", "POST /orders")
    assert request.attributes["order.id"] == order_id
    (publish,) = named["tradesim-api", "publish trade_orders"]
    (match,) = named["tradesim-execution", "match fill"]
    (settle,) = named["tradesim-execution", "settle"]
    # the job continues the trace the API put in the event; the read side continues the settle span's
    assert publish.parent_id == request.span_id
    assert match.parent_id == publish.span_id
    assert settle.parent_id == publish.span_id
    assert settle.attributes["status"] == "executed"
    for sink in ("search", "analytics"):  # the read models: OpenSearch, ClickHouse
        (write,) = named["tradesim-persistence", f"write {sink}"]
        assert write.parent_id == settle.span_id
        assert write.start_us >= settle.start_us
    assert {s.attributes.get("order.id") for s in tr.walk()} == {order_id}

    shown = CliRunner().invoke(app, ["trace", order_id])
    assert shown.exit_code == 0, shown.output
    for service, operation in EXECUTED:
        assert operation in shown.output
        assert service in shown.output
    assert tr.trace_id in shown.output


def test_a_resting_order_traces_its_rest_and_the_tick_that_fills_it(
        ex: Exchange, symbol: str, trader: httpx.Client, jaeger: JaegerQuery) -> None:
    ex.price(symbol, 1, "50.00")
    placed = trader.post("/orders", json={"symbol": symbol, "side": "buy", "qty": 2, "type": "limit",
                                          "limit_price": "45.00", "time_in_force": "gtc"})
    assert placed.status_code == 202, placed.text
    order_id = placed.json()["order_id"]
    _complete(jaeger, order_id, {("tradesim-execution", "match rest")})
    ex.price(symbol, 2, "44.00")

    tr = _complete(jaeger, order_id, EXECUTED | {("tradesim-execution", "match rest"),
                                                 ("tradesim-execution", "match fill")})
    named = _named(tr)
    (rest,) = named["tradesim-execution", "match rest"]
    (fill,) = named["tradesim-execution", "match fill"]
    assert (rest.attributes["trigger"], fill.attributes["trigger"]) == ("order", "tick")
    assert fill.start_us > rest.start_us
    (settle,) = named["tradesim-execution", "settle"]
    assert settle.start_us >= fill.start_us


def test_trace_of_an_order_jaeger_never_saw_exits_1_with_the_reason(jaeger: JaegerQuery) -> None:
    shown = CliRunner().invoke(app, ["trace", "o_never_" + secrets.token_hex(4)])
    assert shown.exit_code == 1
    assert "no trace of order" in shown.output


def test_spans_reach_jaeger_on_a_new_connection_once_the_kept_one_died(settings: Settings,
                                                                        jaeger: JaegerQuery) -> None:
    """The exporter keeps its connection between batches; a receiver closes an idle one (Go's servers do), and
    the next batch must go on a new connection, not be dropped."""
    exporter = OtlpExporter(settings.tracing.traces_url, API_SERVICE, interval_s=0.05)
    every = settings.tracing.model_copy(update={"sample_ratio": 1.0, "max_per_s": 0})
    tracing = Tracing(every, API_SERVICE, root=True, sink=exporter.add)

    def traced() -> str:
        order_id = "o_export_" + secrets.token_hex(8)
        with tracing.span("POST /orders", attributes={ORDER_ATTRIBUTE: order_id}):
            pass
        return order_id

    try:
        first = traced()
        wait_for(lambda: jaeger.order_traces(first), 30, f"the trace of {first}")
        kept = exporter._conn  # noqa: SLF001 - the connection under test
        assert kept is not None
        assert kept.sock is not None
        kept.sock.shutdown(socket.SHUT_RDWR)  # dead, as a connection the receiver closed
        second = traced()
        wait_for(lambda: jaeger.order_traces(second), 30, f"the trace of {second}, sent after the connection died")
        assert exporter._conn is not kept  # noqa: SLF001
    finally:
        exporter.shutdown(3)
