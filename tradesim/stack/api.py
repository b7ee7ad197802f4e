"""The order API as a stack component, so `tradesim up/down/status` manage it like the servers."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tradesim.settings import redacted
from tradesim.stack.component import PortSpec, ServiceComponent, Unhealthy


class ApiService(ServiceComponent):
    name = "api"
    module = "tradesim.services.api"
    needs = ("kafka", "redis", "dynamodb")

    @property
    def external(self) -> bool:
        return self.settings.api.url is not None

    def ports(self) -> list[PortSpec]:
        api = self.settings.api
        return [PortSpec(api.host, api.port, "TRADESIM_API__PORT")]

    def address(self) -> str:
        return self.settings.api.client_url

    def check_health(self) -> None:
        url = f"{self.address()}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - our own http:// endpoint
                body = json.loads(answer.read())
        except (OSError, ValueError, urllib.error.URLError) as exc:
            raise Unhealthy(f"API {redacted(url)} not answering: {exc}") from None
        if not isinstance(body, dict) or body.get("status") != "ok":  # another server's JSON is not the API's
            raise Unhealthy(f"API {redacted(url)} answered {body!r}")
