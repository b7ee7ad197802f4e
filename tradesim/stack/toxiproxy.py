"""Toxiproxy (a Go module, built by `go install` at a pinned version) as an optional stack component: with
`chaos.enabled` the services and the jobs reach Redis, DynamoDB and Kafka only through its proxies, so
`tradesim chaos` can slow, cut or break those connections (Settings.routed)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tradesim.stack.component import Component, PortSpec, answers
from tradesim.stack.errors import ProvisionError
from tradesim.stack.tools import Report, run_tool

MODULE = "github.com/Shopify/toxiproxy/v2/cmd/server"
OFF_HINT = "off: set chaos.enabled (TRADESIM_CHAOS__ENABLED=true) and run `tradesim up`"


class ToxiproxyServer(Component):
    name = "toxiproxy"
    builds_beside = True  # a Go build

    def ports(self) -> list[PortSpec]:
        c = self.settings.chaos
        return [PortSpec(c.host, c.api_port, "TRADESIM_CHAOS__API_PORT"),
                PortSpec(c.host, c.redis_port, "TRADESIM_CHAOS__REDIS_PORT"),
                PortSpec(c.host, c.dynamodb_port, "TRADESIM_CHAOS__DYNAMODB_PORT"),
                PortSpec(c.host, c.kafka_port, "TRADESIM_CHAOS__KAFKA_PORT")]

    def address(self) -> str:
        return self.settings.chaos.api_url

    @property
    def binary(self) -> Path:
        return self.settings.cache_dir / "toxiproxy" / self.settings.chaos.version / "server"

    def version(self) -> str:
        return self.settings.chaos.version

    def not_requested(self) -> str | None:
        return None if self.settings.chaos.enabled else OFF_HINT

    def provision(self, report: Report) -> None:
        if self.binary.exists():
            return
        go = shutil.which("go")
        if go is None:
            raise ProvisionError(self.name, "Go is not installed (`apt-get install -y golang`); Toxiproxy is built "
                                 f"with `go install {MODULE}@{self.settings.chaos.version}`")
        report(f"go install {MODULE}@{self.settings.chaos.version}")
        # `go install` writes the binary in place (a copy out of its build cache): one cut short (a kill, the
        # timeout) left a truncated `server` that every later `up` took for a finished build. It installs into a
        # folder of its own, and only a finished install is moved where `up` looks.
        staging = self.binary.with_name(f"gobin.partial.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        env = dict(os.environ, GOBIN=str(staging), GOFLAGS="-mod=mod")
        try:
            run_tool(self.name, [go, "install", f"{MODULE}@{self.settings.chaos.version}"], "go install",
                     env=env, timeout_s=900)
            (staging / self.binary.name).replace(self.binary)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def proxies(self) -> list[tuple[str, str, str]]:
        """(name, listen, upstream) of each proxy the services and jobs are routed through."""
        s, c = self.settings, self.settings.chaos
        return [("redis", f"{c.host}:{c.redis_port}", f"{s.redis.host}:{s.redis.port}"),
                ("dynamodb", f"{c.host}:{c.dynamodb_port}", f"{s.dynamodb.host}:{s.dynamodb.port}"),
                ("kafka", f"{c.host}:{c.kafka_port}", f"{s.kafka.host}:{s.kafka.proxied_port}")]

    @property
    def config_path(self) -> Path:
        return self.dir / "proxies.json"

    def configure(self) -> None:
        # the proxies exist before the server answers (it reads this file first): the services that start once it
        # answers found none before `initialize` made them, and logged hundreds of refused connections
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps([{"name": name, "listen": listen, "upstream": upstream,
                                                 "enabled": True} for name, listen, upstream in self.proxies()]))

    def argv(self) -> list[str]:
        c = self.settings.chaos
        return [str(self.binary), "-host", c.host, "-port", str(c.api_port), "-config", str(self.config_path)]

    def check_health(self) -> None:
        answers(f"{self.address()}/version", "Toxiproxy API")

    def initialize(self, report: Report) -> None:
        from tradesim.adapters.toxiproxy.client import Toxiproxy

        tox = Toxiproxy(self.settings.chaos.api_url)
        try:
            tox.reset()  # `up` leaves no fault behind (a `chaos run` that was killed cannot remove its own)
            for name, listen, upstream in self.proxies():
                tox.ensure_proxy(name, listen, upstream)
        finally:
            tox.close()
        report("proxies redis, dynamodb and kafka ready")
