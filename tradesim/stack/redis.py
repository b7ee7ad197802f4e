"""Redis from Debian's redis-server package, with its own port, folder and log."""

from __future__ import annotations

import shutil

import redis as redis_py

from tradesim.adapters.redis.client import MAXMEMORY_POLICY, connect
from tradesim.stack.component import Component, PortSpec, Unhealthy
from tradesim.stack.errors import ProvisionError
from tradesim.stack.tools import Report, apt_install, run_tool


class Redis(Component):
    name = "redis"

    @property
    def external(self) -> bool:
        return self.settings.redis.url is not None

    def ports(self) -> list[PortSpec]:
        return [PortSpec(self.settings.redis.host, self.settings.redis.port, "TRADESIM_REDIS__PORT")]

    def address(self) -> str:
        return self.settings.redis.client_url

    def _binary(self) -> str:
        found = shutil.which("redis-server")
        if not found:
            raise ProvisionError(self.name, "redis-server is not installed: `apt-get install -y redis-server`")
        return found

    def version(self) -> str:
        try:
            out = run_tool(self.name, [self._binary(), "--version"], "redis-server --version", timeout_s=10)
        except ProvisionError:
            return "unknown"
        return next((p.split("=", 1)[1] for p in out.split() if p.startswith("v=")), "unknown")

    def provision(self, report: Report) -> None:
        if shutil.which("redis-server") is None:
            apt_install(self.name, ["redis-server"], report)

    def configure(self) -> None:
        cfg = self.settings.redis
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        lines = [
            f"bind {cfg.host}",
            f"port {cfg.port}",
            "protected-mode yes",
            "daemonize no",
            'logfile ""',  # stdout, which the supervisor sends to server.log
            f"dir {data}",
            'save ""',
            f"appendonly {'yes' if cfg.persistence == 'aof' else 'no'}",
            "appendfsync everysec",
            f"maxmemory {cfg.maxmemory_mb}mb",
            f"maxmemory-policy {MAXMEMORY_POLICY}",
        ]
        (self.dir / "redis.conf").write_text("\n".join(lines) + "\n")

    def argv(self) -> list[str]:
        return [self._binary(), str(self.dir / "redis.conf")]

    def check_health(self) -> None:
        client = connect(self.settings.redis, timeout_s=1.0)
        try:
            if not client.ping():
                raise Unhealthy("PING did not answer PONG")
        except redis_py.RedisError as exc:
            raise Unhealthy(f"PING {self.shown_address()} failed: {exc}") from None
        finally:
            client.close()
