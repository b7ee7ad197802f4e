"""The read API's `from`/`to`: what a number means, and the numbers refused because they mean something else."""

from __future__ import annotations

import re

import pytest
from fastapi.exceptions import RequestValidationError

from tradesim.services.api.windows import TIME_PATTERN, parse_time


@pytest.mark.parametrize(("value", "ms"), [
    ("0", 0),
    ("1738315800000", 1_738_315_800_000),
    ("2025-01-31", 1_738_281_600_000),
    ("2025-01-31T09:30:00Z", 1_738_315_800_000),
    ("10000000000", 10_000_000_000),
])
def test_epoch_milliseconds_and_iso_times_are_read(value: str, ms: int) -> None:
    assert parse_time("from", value) == ms


@pytest.mark.parametrize("value", ["1738315800", "20250131", "1", "9999999999"])
def test_epoch_seconds_and_compact_dates_are_refused_not_read_as_1970(value: str) -> None:
    with pytest.raises(RequestValidationError) as caught:
        parse_time("to", value)
    (error,) = caught.value.errors()
    assert error["loc"] == ("query", "to")
    assert "not seconds" in error["msg"]
    assert value in error["msg"]


@pytest.mark.parametrize(("interval", "loc", "advice"), [("1h", "interval", "choose a longer interval"),
                                                         ("1d", "from", "choose a shorter range")])
def test_a_window_of_too_many_buckets_gets_advice_it_can_follow(interval: str, loc: str, advice: str) -> None:
    """A probe: `interval=1d&from=0` was told to choose a longer interval, though 1d is the longest."""
    from tradesim.services.api.windows import window

    with pytest.raises(RequestValidationError) as caught:
        window("0", None, interval, 1_796_000_000_000)
    (error,) = caught.value.errors()
    assert error["loc"] == ("query", loc)
    assert advice in error["msg"]


@pytest.mark.parametrize(("value", "taken"), [
    ("2025-01-31T09:30:00.250Z", True), ("2025-01-31 09:30", True), ("2025-01-31T093015,5+01:00", True),
    ("2025-01-31T09", True),
    ("2025-01-31T09.5", False), ("2025-01-31T09,5", False), ("2025-01-31T09:30.5", False), ("2025-01-31T0930.5", False),
])
def test_a_fraction_is_taken_only_after_the_seconds(value: str, taken: bool) -> None:
    """A probe: Python read `T09.5` (ISO-8601: 09:30) as 09:00:00.500 and `T09:30.5` as 09:30:00.500; the pattern
    refuses a fraction of an hour or a minute (422) rather than answer another window."""
    assert (re.fullmatch(TIME_PATTERN, value) is not None) is taken
    if taken:
        assert parse_time("from", value) is not None
