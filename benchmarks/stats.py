"""Small statistics shared by the benchmarks."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) by the nearest-rank method: the smallest value with at least p % of the values
    at or below it; NaN without values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = math.ceil(p * len(ordered) / 100)  # p * n first: 0.07 * 100 is 7.000000000000001, ceil'd to 8
    return ordered[min(len(ordered), max(1, rank)) - 1]


#: arrivals spanning less than this came in one or two fetches: their count over the span is the batching, not a rate
MIN_RATE_SPAN_S = 0.05


def rate(count: int, first: float, last: float) -> float:
    """count / (last - first) of arrivals timed from `first` to `last`; NaN ("not measured") when they span less
    than MIN_RATE_SPAN_S (before: 1,000 records in one fetch printed 1,000,000 records/s)."""
    span = last - first
    return count / span if span >= MIN_RATE_SPAN_S else float("nan")
