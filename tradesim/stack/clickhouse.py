"""ClickHouse from Debian's clickhouse-server package (18.16), with its own config, ports, folder and log."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from xml.sax.saxutils import escape

from tradesim.adapters.clickhouse.client import ClickHouseClient
from tradesim.adapters.clickhouse.trades import TradeStore
from tradesim.ports import Unavailable
from tradesim.settings import redacted
from tradesim.stack.component import Component, PortSpec, Unhealthy
from tradesim.stack.errors import ProvisionError
from tradesim.stack.tools import Report, apt_install, stop_packaged_service

PACKAGES = ["clickhouse-server", "clickhouse-client"]
#: Debian puts the server in /usr/sbin, which a non-root PATH often lacks
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"])
HEALTH_TIMEOUT_S = 1.0
CACHE_BYTES = 64 * 1024 * 1024  # uncompressed cache: the package's 8 GiB suits a server, not a dev box
# Marks are cached per column file of a part, weighed by the marks alone: ~26 bytes for a part of one insert,
# against ~230 bytes of key and bookkeeping per entry. Every insert and merge makes new parts, so entries of
# replaced parts pile up, ~0.35 MB a minute for a whole soak: 18.16 evicts nothing younger than the profile's
# `mark_cache_min_lifetime` (10,000 s by default) whatever the size, and at 8 MB the bound itself meant ~300,000
# entries. 128 KB holds the marks of every live part of a table of a few million rows; a miss reads a small
# file the page cache holds.
MARK_CACHE_BYTES = 128 * 1024
MARK_CACHE_MIN_LIFETIME_S = 60
# Parts replaced by a merge stay on disk and in memory this long (default 480 s) in case the merged part was not
# yet on disk when the machine lost power. A minute outlasts the kernel's writeback (30 s), and the tables are a
# read model that `tradesim rebuild analytics` reloads from `trade_executed`; at 480 s the soak held ~1,800.
OLD_PARTS_LIFETIME_S = 60
# Debian's server links the system jemalloc, whose defaults suit a big server: 4 arenas per core, a cache per
# thread, freed pages kept for seconds: under a steady trickle of inserts and merges RSS swung by tens of MB.
# One arena, no thread caches and pages returned at once remove the swings, for ~0.04 core more at 4 inserts/s
# (docs/design/analytics-model.md, "Memory"). Only for that server: the single `clickhouse` binary bundles its
# own, tuned allocator.
JEMALLOC_CONF = "background_thread:true,narenas:1,tcache:false,dirty_decay_ms:0,muzzy_decay_ms:0"


def server_argv() -> list[str] | None:
    """How to run the server binary that is installed: Debian's clickhouse-server, or the single `clickhouse`."""
    found = shutil.which("clickhouse-server", path=SEARCH_PATH)
    if found:
        return [found]
    single = shutil.which("clickhouse", path=SEARCH_PATH)
    return [single, "server"] if single else None


def _x(value: object) -> str:
    return escape(str(value))


