"""Kafka 4.x as one combined KRaft node (broker + controller), run from Maven Central jars."""

from __future__ import annotations

import re
import uuid
from base64 import urlsafe_b64encode
from pathlib import Path

from tradesim.adapters.kafka.client import TopicSpec, broker_count, ensure_topics
from tradesim.adapters.kafka.errors import KafkaUnavailable
from tradesim.files import replace_text
from tradesim.stack.component import Component, PortSpec, Unhealthy
from tradesim.stack.tools import Report, maven_copy_dependencies, require_java, run_tool

POM = Path(__file__).parent / "java" / "kafka" / "pom.xml"
#: how often the broker deletes expired segments (Kafka's default is 5 min)
RETENTION_CHECK_MS = 60_000
#: a KRaft cluster id: a UUID's 16 bytes in url-safe base64 without padding (its last 4 bits are the padding's 0s)
CLUSTER_ID = re.compile(r"[A-Za-z0-9_-]{21}[AQgw]")


#: how much longer than the processing deadline `trade_orders` keeps a record
ORDERS_RETENTION_MARGIN_MS = 3_600_000


def orders_retention(processing_deadline_ms: int) -> dict[str, str]:
    """`trade_orders` config: every record outlives the processing deadline, so an accepted order is processed or
    expired by the execution job, never deleted unseen while the job is down for less than the deadline."""
    return {"retention.ms": str(processing_deadline_ms + ORDERS_RETENTION_MARGIN_MS),
            "segment.ms": str(ORDERS_RETENTION_MARGIN_MS)}

_LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="stdout" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
    <Root level="INFO"><AppenderRef ref="stdout"/></Root>
  </Loggers>
