"""Jaeger's HTTP query API (`/api/traces`, the one its UI uses): the traces that carry an order id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from tradesim.adapters.tracing import API_SERVICE, ORDER_ATTRIBUTE
from tradesim.ports import Unavailable
from tradesim.settings import redacted
from tradesim.text import one_line


@dataclass
class Span:
    span_id: str
    parent_id: str | None
    service: str
    operation: str
    start_us: int
    duration_us: int
    attributes: dict[str, object]
    children: list[Span] = field(default_factory=list)


@dataclass
class Trace:
    trace_id: str
    roots: list[Span]  # spans whose parent is not in the trace (usually one: the API's request span)
    spans: int

    def walk(self) -> Iterator[Span]:
        """Every span of the trace, each once (depth first)."""
        todo = list(self.roots)
        while todo:
            span = todo.pop()
            yield span
            todo += span.children

    @property
    def start_us(self) -> int:
        return min(r.start_us for r in self.roots)

    @property
    def end_us(self) -> int:
        return max(s.start_us + s.duration_us for s in self.walk())


class JaegerQuery:
    """Raises Unavailable for anything but a well-formed answer (down, wrong URL, another server)."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self._client = httpx.Client(base_url=url, timeout=timeout_s, trust_env=False)  # as Prometheus: no proxy

    def close(self) -> None:
        self._client.close()

    def services(self) -> list[str]:
        return list(self._get("/api/services", {}).get("data") or [])

    def order_traces(self, order_id: str, *, lookback_h: int = 48) -> list[Trace]:
        """Every trace whose API span names this order (a retried request may start a second one), oldest first."""
        got = self._get("/api/traces", {"service": API_SERVICE, "tags": json.dumps({ORDER_ATTRIBUTE: order_id}),
                                        "lookback": f"{lookback_h}h", "limit": "20"})
        try:
            traces = [_trace(t) for t in got.get("data") or []]
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:  # 1e400: an infinite time
            raise Unavailable(f"{self._where()} answered a trace it cannot be: {type(exc).__name__}: {exc}"
                              ) from None
        return sorted((t for t in traces if t.roots), key=lambda t: t.start_us)

    def _where(self) -> str:
        return f"Jaeger query API at {redacted(str(self._client.base_url))}"

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        where = self._where()
        try:
            response = self._client.get(path, params=params)
            if response.status_code != 200:
                raise Unavailable(f"{where} answered {response.status_code}: {one_line(response.text)[:200]}")
            body = response.json()
        except httpx.HTTPError as exc:
            raise Unavailable(f"{where}: {exc}") from None
        except ValueError:
            raise Unavailable(f"{where} answered something that is not JSON: is it Jaeger?") from None
        if not isinstance(body, dict):
            raise Unavailable(f"{where} answered JSON that is not Jaeger's")
        return body


def _trace(raw: dict[str, Any]) -> Trace:
    processes = raw.get("processes") or {}
    spans: dict[str, Span] = {}
    for s in raw.get("spans") or []:
        parent = next((r["spanID"] for r in s.get("references") or [] if r.get("refType") == "CHILD_OF"), None)
        service = (processes.get(s.get("processID")) or {}).get("serviceName", "?")
        spans[s["spanID"]] = Span(span_id=s["spanID"], parent_id=parent, service=service,
                                  operation=s.get("operationName", ""), start_us=int(s.get("startTime", 0)),
                                  duration_us=int(s.get("duration", 0)),
                                  attributes={t["key"]: t.get("value") for t in s.get("tags") or []})
    roots: list[Span] = []
    for span in spans.values():
        parent = spans.get(span.parent_id) if span.parent_id else None
        (parent.children if parent is not None else roots).append(span)
    for span in spans.values():
        span.children.sort(key=lambda c: c.start_us)
    return Trace(trace_id=str(raw.get("traceID", "")), roots=sorted(roots, key=lambda r: r.start_us),
                 spans=len(spans))
