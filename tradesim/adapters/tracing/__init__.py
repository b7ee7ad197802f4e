"""Tracing for the services and jobs: OpenTelemetry-compatible spans (W3C `traceparent`, OTLP/HTTP export), recorded
by this small module rather than the OpenTelemetry SDK, whose per-span cost was the overhead of tracing an order
(docs/design/observability.md). The `traceparent` carries an order's trace across Kafka (see
`tradesim.domain.events.TRACEPARENT_RE`).

The API decides whether an order is traced (`tracing.sample_ratio`, by trace id, then at most `tracing.max_per_s`
new traces a second); the jobs and the read side only continue traces whose parent was sampled, so the API's
decision governs the whole path. With tracing off every call here is a no-op that allocates nothing per record.
Tracing never fails its caller: an error here is logged once and the span is dropped.
"""

from __future__ import annotations

import logging
import random
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import IntEnum

from tradesim.settings import TracingSettings

__all__ = ["API_SERVICE", "ORDER_ATTRIBUTE", "PERSISTENCE_SERVICE", "SpanKind", "SpanRecord", "StatusCode",
           "Tracing"]
#: the attribute that names the order on every span of its path (how `tradesim trace` finds it)
ORDER_ATTRIBUTE = "order.id"
#: service names of the processes that trace (the execution job's is its job name)
API_SERVICE = "tradesim-api"
PERSISTENCE_SERVICE = "tradesim-persistence"
#: how long a stopping process waits for its last spans to leave (a missing Jaeger must not hold a stop)
SHUTDOWN_S = 3.0
Value = str | int | float | bool
Attributes = Mapping[str, Value]
log = logging.getLogger("tradesim.tracing")
_SAMPLED = 0x01  # the W3C trace flag
_KNOWN_FLAGS = 0x03  # sampled, and level 2's "random"; the other bits must be passed on as zero


class SpanKind(IntEnum):
    """OTLP's span kinds (their wire values)."""
    INTERNAL = 1
    SERVER = 2
    CLIENT = 3
    PRODUCER = 4
    CONSUMER = 5


class StatusCode(IntEnum):
    """OTLP's span status codes (their wire values)."""
    UNSET = 0
    OK = 1
    ERROR = 2


@dataclass(slots=True, eq=False)
class SpanRecord:
    """One span as OTLP carries it; open until `end_ns` is set, when it goes to the exporter and its setters stop
    keeping anything (as they keep nothing on a span whose `flags` say it is not sampled: the no-op stand-in)."""

    trace_id: int
    span_id: int
    parent_id: int  # 0: the trace's root
    flags: int
    name: str
    kind: SpanKind
    start_ns: int
    end_ns: int = 0
    attributes: dict[str, Value] = field(default_factory=dict)
    status: StatusCode = StatusCode.UNSET
    status_message: str = ""
    events: list[tuple[str, int, dict[str, Value]]] = field(default_factory=list)

    @property
    def sampled(self) -> bool:
        return bool(self.flags & _SAMPLED)

    @property
    def traceparent(self) -> str | None:
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{self.flags:02x}" if self.sampled else None

    @property
    def _open(self) -> bool:
        return self.sampled and not self.end_ns

    def set_attribute(self, key: str, value: Value) -> None:
        if self._open:
            self.attributes[key] = value

    def set_status(self, code: StatusCode, message: str = "") -> None:
        if self._open:
            self.status, self.status_message = code, message

    def record_exception(self, exc: BaseException) -> None:
        if self._open:
            self.events.append(("exception", time.time_ns(), {
                "exception.type": type(exc).__qualname__, "exception.message": str(exc),
                "exception.stacktrace": "".join(traceback.format_exception(exc))}))


#: the span of a request that is not traced: current while it runs, so what it starts is not traced either
UNTRACED = SpanRecord(0, 0, 0, 0, "", SpanKind.INTERNAL, 0)
_CURRENT: ContextVar[SpanRecord | None] = ContextVar("tradesim_span", default=None)
#: `span` with tracing off: one context manager for every call (reusable: it holds no state)
_OFF: AbstractContextManager[SpanRecord] = nullcontext(UNTRACED)


def _new_id(bits: int) -> int:
    """A random nonzero id (the `random` module: ids need to be unique, not secret; it reseeds after a fork)."""
    return random.getrandbits(bits) or 1


