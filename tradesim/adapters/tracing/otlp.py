"""Spans to an OTLP/HTTP receiver (Jaeger, or any OpenTelemetry collector) in OTLP's JSON encoding, sent in
batches from one daemon thread per process, so the request path only appends to a queue."""

from __future__ import annotations

import atexit
import http.client
import json
import logging
import math
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from tradesim.adapters.tracing import SpanRecord

log = logging.getLogger("tradesim.tracing")
_dumps = json.dumps
_INT64 = range(-(1 << 63), 1 << 63)
_NON_FINITE = {"nan": '"NaN"', "inf": '"Infinity"', "-inf": '"-Infinity"'}
#: the connection errors of a keep-alive connection the receiver closed while idle: worth one new connection
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def _attribute(key: str, value: object) -> str:
    if value is True or value is False:
        typed = f'{{"boolValue":{"true" if value else "false"}}}'
    elif isinstance(value, int) and value in _INT64:
        typed = f'{{"intValue":"{value}"}}'  # int64 is a string in OTLP/JSON
    elif isinstance(value, float):
        # JSON has no NaN or infinities: proto3's JSON mapping writes them as strings
        typed = f'{{"doubleValue":{_dumps(value) if math.isfinite(value) else _NON_FINITE[str(value)]}}}'
    else:
        typed = f'{{"stringValue":{_dumps(str(value))}}}'
    return f'{{"key":{_dumps(key)},"value":{typed}}}'


def _attributes(attributes: Mapping[str, object]) -> str:
    return ",".join([_attribute(k, v) for k, v in attributes.items()])


def _span(s: SpanRecord) -> str:
    parent = f',"parentSpanId":"{s.parent_id:016x}"' if s.parent_id else ""
    status = f',"status":{{"code":{int(s.status)},"message":{_dumps(s.status_message)}}}' if s.status else ""
    events = "" if not s.events else ',"events":[' + ",".join(
        [f'{{"timeUnixNano":"{at}","name":{_dumps(name)},"attributes":[{_attributes(attrs)}]}}'
         for name, at, attrs in s.events]) + "]"
    return (f'{{"traceId":"{s.trace_id:032x}","spanId":"{s.span_id:016x}"{parent},"flags":{s.flags},'
            f'"name":{_dumps(s.name)},"kind":{int(s.kind)},"startTimeUnixNano":"{s.start_ns}",'
            f'"endTimeUnixNano":"{s.end_ns}","attributes":[{_attributes(s.attributes)}]{status}{events}}}')


def encode(service: str, spans: Iterable[SpanRecord]) -> bytes:
    """An OTLP/JSON `ExportTraceServiceRequest` (ids in hex, 64-bit integers as strings, as the OTLP/HTTP
    specification has it), written directly: building it as dicts for `json.dumps` costs twice as much."""
    resource = _attribute("service.name", service)
    return (f'{{"resourceSpans":[{{"resource":{{"attributes":[{resource}]}},"scopeSpans":[{{"scope":'
            f'{{"name":"tradesim"}},"spans":[{",".join([_span(s) for s in spans])}]}}]}}]}}').encode()


class OtlpExporter:
    """Queues finished spans (`add`, one deque append) and POSTs them every `interval_s`, at most `batch` a request.
    A failed request drops its batch (traces are an aid; retrying would hold the queue behind a missing
    collector) and is logged once until one succeeds; the queue holds `max_queue` spans, the oldest going first
    when the sending falls behind. What is queued is sent when the process exits, for at most `shutdown`'s time."""

    def __init__(self, url: str, service: str, *, interval_s: float = 0.5, batch: int = 512,
                 max_queue: int = 16_384, timeout_s: float = 2.0, exit_wait_s: float = 3.0) -> None:
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname or "", parts.port
        self._path = parts.path or "/"
        self._service, self._interval_s, self._batch, self._timeout_s = service, interval_s, batch, timeout_s
        self._queue: deque[SpanRecord] = deque(maxlen=max_queue)
        self.add = self._queue.append  # the hot path: thread-safe, no lock, no wake-up
        self._conn: http.client.HTTPConnection | None = None
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="otlp-export", daemon=True)
        self._thread.start()
        atexit.register(self.shutdown, exit_wait_s)  # e.g. a PyFlink worker, which no one stops explicitly

    def _run(self) -> None:
        while True:
            stopping = self._stop.wait(self._interval_s)
            while self._queue:  # only this thread takes from the queue
                n = min(len(self._queue), self._batch)
                batch = [self._queue.popleft() for _ in range(n)]
                try:
                    self._send(encode(self._service, batch))
                except Exception as exc:  # noqa: BLE001 - e.g. an attribute that cannot be written: this batch only
                    self._failed(exc)
            if stopping:
                if self._conn is not None:
                    self._conn.close()
                return

    def _send(self, body: bytes) -> None:
        reused = self._conn is not None
        try:
            self._post(body)
        except _STALE:
            if not reused:
                raise
            self._post(body)  # the receiver closed the idle connection: once more on a new one
        self._failing = False

    def _post(self, body: bytes) -> None:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout_s)
        try:
            self._conn.request("POST", self._path, body, {"Content-Type": "application/json"})
            answer = self._conn.getresponse()
            detail = answer.read()
        except Exception:
            self._conn.close()
            self._conn = None
            raise
        if answer.status >= 300:
            raise OSError(f"HTTP {answer.status}: {detail[:200].decode(errors='replace')}")

    def _failed(self, exc: Exception) -> None:
        if not self._failing:  # Jaeger's health is in `tradesim status` and its alert; once is enough here
            self._failing = True
            log.warning("spans not exported to %s (logged once until it answers): %s: %s",
                        f"{self._host}:{self._port}{self._path}", type(exc).__name__, exc)

    def shutdown(self, timeout_s: float) -> None:
        """Send what is queued, waiting at most `timeout_s` (a missing collector must not hold a stop)."""
        self._stop.set()
        self._thread.join(timeout_s)
