"""Prometheus's HTTP API (instant queries and alerts) for `tradesim top` and `tradesim alerts`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import httpx

from tradesim.ports import Unavailable
from tradesim.settings import redacted
from tradesim.text import one_line


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Alert:
    name: str
    state: str  # pending | firing
    severity: str
    summary: str
    labels: dict[str, str]
    active_at: str


class PrometheusApi:
    def __init__(self, url: str, timeout_s: float = 3.0) -> None:
        self.url = url.rstrip("/")
        self.shown_url = redacted(self.url)  # for messages
        self.http = httpx.Client(base_url=self.url, timeout=timeout_s, trust_env=False)

    def _get(self, path: str, **params: str) -> Any:
        try:
            answer = self.http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise Unavailable(f"no Prometheus answers at {self.shown_url}: {exc}") from None
        if answer.status_code != 200:
            raise Unavailable(f"Prometheus at {self.shown_url} answered HTTP {answer.status_code}: "
                              f"{one_line(answer.text)[:200]}")
        try:
            body = answer.json()
        except ValueError:
            raise self._not_prometheus(answer.text) from None
        if not isinstance(body, dict):
            raise self._not_prometheus(answer.text)
        if body.get("status") != "success":
            raise Unavailable(f"Prometheus at {self.shown_url}: {body.get('error', body)}")
        if not isinstance(body.get("data"), dict):
            raise self._not_prometheus(answer.text)
        return body["data"]

    def _not_prometheus(self, what: object) -> Unavailable:
        return Unavailable(f"what answers at {self.shown_url} is not Prometheus: {one_line(str(what))[:100]!r}")

    def query(self, expr: str) -> list[Sample]:
        """An instant query's vector (NaN samples left out: an empty histogram has no quantile); label values as
        text, as Prometheus writes them (a number from another server could not be sorted with them)."""
        data = self._get("/api/v1/query", query=expr)
        out = []
        try:
            for row in data.get("result") or []:
                value = float(row["value"][1])
                if not math.isnan(value):
                    out.append(Sample({str(k): str(v) for k, v in row["metric"].items()}, value))
        except (AttributeError, KeyError, TypeError, ValueError, IndexError):
            raise self._not_prometheus(data) from None
        return out

    def scalar(self, expr: str) -> float | None:
        """The single value of a query that yields at most one sample."""
        got = self.query(expr)
        return got[0].value if got else None

    def alerts(self) -> list[Alert]:
        data = self._get("/api/v1/alerts")
        out = []
        try:
            for row in data.get("alerts") or []:
                labels = {str(k): str(v) for k, v in (row.get("labels") or {}).items()}
                out.append(Alert(name=labels.pop("alertname", "?"), state=str(row.get("state", "?")),
                                 severity=labels.pop("severity", ""),
                                 summary=str((row.get("annotations") or {}).get("summary", "")), labels=labels,
                                 active_at=str(row.get("activeAt") or "")))
        except (AttributeError, TypeError, ValueError):
            raise self._not_prometheus(data) from None
        return sorted(out, key=lambda a: (a.state != "firing", a.name, sorted(a.labels.items())))

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their health ("up", "down", "unknown")."""
        targets = self._get("/api/v1/targets").get("activeTargets") or []
        if not isinstance(targets, list):
            raise self._not_prometheus(targets)
        return targets

    def close(self) -> None:
        self.http.close()
