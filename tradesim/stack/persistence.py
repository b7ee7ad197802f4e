"""The persistence service as a stack component: `tradesim up/down/status` manage it like the servers."""

from __future__ import annotations

from tradesim.stack.component import PortSpec, ServiceComponent, answers


class PersistenceService(ServiceComponent):
    name = "persistence"
    module = "tradesim.services.persistence"
    needs = ("kafka", "opensearch", "clickhouse")

    def ports(self) -> list[PortSpec]:
        p = self.settings.persistence
        return [PortSpec(p.host, p.metrics_port, "TRADESIM_PERSISTENCE__METRICS_PORT")]

    def address(self) -> str:
        p = self.settings.persistence
        return f"http://{p.host}:{p.metrics_port}/metrics"

    def check_health(self) -> None:
        answers(self.address(), "persistence metrics")
