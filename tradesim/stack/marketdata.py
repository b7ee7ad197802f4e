"""The market-data service as a stack component, so `tradesim up/down/status` manage it like the servers."""

from __future__ import annotations

from websockets.exceptions import InvalidHandshake, WebSocketException
from websockets.sync.client import connect as ws_connect

from tradesim.stack.component import PortSpec, ServiceComponent, Unhealthy


class MarketDataService(ServiceComponent):
    name = "marketdata"
    module = "tradesim.services.marketdata"
    needs = ("kafka", "redis", "dynamodb")

    @property
    def external(self) -> bool:
        return self.settings.marketdata.ws_url is not None

    def ports(self) -> list[PortSpec]:
        md = self.settings.marketdata
        return [PortSpec(md.host, md.ws_port, "TRADESIM_MARKETDATA__WS_PORT"),
                PortSpec(md.host, md.metrics_port, "TRADESIM_MARKETDATA__METRICS_PORT")]

    def address(self) -> str:
        return self.settings.marketdata.client_ws_url

    def check_health(self) -> None:
        try:
            with ws_connect(self.address(), open_timeout=2, close_timeout=1):
                pass
        except (OSError, TimeoutError, InvalidHandshake, WebSocketException) as exc:
            raise Unhealthy(f"WebSocket {self.shown_address()} not answering: {exc}") from None