class ClickHouse(Component):
    name = "clickhouse"

    @property
    def external(self) -> bool:
        return self.settings.clickhouse.url is not None

    def ports(self) -> list[PortSpec]:
        c = self.settings.clickhouse
        return [PortSpec(c.host, c.http_port, "TRADESIM_CLICKHOUSE__HTTP_PORT"),
                PortSpec(c.host, c.tcp_port, "TRADESIM_CLICKHOUSE__TCP_PORT")]

    def address(self) -> str:
        return self.settings.clickhouse.client_url

    @property
    def config_path(self) -> Path:
        return self.dir / "config.xml"

    def version(self) -> str:
        """Version of the installed package (the server binary of 18.16 has no --version)."""
        try:
            done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "clickhouse-server"], capture_output=True,
                                  text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        return done.stdout.strip().split("+", 1)[0] if done.returncode == 0 and done.stdout.strip() else "unknown"

    def provision(self, report: Report) -> None:
        if server_argv() is not None:
            return
        apt_install(self.name, PACKAGES, report)
        stop_packaged_service("clickhouse-server", report)

    def configure(self) -> None:
        for sub in ("data", "tmp", "user_files", "format_schemas"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self._config_xml())
        users = self.dir / "users.xml"
        users.write_text(self._users_xml())
        users.chmod(0o600)

    def _config_xml(self) -> str:
        c = self.settings.clickhouse
        d = self.dir
        # <yandex> is the root 18.16 needs; modern servers still accept it. No interserver_http_port: a single
        # node replicates nothing, so nothing listens besides HTTP and native TCP, both on c.host.
        return f"""<?xml version="1.0"?>
<!-- generated by tradesim: edits are overwritten on the next `tradesim up` -->
<yandex>
    <logger>
        <!-- warning: 18.16 logs every HTTP query at information, and the console log is never rotated -->
        <level>warning</level>
        <console>1</console>
    </logger>
    <listen_host>{_x(c.host)}</listen_host>
    <http_port>{c.http_port}</http_port>
    <tcp_port>{c.tcp_port}</tcp_port>
    <path>{_x(d / "data")}/</path>
    <tmp_path>{_x(d / "tmp")}/</tmp_path>
    <user_files_path>{_x(d / "user_files")}/</user_files_path>
    <format_schema_path>{_x(d / "format_schemas")}/</format_schema_path>
    <users_config>{_x(d / "users.xml")}</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>{MARK_CACHE_BYTES}</mark_cache_size>
    <uncompressed_cache_size>{CACHE_BYTES}</uncompressed_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <mlock_executable>false</mlock_executable>
    <merge_tree>
        <old_parts_lifetime>{OLD_PARTS_LIFETIME_S}</old_parts_lifetime>
    </merge_tree>
</yandex>
"""

    def _users_xml(self) -> str:
        c = self.settings.clickhouse
        password = c.password.get_secret_value()
        secret = (f"<password_sha256_hex>{hashlib.sha256(password.encode()).hexdigest()}</password_sha256_hex>"
                  if password else "<password></password>")
        return f"""<?xml version="1.0"?>
<!-- generated by tradesim: edits are overwritten on the next `tradesim up` -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <mark_cache_min_lifetime>{MARK_CACHE_MIN_LIFETIME_S}</mark_cache_min_lifetime>
        </default>
    </profiles>
    <users>
        <{_x(c.user)}>
            {secret}
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </{_x(c.user)}>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"""

    def argv(self) -> list[str]:
        found = server_argv()
        if found is None:
            raise ProvisionError(self.name, "clickhouse-server is not installed: "
                                 f"`apt-get install -y {' '.join(PACKAGES)}`")
        return [*found, f"--config-file={self.config_path}"]

    def env(self) -> dict[str, str]:
        argv = server_argv()
        debian = argv is not None and Path(argv[0]).name == "clickhouse-server"
        return {**super().env(), **({"MALLOC_CONF": JEMALLOC_CONF} if debian else {})}

    def check_health(self) -> None:
        c = self.settings.clickhouse
        if not c.client_url.startswith(("http://", "https://")):
            raise Unhealthy(f"ClickHouse url must be http(s)://host:port, got {redacted(c.client_url)!r}")
        scheme, host, port = c.server  # a user:password@ in the URL would be taken for part of the host name
        url = f"{scheme}://{host}:{port}/?query=SELECT%201"
        headers = {"X-ClickHouse-User": c.user, "X-ClickHouse-Key": c.password.get_secret_value()}
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - scheme checked just above
        # no proxies: a loopback probe must reach the server itself
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=HEALTH_TIMEOUT_S) as response:
                body = response.read(64).decode("utf-8", "replace").strip()
        except urllib.error.HTTPError as exc:
            detail = exc.read(300).decode("utf-8", "replace").strip()
            raise Unhealthy(f"SELECT 1 on {self.shown_address()} answered HTTP {exc.code}: {detail}") from None
        except (OSError, ValueError) as exc:
            raise Unhealthy(f"SELECT 1 on {self.shown_address()} failed: {exc}") from None
        if body != "1":
            raise Unhealthy(f"SELECT 1 on {self.shown_address()} answered {body!r}")

    def initialize(self, report: Report) -> None:
        client = ClickHouseClient(self.settings.clickhouse)
        try:
            legacy = TradeStore(client).create_schema()
        except Unavailable as exc:
            raise Unhealthy(str(exc)) from None
        finally:
            client.close()
        if legacy:
            report(f"the trades table had an older layout: kept as {legacy}; `tradesim rebuild analytics` refills it")
        report(f"database {self.settings.clickhouse.database} and tables trades and trades_by_user ready")