</Configuration>
"""


class Kafka(Component):
    name = "kafka"

    @property
    def _cfg(self):  # noqa: ANN202 - short alias
        return self.settings.kafka

    @property
    def external(self) -> bool:
        return self._cfg.bootstrap_servers is not None

    @property
    def libs(self) -> Path:
        return self.settings.cache_dir / "kafka" / self._cfg.version / "libs"

    def ports(self) -> list[PortSpec]:
        return [
            PortSpec(self._cfg.host, self._cfg.port, "TRADESIM_KAFKA__PORT"),
            PortSpec(self._cfg.host, self._cfg.controller_port, "TRADESIM_KAFKA__CONTROLLER_PORT"),
            *([PortSpec(self._cfg.host, self._cfg.proxied_port, "TRADESIM_KAFKA__PROXIED_PORT")]
              if self.settings.chaos.enabled else []),
        ]

    def address(self) -> str:
        return self._cfg.bootstrap

    def version(self) -> str:
        return self._cfg.version

    def provision(self, report: Report) -> None:
        require_java(self.name, self.settings.stack.java_home)
        maven_copy_dependencies(self.name, POM, self.libs, report, {"kafka.version": self._cfg.version})

    def _java(self) -> str:
        return require_java(self.name, self.settings.stack.java_home)

    def _server_properties(self) -> str:
        c, chaos = self._cfg, self.settings.chaos
        controller = f"{c.host}:{c.controller_port}"
        listeners = [f"PLAINTEXT://{c.host}:{c.port}", f"CONTROLLER://{controller}"]
        advertised = list(listeners)
        if chaos.enabled:  # clients routed through Toxiproxy are told the proxy's address for every broker
            listeners.append(f"PROXIED://{c.host}:{c.proxied_port}")
            advertised.append(f"PROXIED://{chaos.host}:{chaos.kafka_port}")
        return "\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers={controller}",
            f"listeners={','.join(listeners)}",
            f"advertised.listeners={','.join(advertised)}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PROXIED:PLAINTEXT",
            f"log.dirs={self.dir / 'data'}",
            f"num.partitions={c.partitions}",
            # One node: internal topics cannot have 3 replicas, else groups and transactions never start.
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            # Flink's exactly-once KafkaSink asks for 1 h transactions; allow it.
            "transaction.max.timeout.ms=3600000",
            f"log.retention.hours={c.retention_hours}",
            f"log.retention.check.interval.ms={RETENTION_CHECK_MS}",
            "auto.create.topics.enable=false",
            "",
        ])

    def configure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "server.properties").write_text(self._server_properties())
        (self.dir / "log4j2.xml").write_text(_LOG4J2)
        if not (self.dir / "data" / "meta.properties").exists():
            run_tool(self.name, [
                self._java(), "-Xmx256m", f"-Dlog4j2.configurationFile={self.dir / 'log4j2.xml'}",
                "-cp", f"{self.libs}/*", "kafka.tools.StorageTool", "format",
                # one token: a random id may start with "-", which the tool would take for an option
                f"--cluster-id={self._cluster_id()}", "-c", str(self.dir / "server.properties"),
                "--standalone", "--ignore-formatted",
            ], "kafka storage format", timeout_s=120)

    def _cluster_id(self) -> str:
        """The id to format the log dir with, kept in `cluster.id`. It is read only to format a log dir that has no
        `meta.properties` yet, which holds no id, so a file left empty or cut (a full disk, a kill as it was
        written; every format failed on it) is replaced by a new id without losing data. Written whole or not at
        all."""
        path = self.dir / "cluster.id"
        try:
            found = path.read_text().strip()
        except (OSError, ValueError):  # unreadable, or not text
            found = ""
        if CLUSTER_ID.fullmatch(found):
            return found
        # Same shape as `kafka-storage random-uuid`: 16 random bytes, url-safe base64, no padding.
        fresh = urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        replace_text(path, fresh)
        return fresh

    def argv(self) -> list[str]:
        heap = f"{self._cfg.heap_mb}m"
        return [
            # AlwaysPreTouch: the whole heap is resident from the start, so RSS is flat under load
            # instead of climbing towards -Xmx over the first half hour (the soak's growth goal).
            self._java(), f"-Xms{heap}", f"-Xmx{heap}", "-XX:+AlwaysPreTouch", "-server", "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={self.dir}",
            "-cp", f"{self.libs}/*", "kafka.Kafka", str(self.dir / "server.properties"),
        ]

    def check_health(self) -> None:
        try:
            broker_count(self._cfg, timeout_s=3)
        except KafkaUnavailable as exc:
            raise Unhealthy(str(exc)) from None
        if self.settings.chaos.enabled:  # the routed clients need the listener Toxiproxy forwards to
            try:
                broker_count(self._cfg.model_copy(update={"port": self._cfg.proxied_port}), timeout_s=3)
            except KafkaUnavailable:
                raise Unhealthy(f"no listener on kafka.proxied_port {self._cfg.proxied_port} for Toxiproxy (started "
                                "before chaos was turned on?): `tradesim down --only kafka && tradesim up`") from None

    def topic_specs(self) -> list[TopicSpec]:
        t, parts = self.settings.topics, self._cfg.partitions
        retention = {"retention.ms": str(self._cfg.retention_hours * 3_600_000)}
        hours = self._cfg.executed_retention_hours
        return [
            TopicSpec(t.market_data, parts, retention),     # key: symbol
            TopicSpec(t.market_bars, parts, retention),     # key: symbol
            TopicSpec(t.trade_orders, parts,  # key: user
                      orders_retention(self.settings.trading.processing_deadline_ms)),
            TopicSpec(t.trade_executed, parts, {"retention.ms": str(hours * 3_600_000 if hours else -1)}),  # key: user
            TopicSpec(t.dead_letter, 1, retention),
        ]

    def initialize(self, report: Report) -> None:
        try:
            created = ensure_topics(self._cfg, self.topic_specs())
        except KafkaUnavailable as exc:
            raise Unhealthy(str(exc)) from None
        if created:
            report("created topics " + ", ".join(sorted(created)))
