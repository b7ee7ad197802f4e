"""The market-data service as a stack component, so `tradesim up/down/status` manage it like the servers."""

from __future__ import annotations

import os
import sys

from websockets.exceptions import InvalidHandshake, WebSocketException
from websockets.sync.client import connect as ws_connect

import tradesim
from tradesim.settings import settings_to_env
from tradesim.stack.component import Component, PortSpec, Unhealthy
from tradesim.stack.tools import Report


class MarketDataService(Component):
    name = "marketdata"
    needs = ("kafka", "redis")

    @property
    def external(self) -> bool:
        return self.settings.marketdata.ws_url is not None

    def ports(self) -> list[PortSpec]:
        md = self.settings.marketdata
        return [PortSpec(md.host, md.ws_port, "TRADESIM_MARKETDATA__WS_PORT"),
                PortSpec(md.host, md.metrics_port, "TRADESIM_MARKETDATA__METRICS_PORT")]

    def address(self) -> str:
        return self.settings.marketdata.client_ws_url

    def version(self) -> str:
        return tradesim.__version__

    def provision(self, report: Report) -> None:
        return None  # pure Python, installed with tradesim

    def configure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "tradesim.services.marketdata"]

    def env(self) -> dict[str, str]:
        # The service sees exactly the settings the supervisor was built with (not whatever the cwd has).
        return {**os.environ, **settings_to_env(self.settings), "PYTHONUNBUFFERED": "1"}

    def check_health(self) -> None:
        try:
            with ws_connect(self.address(), open_timeout=2, close_timeout=1):
                pass
        except (OSError, TimeoutError, InvalidHandshake, WebSocketException) as exc:
            raise Unhealthy(f"WebSocket {self.address()} not answering: {exc}") from None