class Tracing:
    """A process's tracer. `root`: this process may start traces (the API), sharing `tracing.max_per_s` with the
    other `processes` that do; elsewhere a span exists only under a sampled parent. `sink`: where finished spans
    go, synchronously (tests); by default OTLP/HTTP in batches (tradesim.adapters.tracing.otlp)."""

    def __init__(self, settings: TracingSettings, service: str, *, root: bool = False, processes: int = 1,
                 sink: Callable[[SpanRecord], None] | None = None) -> None:
        self.enabled = settings.enabled
        self._failed = False
        self._exporter = None
        self._sampler = None
        self._sink: Callable[[SpanRecord], None] = _drop
        if not self.enabled:
            return
        if root:
            from tradesim.adapters.tracing.sampling import RateCapped

            self._sampler = RateCapped(settings.sample_ratio, settings.max_per_s / processes)
        if sink is None:
            from tradesim.adapters.tracing.otlp import OtlpExporter

            self._exporter = OtlpExporter(settings.traces_url, service)
            sink = self._exporter.add
        self._sink = sink

    @classmethod
    def off(cls) -> Tracing:
        return cls(TracingSettings(), "off")

    def span(self, name: str, *, kind: SpanKind = SpanKind.INTERNAL, parent: str | None = None,
             attributes: Attributes | None = None) -> AbstractContextManager[SpanRecord]:
        """A span around the block, current inside it; under `parent` (a traceparent) when given, else under the
        current span, else (the API) a new trace if the sampler takes it. An exception leaving the block is the
        caller's answer, not the span's error: the caller sets the status it means."""
        return self._span(name, kind, parent, attributes) if self.enabled else _OFF

    @contextmanager
    def _span(self, name: str, kind: SpanKind, parent: str | None, attributes: Attributes | None
              ) -> Iterator[SpanRecord]:
        span = self._start(name, kind, parent, attributes)
        token = _CURRENT.set(span)
        try:
            yield span
        finally:
            try:
                _CURRENT.reset(token)  # fails if the block ended in another context (a task the caller did not own)
                if span.sampled:
                    span.end_ns = time.time_ns()
                    self._sink(span)
            except Exception as exc:  # noqa: BLE001 - never in place of the block's own outcome
                self._failed_once(exc)

    def _start(self, name: str, kind: SpanKind, parent: str | None, attributes: Attributes | None) -> SpanRecord:
        try:
            current = _CURRENT.get()
            if parent:
                trace_id, parent_id, flags = _parsed(parent)
            elif current is not None:
                trace_id, parent_id, flags = current.trace_id, current.span_id, current.flags
            elif self._sampler is not None:
                trace_id, parent_id = _new_id(128), 0
                flags = _SAMPLED if self._sampler.sampled(trace_id) else 0
            else:
                return UNTRACED
            if not flags & _SAMPLED:
                return UNTRACED
            return SpanRecord(trace_id, _new_id(64), parent_id, flags, name, kind, time.time_ns(),
                              attributes=dict(attributes) if attributes else {})
        except Exception as exc:  # noqa: BLE001 - a trace is an aid: the request it describes must go on
            self._failed_once(exc)
            return UNTRACED

    def record(self, name: str, parent: str | None, start_ns: int, end_ns: int | None = None, *,
               kind: SpanKind = SpanKind.INTERNAL, attributes: Attributes | None = None) -> str | None:
        """A span that already happened (a batch's write, timed by the caller), under `parent`; returns its
        traceparent, or None when there is no sampled parent (nothing is recorded)."""
        if not self.enabled or not parent:
            return None
        try:
            trace_id, parent_id, flags = _parsed(parent)
            if not flags & _SAMPLED:  # the order is not sampled
                return None
            span = SpanRecord(trace_id, _new_id(64), parent_id, flags, name, kind, start_ns,
                              end_ns or time.time_ns(), attributes=dict(attributes) if attributes else {})
            self._sink(span)
            return span.traceparent
        except Exception as exc:  # noqa: BLE001 - a trace is an aid: the record it describes must go on
            self._failed_once(exc)
            return None

    def _failed_once(self, exc: Exception) -> None:
        if not self._failed:
            self._failed = True
            log.warning("span not recorded (logged once): %s: %s", type(exc).__name__, exc)

    def current(self) -> str | None:
        """The traceparent of the current span, if it is sampled."""
        span = _CURRENT.get() if self.enabled else None
        return None if span is None else span.traceparent

    def shutdown(self) -> None:
        """Export what is queued, for at most SHUTDOWN_S."""
        if self._exporter is not None:
            self._exporter.shutdown(SHUTDOWN_S)


def _drop(span: SpanRecord) -> None:
    """The sink of a tracer that is off (nothing reaches it)."""


def _parsed(parent: str) -> tuple[int, int, int]:
    """Trace id, span id and flags of a traceparent (its form is checked by the event's schema): a split, since
    the job calls this for every traced order on its busiest thread. All-zero ids are invalid (W3C): such a
    parent counts as not sampled."""
    _, trace_id, span_id, flags = parent.split("-")
    ids = int(trace_id, 16), int(span_id, 16)
    return *ids, int(flags, 16) & _KNOWN_FLAGS if all(ids) else 0
