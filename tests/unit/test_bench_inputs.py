"""The benchmarks' own inputs stay inside the market's bounds (a bench that cannot start measures nothing), and
an invalid model the code built is a bug shown in full, not reported as a bad setting."""

from __future__ import annotations

import time

import pytest
import typer
from pydantic import ValidationError

from benchmarks.orders import price_tick
from tradesim.cli.errors import cli_errors
from tradesim.domain.events import Tick
from tradesim.settings import Settings


def test_the_bench_tick_numbered_by_the_clock_is_a_valid_tick() -> None:
    t = price_tick("BENCH", int(time.time()))
    assert Tick.model_validate(t.model_dump()) == t
    assert str(t.last) == "100.00"


def test_a_validation_error_that_is_not_about_settings_is_not_called_a_setting() -> None:
    @cli_errors
    def broken() -> None:
        Tick(symbol="X", bid=10**9, ask=10**9, last=10**9, size=1, event_time_ms=1, seq=1, scenario_id="s")

    with pytest.raises(ValidationError):
        broken()


def test_a_bad_setting_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    from tradesim.settings import load_settings

    monkeypatch.setenv("TRADESIM_KAFKA__PORT", "not-a-port")

    @cli_errors
    def command() -> None:
        load_settings()

    with pytest.raises(typer.Exit) as exit_info:
        command()
    assert exit_info.value.exit_code == 2


def test_a_rate_over_arrivals_in_one_fetch_is_not_measured() -> None:
    """A probe: `bench e2e --passthrough 1000` printed a Flink pass-through of 1,000,000 records/s: the records came
    in one fetch, and the span was floored at 1 ms."""
    import math

    from benchmarks.stats import MIN_RATE_SPAN_S, rate

    assert math.isnan(rate(1000, 10.0, 10.0005))
    assert rate(1000, 10.0, 10.0 + 4 * MIN_RATE_SPAN_S) == pytest.approx(1000 / (4 * MIN_RATE_SPAN_S))


@pytest.mark.parametrize(("values", "p", "expected"), [
    ([1.0, 2.0], 50, 1.0), ([1.0, 2.0, 3.0, 4.0], 50, 2.0), ([1.0, 2.0, 3.0], 50, 2.0),
    ([float(i) for i in range(1, 101)], 99, 99.0), ([float(i) for i in range(1, 101)], 7, 7.0),
    ([float(i) for i in range(1, 11)], 99, 10.0), ([5.0], 99, 5.0), ([3.0, 1.0, 2.0], 0, 1.0), ([3.0, 1.0], 100, 3.0),
])
def test_percentiles_are_the_nearest_rank(values: list[float], p: float, expected: float) -> None:
    """Before: one rank too high whenever p % of the count was whole (the p99 of 100 latencies was their
    maximum, the p50 of two the larger)."""
    from benchmarks.stats import percentile

    assert percentile(values, p) == expected


def test_bench_orders_takes_its_percentiles_from_the_shared_one() -> None:
    """`bench orders` (like `e2e` and `bars`) computed its own, one rank high."""
    from benchmarks.orders import Run

    assert Run("x", latencies_ms=[float(i) for i in range(100, 0, -1)]).pct(99) == 99.0
    assert Run("x", latencies_ms=[2.0, 1.0]).pct(50) == 1.0


def test_a_query_class_rate_is_over_the_time_its_requests_took(settings: Settings,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Closed loop: the requests sent before the deadline are answered after it. Before, `bench queries` divided
    them by `--seconds` alone: a query class of 0.2 s answers over a 0.05 s phase read 40/s from 2 clients."""
    import asyncio

    from benchmarks import queries

    class SlowPool:
        def __init__(self, *_args: object, **_kwargs: object) -> None:
            pass

        async def exchange(self, _raw: bytes) -> tuple[int, bytes]:
            await asyncio.sleep(0.2)
            return 200, b""

    monkeypatch.setattr(queries, "_Pool", SlowPool)
    figures = queries.run(settings, {"<admin>": "k0", "u_1": "k1"}, 2, 0.05, [])
    assert len(figures) == 5  # every query class (else the loop below checks nothing)
    for figure in figures.values():
        # at most 2 / 0.2 (the old count read 40/s); a loaded box only stretches the time, so no tight lower bound
        assert 2 / 0.2 / 3 < figure["per_s"] <= 2 / 0.2 * 1.05


def test_a_request_waiting_for_a_connection_gets_one_when_the_others_fail() -> None:
    """The load generator's pool at its limit: a request waits for a connection to come free. Before, one that
    failed (the server closed it unanswered) freed its place without waking the waiter, which then waited for
    ever: an API gone mid-phase with more requests in flight than the limit hung `bench orders` and `e2e`."""
    import asyncio

    from benchmarks.orders import _Pool

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async def scenario() -> list[tuple[int, bytes]]:
        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        pool = _Pool("127.0.0.1", server.sockets[0].getsockname()[1], limit=1)
        raw = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        try:
            return await asyncio.wait_for(asyncio.gather(*(pool.exchange(raw) for _ in range(3))), 10)
        finally:
            pool.close()
            server.close()
            await server.wait_closed()

    assert asyncio.run(scenario()) == [(0, b"")] * 3
