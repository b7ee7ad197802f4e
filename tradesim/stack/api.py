"""The order API as a stack component, so `tradesim up/down/status` manage it like the servers."""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

import tradesim
from tradesim.settings import settings_to_env
from tradesim.stack.component import Component, PortSpec, Unhealthy
from tradesim.stack.tools import Report


class ApiService(Component):
    name = "api"
    needs = ("kafka", "redis", "dynamodb")

    @property
    def external(self) -> bool:
        return self.settings.api.url is not None

    def ports(self) -> list[PortSpec]:
        api = self.settings.api
        return [PortSpec(api.host, api.port, "TRADESIM_API__PORT")]

    def address(self) -> str:
        return self.settings.api.client_url

    def version(self) -> str:
        return tradesim.__version__

    def provision(self, report: Report) -> None:
        return None  # pure Python, installed with tradesim

    def configure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "tradesim.services.api"]

    def env(self) -> dict[str, str]:
        return {**os.environ, **settings_to_env(self.settings), "PYTHONUNBUFFERED": "1"}

    def check_health(self) -> None:
        url = f"{self.address()}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - our own http:// endpoint
                body = json.loads(answer.read())
        except (OSError, ValueError, urllib.error.URLError) as exc:
            raise Unhealthy(f"API {url} not answering: {exc}") from None
        if body.get("status") != "ok":
            raise Unhealthy(f"API {url} answered {body!r}")
