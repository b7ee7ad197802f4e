"""OpenTelemetry for the services and jobs: one tracer provider per process exporting over OTLP/HTTP, and the W3C
`traceparent` that carries an order's trace across Kafka (see `tradesim.domain.events.TRACEPARENT_RE`).

The API decides whether an order is traced (`tracing.sample_ratio`, by trace id, then at most `tracing.max_per_s`
new traces a second); the jobs and the read side only continue traces whose parent was sampled, so the API's
decision governs the whole path. With tracing off every call here is a no-op that allocates nothing per record.
Tracing never fails its caller: an error in the SDK is logged once and the span is dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags

from tradesim.settings import TracingSettings

__all__ = ["API_SERVICE", "ORDER_ATTRIBUTE", "PERSISTENCE_SERVICE", "SpanKind", "StatusCode", "Tracing"]
#: the attribute that names the order on every span of its path (how `tradesim trace` finds it)
ORDER_ATTRIBUTE = "order.id"
#: service names of the processes that trace (the execution job's is its job name)
API_SERVICE = "tradesim-api"
PERSISTENCE_SERVICE = "tradesim-persistence"
#: how long a stopping process waits for its last spans to leave (a missing Jaeger must not hold a stop)
SHUTDOWN_S = 3.0
Attributes = Mapping[str, str | int | float | bool]
log = logging.getLogger("tradesim.tracing")


class Tracing:
    """A process's tracer. `root`: this process may start traces (the API), sharing `tracing.max_per_s` with the
    other `processes` that do; elsewhere a span exists only under a sampled parent. `exporter`: where spans go,
    synchronously (tests); by default OTLP/HTTP in batches."""

    def __init__(self, settings: TracingSettings, service: str, *, root: bool = False, processes: int = 1,
                 exporter: Any = None) -> None:
        self.enabled = settings.enabled
        self._provider: Any = None
        self._failed = False
        if not self.enabled:
            self._tracer: trace.Tracer = trace.NoOpTracer()
            return
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

        from tradesim.adapters.tracing.sampling import RateCapped

        sampler = ParentBased(RateCapped(settings.sample_ratio, settings.max_per_s / processes) if root else ALWAYS_OFF)
        self._provider = TracerProvider(resource=Resource.create({"service.name": service}), sampler=sampler)
        if exporter is not None:
            self._provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            # a short export timeout: a missing collector costs the exporter thread, never the request path
            self._provider.add_span_processor(BatchSpanProcessor(
                OTLPSpanExporter(endpoint=settings.traces_url, timeout=2), schedule_delay_millis=500,
                max_queue_size=16_384))
        # the exporter logs every batch it could not send (two a second while Jaeger is down); Jaeger's health
        # is in `tradesim status` and its alert, so those lines would only bury the services' own logs
        logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter").setLevel(logging.CRITICAL)
        self._tracer = self._provider.get_tracer("tradesim")

    @classmethod
    def off(cls) -> Tracing:
        return cls(TracingSettings(), "off")

    @contextmanager
    def span(self, name: str, *, kind: SpanKind = SpanKind.INTERNAL, parent: str | None = None,
             attributes: Attributes | None = None) -> Iterator[trace.Span]:
        """A span around the block, current inside it; under `parent` (a traceparent) when given, else under the
        current span. An exception leaving the block is the caller's answer, not the span's error: the caller
        sets the status it means."""
        context = _context_of(parent) if parent else None
        with self._tracer.start_as_current_span(name, context=context, kind=kind, attributes=attributes,
                                                record_exception=False, set_status_on_exception=False) as span:
            yield span

    def record(self, name: str, parent: str | None, start_ns: int, end_ns: int | None = None, *,
               kind: SpanKind = SpanKind.INTERNAL, attributes: Attributes | None = None) -> str | None:
        """A span that already happened (a batch's write, timed by the caller), under `parent`; returns its
        traceparent, or None when there is no sampled parent (nothing is recorded)."""
        if not self.enabled or not parent:
            return None
        try:
            if not int(parent[-2:], 16) & 1:  # the order is not sampled
                return None
            span = self._tracer.start_span(name, context=_context_of(parent), kind=kind, attributes=attributes,
                                           start_time=start_ns)
            span.end(end_time=end_ns or time.time_ns())
            return traceparent_of(span)
        except Exception as exc:  # noqa: BLE001 - a trace is an aid: the record it describes must go on
            if not self._failed:
                self._failed = True
                log.warning("span not recorded (logged once): %s: %s", type(exc).__name__, exc)
            return None

    def current(self) -> str | None:
        """The traceparent of the current span, if it is sampled."""
        return traceparent_of(trace.get_current_span()) if self.enabled else None

    def shutdown(self) -> None:
        """Export what is buffered, for at most SHUTDOWN_S (the exporter retries a missing collector longer)."""
        if self._provider is None:
            return
        done = threading.Thread(target=self._provider.shutdown, name="tracing-shutdown", daemon=True)
        done.start()
        done.join(SHUTDOWN_S)


def _context_of(parent: str) -> Context:
    """The remote parent of a valid traceparent (checked by the event's schema): a split, not the propagator's
    regular expression, since the job calls this for every traced order on its busiest thread."""
    _, trace_id, span_id, flags = parent.split("-")
    remote = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=TraceFlags(int(flags, 16)))
    return trace.set_span_in_context(NonRecordingSpan(remote))


def traceparent_of(span: trace.Span) -> str | None:
    ctx = span.get_span_context()
    if not ctx.is_valid or not ctx.trace_flags.sampled:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
