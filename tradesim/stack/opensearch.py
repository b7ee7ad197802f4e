"""OpenSearch 2.19 as one node in its own JVM, run from Maven Central jars by a launcher kept in the repo."""

from __future__ import annotations

from pathlib import Path

from tradesim.adapters.search.client import SearchClient
from tradesim.adapters.search.errors import IndexLayoutError, SearchRequestError
from tradesim.adapters.search.trades import TradeIndex
from tradesim.ports import Unavailable
from tradesim.settings import OpenSearchSettings
from tradesim.stack.component import Component, PortSpec, Unhealthy
from tradesim.stack.tools import Report, maven_copy_dependencies, require_java

JAVA_DIR = Path(__file__).parent / "java" / "opensearch"
POM = JAVA_DIR / "pom.xml"
# Run by Java's single-file source launcher: compiled in memory at each start (~1 s), so no build step.
LAUNCHER = JAVA_DIR / "src" / "TradesimSearchNode.java"

_LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="stdout" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d{ISO8601}][%-5p][%c{1.}] %m%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <!-- Logged on every cluster-state change of an embedded node; it only says batch allocation is off. -->
    <Logger name="org.opensearch.cluster.routing.allocation.AllocationService" level="ERROR"/>
    <Logger name="org.opensearch.deprecation" level="WARN"/>
    <Root level="INFO"><AppenderRef ref="stdout"/></Root>
  </Loggers>
</Configuration>
"""

# From the distribution's jvm.options: netty without Unsafe tricks and per-thread recyclers (less off-heap
# memory), no log4j JMX or shutdown hook (the launcher's hook closes the node, then log4j), CLDR locale data.
_JVM_FLAGS = [
    "-server", "-XX:+UseG1GC", "-Djava.awt.headless=true", "-Dfile.encoding=UTF-8",
    "-Dio.netty.noUnsafe=true", "-Dio.netty.noKeySetOptimization=true",
    "-Dio.netty.recycler.maxCapacityPerThread=0",
    "-Dlog4j.shutdownHookEnabled=false", "-Dlog4j2.disable.jmx=true",
    "-Djava.locale.providers=SPI,CLDR",
]


class OpenSearch(Component):
    name = "opensearch"

    @property
    def _cfg(self) -> OpenSearchSettings:
        return self.settings.opensearch

    @property
    def external(self) -> bool:
        return self._cfg.url is not None

    @property
    def libs(self) -> Path:
        return self.settings.cache_dir / "opensearch" / self._cfg.version / "libs"

    def ports(self) -> list[PortSpec]:
        return [
            PortSpec(self._cfg.host, self._cfg.port, "TRADESIM_OPENSEARCH__PORT"),
            PortSpec(self._cfg.host, self._cfg.transport_port, "TRADESIM_OPENSEARCH__TRANSPORT_PORT"),
        ]

    def address(self) -> str:
        return self._cfg.client_url

    def version(self) -> str:
        return self._cfg.version

    def provision(self, report: Report) -> None:
        require_java(self.name, self.settings.stack.java_home)
        maven_copy_dependencies(self.name, POM, self.libs, report,
                                {"opensearch.runner.version": self._cfg.version})

    def configure(self) -> None:
        for sub in ("home", "data", "logs", "snapshots"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "log4j2.xml").write_text(_LOG4J2)

    @property
    def snapshots(self) -> Path:
        return self.dir / "snapshots"

    def node_settings(self) -> dict[str, str]:
        """Settings handed to the launcher as key=value arguments."""
        c = self._cfg
        return {
            "cluster.name": "tradesim",
            "node.name": "tradesim",
            "discovery.type": "single-node",
            "network.host": c.host,
            "http.port": str(c.port),
            "transport.port": str(c.transport_port),
            "path.home": str(self.dir / "home"),
            "path.data": str(self.dir / "data"),
            "path.logs": str(self.dir / "logs"),
            # where `tradesim backup` may write snapshots (an fs repository must lie under path.repo)
            "path.repo": str(self.snapshots),
            # A dev box's disk may be fuller than the 85/90/95 % watermarks; past them the node refuses to
            # allocate shards or makes indices read-only, which would look like a tradesim bug.
            "cluster.routing.allocation.disk.threshold_enabled": "false",
            # Indices are created by `up` with explicit mappings; a typo in an index name should fail.
            "action.auto_create_index": "false",
        }

    def argv(self) -> list[str]:
        heap = f"{self._cfg.heap_mb}m"
        java = require_java(self.name, self.settings.stack.java_home)
        return [
            java, f"-Xms{heap}", f"-Xmx{heap}", *_JVM_FLAGS,
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.xml'}",
            "-cp", f"{self.libs}/*", str(LAUNCHER),
            *(f"{k}={v}" for k, v in self.node_settings().items()),
        ]

    def check_health(self) -> None:
        try:
            with SearchClient(self._cfg, timeout_s=2) as client:
                health = client.cluster_health()
        except (Unavailable, SearchRequestError) as exc:
            raise Unhealthy(str(exc)) from None
        if health.get("status") not in ("green", "yellow"):
            raise Unhealthy(f"cluster status is {health.get('status')!r}")

    def initialize(self, report: Report) -> None:
        index = TradeIndex.from_settings(self._cfg)
        try:
            created = index.ensure()
            if created:
                report(f"created index {created} behind alias {index.alias}")
        except (Unavailable, IndexLayoutError) as exc:
            raise Unhealthy(str(exc)) from None
        finally:
            index.close()
