"""The API's head sampler: a trace id ratio, then a cap on new traces a second (`tracing.max_per_s`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

_LOW_64 = (1 << 64) - 1


class RateCapped:
    """Sample by trace id ratio (OpenTelemetry's rule: the id's low 64 bits under ratio × 2⁶⁴, so every process
    agrees on an id), then at most `per_s` traces a second: a token bucket holding one second's worth (at least
    one), so a slow stream is traced whole and a fast one costs a bounded share. 0: no cap."""

    def __init__(self, ratio: float, per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._bound = round(ratio * (1 << 64))  # ratio: 0..1, checked by the settings
        self._per_s = per_s
        self._capacity = max(1.0, per_s)
        self._tokens = self._capacity
        self._clock = clock
        self._at = clock()
        self._lock = threading.Lock()

    def sampled(self, trace_id: int) -> bool:
        if (trace_id & _LOW_64) >= self._bound:
            return False
        return not self._per_s or self._take()

    def _take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._per_s)
            self._at = now
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True
