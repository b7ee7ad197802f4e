"""The API's head sampler: a trace id ratio, then a cap on new traces a second (`tracing.max_per_s`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult, TraceIdRatioBased
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes


class RateCapped(Sampler):
    """Sample by trace id ratio, then at most `per_s` traces a second: a token bucket holding one second's worth
    (at least one), so a slow stream is traced whole and a fast one costs a bounded share. 0: no cap."""

    def __init__(self, ratio: float, per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ratio = TraceIdRatioBased(ratio)
        self._per_s = per_s
        self._capacity = max(1.0, per_s)
        self._tokens = self._capacity
        self._clock = clock
        self._at = clock()
        self._lock = threading.Lock()

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[Link] | None = None, trace_state: TraceState | None = None) -> SamplingResult:
        result = self._ratio.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
        if not result.decision.is_sampled() or not self._per_s or self._take():
            return result
        return SamplingResult(Decision.DROP, None, result.trace_state)

    def _take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._per_s)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True

    def get_description(self) -> str:
        return f"RateCapped{{{self._ratio.get_description()}, {self._per_s:g}/s}}"
