"""Toxiproxy's HTTP API: proxies (listen → upstream, enabled or not) and the toxics on them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tradesim.ports import Unavailable
from tradesim.settings import redacted


class ToxiproxyRefused(Exception):
    """Toxiproxy answered but refused the request (4xx), e.g. a toxic of that name is already on the proxy."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Proxy:
    name: str
    listen: str
    upstream: str
    enabled: bool
    toxics: tuple[str, ...]  # names of the toxics on it


class Toxiproxy:
    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.shown_url = redacted(self.url)  # for messages
        self.http = httpx.Client(base_url=self.url, timeout=timeout_s, trust_env=False)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            answer = self.http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise Unavailable(f"no Toxiproxy answers at {self.shown_url}: {exc}") from None
        if 400 <= answer.status_code < 500:
            raise ToxiproxyRefused(f"Toxiproxy refused {method} {path}: {answer.text[:200]}", answer.status_code)
        if answer.status_code >= 500:
            raise Unavailable(f"Toxiproxy {method} {path} answered HTTP {answer.status_code}: {answer.text[:200]}")
        try:
            return answer.json() if answer.content else None
        except ValueError:
            raise Unavailable(f"what answers at {self.shown_url} is not Toxiproxy: {answer.text[:100]!r}") from None

    def proxies(self) -> list[Proxy]:
        rows = self._call("GET", "/proxies") or {}
        try:
            return sorted((Proxy(str(p["name"]), str(p["listen"]), str(p["upstream"]), bool(p["enabled"]),
                                 tuple(str(t["name"]) for t in p.get("toxics") or [])) for p in rows.values()),
                          key=lambda p: p.name)
        except (AttributeError, KeyError, TypeError):  # JSON of another shape: another service on the port
            raise Unavailable(f"what answers at {self.shown_url} is not Toxiproxy: {str(rows)[:100]!r}") from None

    def ensure_proxy(self, name: str, listen: str, upstream: str) -> None:
        """Create the proxy, or point an existing one at `upstream` and enable it."""
        if any(p.name == name for p in self.proxies()):
            self._call("POST", f"/proxies/{name}", {"listen": listen, "upstream": upstream, "enabled": True})
        else:
            self._call("POST", "/proxies", {"name": name, "listen": listen, "upstream": upstream, "enabled": True})

    def set_enabled(self, name: str, enabled: bool) -> None:
        """A disabled proxy refuses connections and drops the open ones (the dependency is down)."""
        self._call("POST", f"/proxies/{name}", {"enabled": enabled})

    def add_toxic(self, proxy: str, name: str, kind: str, attributes: dict[str, int], stream: str = "downstream"
                  ) -> None:
        self._call("POST", f"/proxies/{proxy}/toxics",
                   {"name": name, "type": kind, "stream": stream, "toxicity": 1.0, "attributes": attributes})

    def remove_toxic(self, proxy: str, name: str) -> bool:
        """Remove the toxic; False if it was not there (removed meanwhile)."""
        try:
            self._call("DELETE", f"/proxies/{proxy}/toxics/{name}")
        except ToxiproxyRefused as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def reset(self) -> None:
        """Every proxy enabled, every toxic removed."""
        self._call("POST", "/reset")

    def close(self) -> None:
        self.http.close()
