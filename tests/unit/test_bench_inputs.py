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
