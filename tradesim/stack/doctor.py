"""Checks of the machine for `tradesim doctor`: each problem comes with the exact fix."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tradesim.settings import Settings
from tradesim.stack.component import Component, shared_ports, unbindable
from tradesim.stack.jaeger import go_too_old
from tradesim.stack.process import OsProcessTable, ProcessTable
from tradesim.stack.state import StateFile
from tradesim.stack.tools import MIN_JAVA, go_version, java_executable, java_major_version, jdk_tool

MIN_FREE_DISK_GB = 5


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _node_checks() -> list[Check]:
    """node and npm run dynalite (the DynamoDB API); dynalite 4 needs Node.js 20+."""
    from tradesim.stack.dynamodb import MIN_NODE, NODE_FIX, node_major  # here: it imports boto3

    checks = []
    node = shutil.which("node")
    if node is None:
        checks.append(Check("node", False, "not found", NODE_FIX))
    else:
        major = node_major(node)
        ok = major is not None and major >= MIN_NODE
        checks.append(Check("node", ok, f"Node.js {major} at {node}" if major else f"{node} does not run",
                            "" if ok else f"install Node.js {MIN_NODE}+ (Debian 12's nodejs is 18; "
                            "e.g. NodeSource's nodejs 20 package)"))
    npm = shutil.which("npm")
    checks.append(Check("npm", npm is not None, npm or "not found", "" if npm else NODE_FIX))
    return checks


def _clickhouse_check() -> Check:
    """clickhouse-server (Debian's 18.16) is installed, or `up` can install it as root."""
    from tradesim.stack.clickhouse import PACKAGES, server_argv

    found = server_argv()
    if found:
        return Check("clickhouse-server", True, " ".join(found))
    if os.geteuid() == 0:
        return Check("clickhouse-server", True, "not installed; `tradesim up` installs it with apt-get")
    return Check("clickhouse-server", False, "not installed", f"sudo apt-get install -y {' '.join(PACKAGES)}")


def _packaged(tool: str, package: str) -> Check:
    """A tool from a Debian package that `tradesim up` installs itself when it runs as root."""
    path = shutil.which(tool)
    if path:
        return Check(tool, True, path)
    if os.geteuid() == 0:
        return Check(tool, True, f"not installed; `tradesim up` installs {package} with apt-get")
    return Check(tool, False, "not installed", f"sudo apt-get install -y {package}")


def run_checks(settings: Settings, components: list[Component],
               processes: ProcessTable | None = None) -> list[Check]:
    processes = processes or OsProcessTable()
    checks: list[Check] = []
    java = java_executable(settings.stack.java_home)
    major = java_major_version(java)
    if major is None:
        checks.append(Check("java", False, f"{java} does not run",
                            "apt-get install -y openjdk-17-jdk-headless (or set TRADESIM_STACK__JAVA_HOME)"))
    else:
        checks.append(Check("java", major >= MIN_JAVA, f"Java {major} at {java}",
                            "" if major >= MIN_JAVA else "set TRADESIM_STACK__JAVA_HOME to a JDK 17+"))
        javac = jdk_tool(java, "javac")
        checks.append(Check("javac", javac is not None, str(javac or "not found (a JRE): the bars job is compiled"),
                            "" if javac else "apt-get install -y openjdk-17-jdk-headless"))
    for tool, package in (("mvn", "maven"), ("apt-get", "apt")):
        path = shutil.which(tool)
        checks.append(Check(tool, path is not None, path or "not found",
                            "" if path else f"apt-get install -y {package}"))
    checks.extend(_node_checks())
    checks.append(_packaged("redis-server", "redis-server"))
    checks.append(_clickhouse_check())
    checks += [_packaged("prometheus", "prometheus"), _packaged("promtool", "prometheus")]
    go = shutil.which("go")
    builds = [name for name, on in (("Toxiproxy", settings.chaos.enabled),
                                    ("Jaeger", settings.tracing.enabled and not settings.tracing.external)) if on]
    too_old = go_too_old(go_version(go)) if go is not None and "Jaeger" in builds else None
    checks.append(Check("go", (go is not None and too_old is None) or not builds,
                        too_old or go or ("not found" if builds else "not found; needed only with chaos.enabled or "
                                          "tracing.enabled"),
                        f"apt-get install -y golang ({' and '.join(builds)} are built from Go modules)"
                        if go is None and builds else "install Go from go.dev" if too_old else ""))

    settings.home.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(settings.home).free / 1e9
    checks.append(Check("disk", free_gb >= MIN_FREE_DISK_GB, f"{free_gb:.1f} GB free at {settings.home}",
                        "" if free_gb >= MIN_FREE_DISK_GB else f"free at least {MIN_FREE_DISK_GB} GB or set "
                        "TRADESIM_HOME / TRADESIM_CACHE_DIR to a bigger disk"))

    ours = StateFile(settings.stack_dir).load().components
    clients, reserved = client_port_range(), reserved_ports()
    served = [c for c in components if not c.external and c.not_requested() is None]  # what `up` would start
    checks += [Check("ports", False, clash, "") for clash in shared_ports(served)]
    for comp in served:
        record = ours.get(comp.name)
        mine = record is not None and processes.is_alive(record.handle)
        for spec in comp.ports():
            if clients is not None and clients[0] <= spec.port <= clients[1] and spec.port not in reserved:
                checks.append(Check(f"port {spec.port}", False, f"{comp.name}: inside the system's range for "
                                    f"client ports ({clients[0]}-{clients[1]}), where any outgoing connection can "
                                    "take it before the server binds it",
                                    f"set {spec.setting} below {clients[0]} (or reserve it: sysctl "
                                    "net.ipv4.ip_local_reserved_ports)"))
                continue
            try:
                taken = processes.port_in_use(spec.host, spec.port)
            except OSError as exc:
                why, fix = unbindable(spec, exc)
                checks.append(Check(f"port {spec.port}", False, f"{comp.name}: {why}", fix))
                continue
            if mine:
                checks.append(Check(f"port {spec.port}", True, f"used by our {comp.name}"))
            else:
                checks.append(Check(f"port {spec.port}", not taken,
                                    f"{comp.name}: {'in use by another process' if taken else 'free'}",
                                    f"stop that process or set {spec.setting}" if taken else ""))
    return checks


def reserved_ports(path: Path = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")) -> set[int]:
    """The ports the kernel keeps out of the client range (`8000-8010,9000`); empty where unreadable."""
    found: set[int] = set()
    try:
        for part in path.read_text().strip().split(","):
            if part:
                low, _, high = part.partition("-")
                found.update(range(int(low), int(high or low) + 1))
    except (OSError, ValueError):
        return set()
    return found


def client_port_range(path: Path = Path("/proc/sys/net/ipv4/ip_local_port_range")) -> tuple[int, int] | None:
    """The kernel's range for client (ephemeral) ports, or None where it cannot be read (not Linux)."""
    try:
        low, high = (int(v) for v in path.read_text().split())
    except (OSError, ValueError):
        return None
    return low, high
